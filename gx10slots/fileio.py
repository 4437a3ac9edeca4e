"""Files that appear whole or not at all: a reader never sees half a report or kubeconfig."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write to a temporary file beside ``path``, fsync, set ``mode``, then rename into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Configs, kubeconfigs, token and certificate files are a few KB; a megabyte is generous, and a
# cap keeps `--config /dev/zero` or a 300 MB file from exhausting memory.
MAX_INPUT_FILE_BYTES = 1024 * 1024


class NotReadable(Exception):
    """A file we refuse to read: what is wrong with it, in words (for a ConfigError)."""


def check_regular_file(path: str | os.PathLike[str], cap: int = MAX_INPUT_FILE_BYTES) -> None:
    """Refuse, without opening it, anything but a regular file of at most ``cap`` bytes.

    ``os.stat`` never blocks; opening a FIFO for reading waits for a writer (forever, if none
    comes), and a character device such as ``/dev/zero`` never ends."""
    import stat

    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NotReadable("not found") from None
    except OSError as exc:
        raise NotReadable(exc.strerror or type(exc).__name__) from None
    if stat.S_ISDIR(info.st_mode):
        raise NotReadable("is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise NotReadable("is not a regular file (a FIFO, a device or a socket is refused)")
    if info.st_size > cap:
        raise NotReadable(f"is {info.st_size} bytes, over the {cap // 1024} KiB limit")


def read_bounded(path: str | os.PathLike[str], cap: int = MAX_INPUT_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes, or :class:`NotReadable`.

    Opened non-blocking and checked on the open descriptor, so a file swapped for a FIFO between
    a check and the open cannot hang us; at most ``cap + 1`` bytes are ever read (a file that
    grows while we read is refused too)."""
    import stat

    check_regular_file(path, cap)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise NotReadable(exc.strerror or type(exc).__name__) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotReadable("is not a regular file (a FIFO, a device or a socket is refused)")
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = os.read(fd, min(65536, cap + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > cap:
            raise NotReadable(f"is over the {cap // 1024} KiB limit")
        return b"".join(chunks)
    except OSError as exc:
        raise NotReadable(exc.strerror or type(exc).__name__) from None
    finally:
        os.close(fd)


def writable_directory(directory: str | os.PathLike[str], what: str, hint: str) -> Path:
    """``directory``, created if needed and proven writable, or a UsageError (exit 2) saying
    why: a path from a flag or a config may hold a NUL, point into /proc, or be read-only."""
    from gx10slots.errors import UsageError

    text = os.fspath(directory)
    path = Path(text)
    try:
        if not text or any(ord(c) < 32 or c == "\x7f" for c in text):
            raise ValueError("the path holds a control character")
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except (OSError, ValueError) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
        raise UsageError(f"{what} {text} is not writable: {reason}", hint=hint) from exc
    return path
