"""A Job pod's first process: mount its volumes at their paths in a private mount namespace, then
exec its command (``python -m gx10slots.sandbox.podshim SPEC.json``; see gx10slots.sandbox.jobs).

The namespace is the container's view of the filesystem, as a container runtime gives it: the
pod sees ``/var/run/secrets/kubernetes.io/serviceaccount``, ``/etc/gx10slots`` and so on, and the
sandbox's host sees none of it (only the empty mount points created on first use remain). As
root, unshare(CLONE_NEWNS) suffices; otherwise an unprivileged user namespace is tried.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(
        _libc.mount(source.encode() if source else None, target.encode(), None, flags, None),
        f"mount {source or ''} {target}",
    )


def _private_namespace() -> None:
    """Its own mount namespace, and its own UTS namespace: a pod's hostname is its name."""
    uid, gid = os.getuid(), os.getgid()
    if _libc.unshare(CLONE_NEWNS | CLONE_NEWUTS) != 0:
        _check(
            _libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS), "unshare (mount namespace)"
        )
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    _mount(None, "/", MS_REC | MS_PRIVATE)


def _host_paths_needed() -> list[Path]:
    """What the pod's process runs from on the host: the interpreter, the virtualenv, the source
    of an editable install and PYTHONPATH. A real container brings them in its image; here they
    live on the host, and a volume mounted over one of their parents (the Job manifest mounts an
    emptyDir at /tmp, and a clone may live under /tmp) must not hide them."""
    import gx10slots

    candidates = {Path(sys.prefix), Path(sys.base_prefix), Path(gx10slots.__file__).parents[1]}
    candidates |= {Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    return sorted({p.resolve() for p in candidates if p.is_dir()})


def setup(spec: dict[str, Any]) -> None:
    mounts = list(spec.get("mounts") or [])
    sources = [Path(str(m["source"])) for m in mounts]

    def hides_a_source(mount: dict[str, Any]) -> bool:
        target = Path(str(mount["target"]))
        return any(target == source or target in source.parents for source in sources)

    # A mount over /tmp would hide the sources that live under /tmp: those go last.
    mounts.sort(key=hides_a_source)
    needed = _host_paths_needed()
    _private_namespace()
    hostname = str(spec.get("hostname") or "").encode()
    if hostname:
        _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
    for mount in mounts:
        target = str(mount["target"])
        hidden = [p for p in needed if Path(target) == p or Path(target) in p.parents]
        # Held open across the mount, then bound back in place through /proc/self/fd.
        held = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in hidden}
        try:
            os.makedirs(target, exist_ok=True)
            _mount(str(mount["source"]), target, MS_BIND | MS_REC)
            if mount.get("readOnly"):
                _mount(None, target, MS_BIND | MS_REMOUNT | MS_RDONLY)
            for path, fd in held.items():
                os.makedirs(path, exist_ok=True)
                _mount(f"/proc/self/fd/{fd}", str(path), MS_BIND | MS_REC)
        finally:
            for fd in held.values():
                os.close(fd)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[1]).read_text())
    try:
        setup(spec)
    except OSError as err:
        print(
            f"MountVolume.SetUp failed: {err} (the sandbox mounts a Job pod's volumes in a "
            "private mount namespace: run it as root or allow unprivileged user namespaces)",
            file=sys.stderr,
        )
        return 128
    os.chdir(spec.get("workingDir") or "/")
    argv_ = [str(a) for a in spec["argv"]]
    try:
        os.execvpe(argv_[0], argv_, {str(k): str(v) for k, v in spec["env"].items()})
    except OSError as err:
        print(f"exec {argv_[0]}: {err}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
