"""batch/v1 Jobs in the sandbox: a job controller, and the kubelet's run-to-completion pods.

The job controller (after pkg/controller/job/job_controller.go, single-completion NonIndexed
Jobs, which is what docs/manifests/job-deploy.yaml is): a Job gets one pod from its template
(labelled ``batch.kubernetes.io/job-name``/``controller-uid``, owned by the Job); ``status.active``
while it runs; when the pod succeeds, ``succeeded: 1``, ``completionTime`` and the conditions
``SuccessCriteriaMet`` then ``Complete`` (reason ``CompletionsReached``); when it fails,
another pod until ``backoffLimit`` failures, then ``FailureTarget`` and ``Failed`` (reason
``BackoffLimitExceeded``); past ``activeDeadlineSeconds`` the pod is deleted and the Job fails
with ``DeadlineExceeded``. Parallelism, completions > 1, indexed jobs, suspend, pod failure
policies and ttlSecondsAfterFinished are not simulated.

The kubelet runs a Job's pod as a process of its container's command and args (the image is
irrelevant: ``slots`` is the installed tool), with what a real kubelet gives a pod and nothing of
the sandbox's own environment:

- in-cluster credentials where every client looks for them (client-go rest.InClusterConfig, the
  Python client's load_incluster_config, gx10slots.kube.client.connect): the env
  ``KUBERNETES_SERVICE_HOST``/``KUBERNETES_SERVICE_PORT`` (the API server's address), and the
  projected service-account volume at ``/var/run/secrets/kubernetes.io/serviceaccount`` with
  ``token`` (a token for the pod's service account, authorized by RBAC like any other),
  ``ca.crt`` (the API server's CA) and ``namespace``;
- its volumes at their mountPaths: configMap (the keys as files), secret, emptyDir.

Mounting at the pod's own paths needs a private mount namespace, so the pod process starts in
``gx10slots.sandbox.podshim`` (unshare + bind mounts, then exec). Where that is not allowed (no
root and no user namespaces), the pod fails with the reason, as a kubelet that cannot mount a
volume does (FailedMount): nothing in the product knows about the sandbox.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gx10slots.kube.values import now_utc, parse_rfc3339, rfc3339
from gx10slots.sandbox.resources import (
    CONFIGMAPS,
    JOB_NAME_LABEL,
    JOB_UID_LABEL,
    JOBS,
    PODS,
    SECRETS,
    admit_create,
)
from gx10slots.sandbox.runtime import terminated_state
from gx10slots.sandbox.store import Obj, StatusError, Store

if TYPE_CHECKING:
    from gx10slots.sandbox.kubelet import PodProcess, ProcessRuntime

log = logging.getLogger("gx10slots.sandbox.jobs")

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607  # a projected token's default lifetime (kubelet: 1 h + 7 s)


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def job_of(pod: Obj) -> str | None:
    """The uid of the Job that controls ``pod``, if any."""
    for ref in _meta(pod).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == JOBS.kind:
            return str(ref.get("uid"))
    return None


# The tool's own entrypoint: a pod whose container runs it (the controller's Deployment,
# docs/manifests/controller.yaml) runs as that command, as a Job's pod does.
TOOL_COMMAND = "slots"


def runs_to_completion(pod: Obj) -> bool:
    """A pod the kubelet runs as its container's command rather than as a model server: a Job's,
    or one whose container runs `slots` itself (restarted as its restartPolicy says)."""
    if job_of(pod) is not None:
        return True
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    command = containers[0].get("command") if isinstance(containers[0], dict) else None
    return isinstance(command, list) and bool(command) and command[0] == TOOL_COMMAND


# -- the job controller ---------------------------------------------------------------------


def _condition(kind: str, reason: str, message: str) -> Obj:
    at = rfc3339()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": at,
        "lastTransitionTime": at,
    }


def _finished(job: Obj) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


class JobController:
    """Reconciles Jobs on ``store`` in a background thread (level-triggered, like the others)."""

    def __init__(self, store: Store, *, tick: float = 0.5) -> None:
        self.store = store
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        subscription = self.store.subscribe()
        self._thread = threading.Thread(
            target=self._run, args=(subscription,), name="sandbox-jobs", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self, subscription: Any) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.reconcile()
                except Exception:  # one failed pass must not kill the control plane
                    log.exception("sandbox job controller: reconcile failed")
                if subscription.get(timeout=self.tick) is not None:
                    while subscription.get(timeout=0) is not None:
                        pass
        finally:
            subscription.close()

    def reconcile(self) -> None:
        jobs, _ = self.store.list(JOBS)
        pods, _ = self.store.list(PODS)
        # The garbage collector's part: a deleted Job's pods go too (kubectl deletes with
        # propagationPolicy=Background), and their processes with them.
        alive = {_meta(j).get("uid") for j in jobs}
        for pod in pods:
            if job_of(pod) is not None and job_of(pod) not in alive:
                self._delete(pod)
        for job in jobs:
            if not _finished(job):
                self._sync(job, [p for p in pods if job_of(p) == _meta(job).get("uid")])

    def _sync(self, job: Obj, pods: list[Obj]) -> None:
        spec = job.get("spec") or {}
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded = phases.count("Succeeded")
        failed = phases.count("Failed")
        active = [
            p
            for p, phase in zip(pods, phases, strict=True)
            if phase in (None, "Pending", "Running")
        ]
        status = copy.deepcopy(job.get("status") or {})
        started = parse_rfc3339(status.get("startTime")) or now_utc()
        deadline = spec.get("activeDeadlineSeconds")
        condition: list[Obj] = []
        if succeeded >= int(spec.get("completions") or 1):
            condition = [
                _condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                ),
                _condition(
                    "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
                ),
            ]
            status["completionTime"] = rfc3339()
        elif failed > int(spec.get("backoffLimit", 6)):
            reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            condition = [
                _condition("FailureTarget", reason, message),
                _condition("Failed", reason, message),
            ]
        elif isinstance(deadline, int) and now_utc() - started > timedelta(seconds=deadline):
            reason, message = "DeadlineExceeded", "Job was active longer than specified deadline"
            condition = [
                _condition("FailureTarget", reason, message),
                _condition("Failed", reason, message),
            ]
            for pod in active:
                self._delete(pod)
            active = []
        elif not active:
            created = self._create_pod(job)
            active = [created] if created is not None else []
        status.setdefault("startTime", rfc3339(started))
        status.update(
            active=len(active),
            ready=sum(1 for p in active if (p.get("status") or {}).get("phase") == "Running"),
            succeeded=succeeded,
            failed=failed,
            terminating=0,
            uncountedTerminatedPods={},
        )
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                del status[key]  # omitempty, as the API returns them
        if condition:
            status["conditions"] = [*(status.get("conditions") or []), *condition]
        if status == (job.get("status") or {}):
            return

        def write(current: Obj) -> Obj:
            current["status"] = status
            return current

        self.store.mutate(
            JOBS, _meta(job).get("namespace"), _meta(job)["name"], write, uid=_meta(job)["uid"]
        )

    def _create_pod(self, job: Obj) -> Obj | None:
        meta = _meta(job)
        template = copy.deepcopy((job.get("spec") or {}).get("template") or {})
        template_meta = template.get("metadata") or {}
        labels = dict(template_meta.get("labels") or {})
        labels.setdefault(JOB_NAME_LABEL, meta["name"])
        labels.setdefault(JOB_UID_LABEL, meta["uid"])
        pod: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{meta['name']}-",
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": JOBS.api_version,
                        "kind": JOBS.kind,
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        if template_meta.get("annotations"):
            pod["metadata"]["annotations"] = dict(template_meta["annotations"])
        try:
            return self.store.create(PODS, admit_create(PODS, pod))
        except StatusError as err:
            log.warning(
                "sandbox job controller: creating a pod for %s failed: %s", meta["name"], err
            )
            return None

    def _delete(self, pod: Obj) -> None:
        meta = _meta(pod)
        with contextlib.suppress(StatusError):
            self.store.delete(PODS, meta.get("namespace"), meta["name"], uid=meta["uid"])


# -- the kubelet's side ---------------------------------------------------------------------


class InClusterAccess:
    """What the kubelet needs to give a pod in-cluster credentials: the API server's address
    and CA, and tokens for service accounts (the API server mints and honours them)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def address(self) -> tuple[str, int]:
        from urllib.parse import urlsplit

        url = urlsplit(str(self.server.url))
        return str(url.hostname), int(url.port or 443)

    def ca_pem(self) -> bytes:
        return bytes(self.server.certificate_pem or b"")

    def token(self, namespace: str, service_account: str) -> str:
        from gx10slots.sandbox.rbac import service_account_user

        return str(
            self.server.mint_token(service_account_user(namespace, service_account), TOKEN_SECONDS)
        )


def _files_of(store: Store, namespace: str, volume: Obj) -> dict[str, bytes] | None:
    """The files a configMap or secret volume holds (None: not a kind we mount)."""
    if "emptyDir" in volume:
        return {}
    if "configMap" in volume or "secret" in volume:
        source = volume.get("configMap") or {}
        name = source.get("name")
        rt = CONFIGMAPS
        if "secret" in volume:
            source = volume.get("secret") or {}
            name, rt = source.get("secretName"), SECRETS
        obj = store.find(rt, namespace, str(name)) or {}
        if not obj and not source.get("optional"):
            raise FileNotFoundError(f'{rt.kind.lower()} "{name}" not found')
        files = (
            {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            if rt is CONFIGMAPS
            else {}
        )
        if rt is SECRETS:
            files = {k: base64.b64decode(str(v)) for k, v in (obj.get("data") or {}).items()}
        for k, v in (obj.get("binaryData") or {}).items():
            files[k] = base64.b64decode(str(v))
        items = source.get("items")
        if items:
            files = {
                str(i.get("path")): files[str(i.get("key"))]
                for i in items
                if str(i.get("key")) in files
            }
        return files
    return None


def _write_files(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = (directory / name).resolve()
        if directory.resolve() not in path.parents:
            continue  # a key that climbs out: a real kubelet rejects it too
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _expand(value: str, env: dict[str, str]) -> str:
    """$(VAR) references in command, args and env, as the kubelet expands them."""
    import re

    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def pod_shim_spec(runtime: ProcessRuntime, pod: Obj) -> Obj:
    """The podshim's instructions for ``pod``: its mounts (sources prepared here), argv, env."""
    meta, spec = _meta(pod), pod.get("spec") or {}
    container = (spec.get("containers") or [{}])[0]
    namespace = str(meta.get("namespace") or "default")
    root = runtime.directory / "pods" / str(meta["name"])
    shutil.rmtree(root, ignore_errors=True)
    mounts: list[Obj] = []
    volumes = {str(v.get("name")): v for v in spec.get("volumes") or [] if isinstance(v, dict)}
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(str(mount.get("name")))
        if volume is None:
            raise FileNotFoundError(f'volume "{mount.get("name")}" not found in the pod')
        files = _files_of(runtime.store, namespace, volume)
        if files is None:
            raise FileNotFoundError(
                f'volume "{mount.get("name")}": only configMap, secret and emptyDir are mounted'
            )
        source = root / "volumes" / str(mount.get("name"))
        _write_files(source, files)
        mounts.append(
            {
                "source": str(source),
                "target": str(mount.get("mountPath")),
                "readOnly": bool(mount.get("readOnly")),
            }
        )
    env: dict[str, str] = {
        "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        ),
        "HOSTNAME": str(meta["name"]),
        "HOME": "/",
    }
    # The sandbox's own Python path, so that `slots` is this very installation.
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    access = runtime.in_cluster
    if access is not None and spec.get("automountServiceAccountToken", True) is not False:
        host, port = access.address()
        env.update(
            KUBERNETES_SERVICE_HOST=host,
            KUBERNETES_SERVICE_PORT=str(port),
            KUBERNETES_SERVICE_PORT_HTTPS=str(port),
        )
        account = str(spec.get("serviceAccountName") or "default")
        source = root / "serviceaccount"
        _write_files(
            source,
            {
                "token": access.token(namespace, account).encode(),
                "ca.crt": access.ca_pem(),
                "namespace": namespace.encode(),
            },
        )
        mounts.append({"source": str(source), "target": SERVICE_ACCOUNT_DIR, "readOnly": True})
    for item in container.get("env") or []:
        if isinstance(item, dict) and "value" in item:
            env[str(item.get("name"))] = _expand(str(item.get("value")), env)
    argv = [
        _expand(str(a), env)
        for a in [*(container.get("command") or []), *(container.get("args") or [])]
    ]
    if not argv:
        raise FileNotFoundError("the container has no command: the sandbox runs no images")
    return {
        "mounts": mounts,
        "argv": argv,
        "env": env,
        "workingDir": container.get("workingDir") or "/",
        "hostname": str(meta["name"])[:63],
    }


def run_to_completion(process: PodProcess) -> None:
    """The supervisor of a Job's pod: run the command once (again on failure with OnFailure),
    then leave the container terminated so the pod's phase becomes Succeeded or Failed."""
    from gx10slots.sandbox.kubelet import _die_with_parent

    runtime, pod = process.runtime, process.pod
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")  # the API default
    status = runtime.status
    process.log_path.parent.mkdir(parents=True, exist_ok=True)
    process.pid_path.parent.mkdir(parents=True, exist_ok=True)
    restarts = 0
    while not process._stop.is_set():
        try:
            shim = pod_shim_spec(runtime, pod)
        except (OSError, ValueError) as err:
            with open(process.log_path, "ab") as out:
                out.write(f"MountVolume.SetUp failed: {err}\n".encode())
            status.write(
                pod,
                state=terminated_state("ContainerCannotRun", 128, str(err)),
                restart_count=restarts,
            )
            return
        spec_path = runtime.directory / "pods" / str(_meta(pod)["name"]) / "shim.json"
        spec_path.write_text(json.dumps(shim))
        with open(process.log_path, "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "gx10slots.sandbox.podshim", str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # As the model servers: the pod dies with the sandbox (only a prctl before exec).
                preexec_fn=_die_with_parent,
                env={
                    "PATH": shim["env"]["PATH"],
                    **(
                        {"PYTHONPATH": shim["env"]["PYTHONPATH"]}
                        if "PYTHONPATH" in shim["env"]
                        else {}
                    ),
                },
            )
        process.process = child
        process.pid_path.write_text(f"{child.pid}\n")
        status.running(pod, ready=True, restart_count=restarts)
        while child.poll() is None:
            if process._stop.wait(0.2):
                return  # stopped (the pod was deleted): PodProcess.stop kills the process
        code = child.returncode
        process.pid_path.unlink(missing_ok=True)
        # Always (a Deployment's pod) restarts whatever the exit code; OnFailure only after a
        # failure; Never not at all (pkg/kubelet/container/helpers.go ShouldContainerBeRestarted).
        if policy != "Always" and (code == 0 or policy != "OnFailure"):
            status.write(
                pod,
                state=terminated_state("Completed" if code == 0 else "Error", code),
                restart_count=restarts,
            )
            return
        restarts += 1
        status.crash_loop(pod, exit_code=code, restart_count=restarts)
        if process._stop.wait(min(10.0, 2.0**restarts)):
            return
