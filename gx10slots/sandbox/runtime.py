"""The simulated kubelet's seam: a pod runtime, and how it reports pod status.

The controller calls ``runtime.start(pod)`` once a pod is bound to the node and
``runtime.stop(pod)`` once it is deleted; ``pods/log`` reads ``runtime.logs(pod, tail_lines)``.
A runtime reports what its workload does through :class:`PodStatusWriter`, which writes the
pod's status the way the kubelet does (a status-subresource write: phase, conditions, container
statuses with running/waiting/terminated states, restart counts, pod IP)::

    class ProcessRuntime:
        def __init__(self, store: Store) -> None:
            self.status = PodStatusWriter(store)

        def start(self, pod):           # called on the controller thread: do not block
            spawn(pod)                  # ...then, from the process supervisor:
            self.status.running(pod, ready=False, pod_ip="127.0.0.1")
            self.status.running(pod, ready=True, pod_ip="127.0.0.1")        # readiness passed
            self.status.crash_loop(pod, exit_code=1, restart_count=3)       # CrashLoopBackOff
            self.status.terminated(pod, reason="OOMKilled", exit_code=137, restart_count=1)

The writer keys on the pod's uid: a status for a pod that was deleted (or replaced by a new pod
of the same name) is dropped.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from gx10slots.kube.values import rfc3339
from gx10slots.sandbox.resources import NODES, PODS
from gx10slots.sandbox.store import Obj, Store

DEFAULT_POD_IP = "127.0.0.1"


class PodRuntime(Protocol):
    def start(self, pod: Obj) -> None:
        """The pod was bound to the node: start its containers (return quickly)."""

    def stop(self, pod: Obj) -> None:
        """The pod was deleted: stop its containers (Recreate relies on this being done)."""

    def logs(self, pod: Obj, tail_lines: int | None) -> str:
        """The text ``kubectl logs`` shows (the last ``tail_lines`` lines when set)."""


def running_state(started_at: str | None = None) -> Obj:
    return {"running": {"startedAt": started_at or rfc3339()}}


def waiting_state(reason: str, message: str = "") -> Obj:
    waiting: Obj = {"reason": reason}
    if message:
        waiting["message"] = message
    return {"waiting": waiting}


def terminated_state(
    reason: str,
    exit_code: int,
    message: str = "",
    *,
    started_at: str | None = None,
    finished_at: str | None = None,
) -> Obj:
    finished = finished_at or rfc3339()
    terminated: Obj = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": started_at or finished,
        "finishedAt": finished,
    }
    if message:
        terminated["message"] = message
    return {"terminated": terminated}


def _condition(kind: str, ok: bool, old: list[Obj], reason: str = "", message: str = "") -> Obj:
    status = "True" if ok else "False"
    previous = next((c for c in old if c.get("type") == kind), None)
    since = (
        previous.get("lastTransitionTime")
        if previous and previous.get("status") == status
        else None
    )
    cond: Obj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or rfc3339(),
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _phase(pod: Obj, statuses: list[Obj]) -> str:
    states = [cs.get("state") or {} for cs in statuses]
    if any("running" in s for s in states):
        return "Running"
    restart_policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    if states and all("terminated" in s for s in states) and restart_policy != "Always":
        codes = [s["terminated"].get("exitCode", 0) for s in states]
        return "Succeeded" if all(c == 0 for c in codes) else "Failed"
    if any(
        cs.get("restartCount") or cs.get("lastState") or "terminated" in (cs.get("state") or {})
        for cs in statuses
    ):
        return "Running"  # it ran before: restarting (CrashLoopBackOff) keeps the pod Running
    return "Pending"


def node_ip(store: Store, node_name: str | None) -> str:
    node = store.find(NODES, None, node_name) if node_name else None
    for address in ((node or {}).get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return DEFAULT_POD_IP


class PodStatusWriter:
    """Writes pod status as the kubelet does; every method returns the stored pod, or None if
    the pod is gone."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(
        self,
        pod: Obj,
        *,
        state: Obj,
        ready: bool = False,
        restart_count: int = 0,
        last_state: Obj | None = None,
        pod_ip: str | None = DEFAULT_POD_IP,
        container: str | None = None,
        phase: str | None = None,
    ) -> Obj | None:
        """Set the state of one container (``container``) or of all of them, and derive the
        pod's phase and its Ready/ContainersReady/Initialized/PodScheduled conditions."""
        meta = pod["metadata"]

        def change(current: Obj) -> Obj:
            spec = current.get("spec") or {}
            status = current.setdefault("status", {})
            containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
            existing = {cs.get("name"): cs for cs in status.get("containerStatuses") or []}
            statuses = []
            for c in containers:
                name = c.get("name")
                cs = existing.get(name) or _fresh_container_status(c)
                if container in (None, name):
                    cs = {
                        **cs,
                        "name": name,
                        "image": c.get("image", ""),
                        "ready": ready and "running" in state,
                        "restartCount": restart_count,
                        "started": "running" in state,
                        "state": state,
                        "lastState": last_state or {},
                    }
                    if "containerID" not in cs and "waiting" not in state:
                        cs["containerID"] = f"containerd://{secrets.token_hex(32)}"
                statuses.append(cs)
            all_ready = bool(statuses) and all(cs.get("ready") for cs in statuses)
            unready = [str(cs.get("name")) for cs in statuses if not cs.get("ready")]
            why = "" if all_ready else "ContainersNotReady"
            note = "" if all_ready else f"containers with unready status: [{' '.join(unready)}]"
            old = status.get("conditions") or []
            status["conditions"] = [
                _condition("PodReadyToStartContainers", True, old),
                _condition("Initialized", True, old),
                _condition("Ready", all_ready, old, why, note),
                _condition("ContainersReady", all_ready, old, why, note),
                _condition("PodScheduled", True, old),
            ]
            status["containerStatuses"] = statuses
            status["phase"] = phase or _phase(current, statuses)
            status["hostIP"] = node_ip(self.store, spec.get("nodeName"))
            status["hostIPs"] = [{"ip": status["hostIP"]}]
            if pod_ip:
                status["podIP"] = pod_ip
                status["podIPs"] = [{"ip": pod_ip}]
            status.setdefault("startTime", rfc3339())
            return current

        return self.store.mutate(PODS, meta.get("namespace"), meta["name"], change, uid=meta["uid"])

    def running(
        self,
        pod: Obj,
        *,
        ready: bool = True,
        pod_ip: str = DEFAULT_POD_IP,
        restart_count: int = 0,
        last_state: Obj | None = None,
        container: str | None = None,
    ) -> Obj | None:
        return self.write(
            pod,
            state=running_state(),
            ready=ready,
            pod_ip=pod_ip,
            restart_count=restart_count,
            last_state=last_state,
            container=container,
        )

    def set_ready(self, pod: Obj, ready: bool, *, container: str | None = None) -> Obj | None:
        """Flip readiness of running containers (a readiness probe result), keeping the rest."""
        meta = pod["metadata"]
        current = self.store.find(PODS, meta.get("namespace"), meta["name"])
        if current is None or current["metadata"].get("uid") != meta["uid"]:
            return None
        statuses = (current.get("status") or {}).get("containerStatuses") or []
        target = next((cs for cs in statuses if container in (None, cs.get("name"))), None)
        if target is None or "running" not in (target.get("state") or {}):
            return current
        return self.write(
            current,
            state=target["state"],
            ready=ready,
            container=container,
            restart_count=int(target.get("restartCount") or 0),
            last_state=target.get("lastState") or None,
            pod_ip=(current.get("status") or {}).get("podIP"),
        )

    def waiting(
        self,
        pod: Obj,
        reason: str,
        message: str = "",
        *,
        restart_count: int = 0,
        last_state: Obj | None = None,
        container: str | None = None,
    ) -> Obj | None:
        return self.write(
            pod,
            state=waiting_state(reason, message),
            restart_count=restart_count,
            last_state=last_state,
            container=container,
        )

    def crash_loop(
        self,
        pod: Obj,
        *,
        exit_code: int = 1,
        restart_count: int = 1,
        reason: str = "Error",
        message: str = "",
        container: str | None = None,
    ) -> Obj | None:
        """CrashLoopBackOff after a container exited: last state terminated with ``reason``."""
        name = container or _first_container(pod)
        back_off = f"back-off 10s restarting failed container={name} pod={pod['metadata']['name']}"
        return self.write(
            pod,
            state=waiting_state("CrashLoopBackOff", back_off),
            restart_count=restart_count,
            last_state=terminated_state(reason, exit_code, message),
            container=container,
        )

    def terminated(
        self,
        pod: Obj,
        *,
        reason: str,
        exit_code: int,
        message: str = "",
        restart_count: int = 0,
        container: str | None = None,
    ) -> Obj | None:
        """The container exited (``OOMKilled`` with 137, ``Error``, ``Completed``)."""
        return self.write(
            pod,
            state=terminated_state(reason, exit_code, message),
            restart_count=restart_count,
            container=container,
        )


def _first_container(pod: Obj) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("name", ""))


def _fresh_container_status(container: Obj) -> Obj:
    return {
        "name": container.get("name"),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": waiting_state("ContainerCreating"),
        "lastState": {},
    }


def creating_status(pod: Obj, host_ip: str) -> Obj:
    """The status of a pod just bound to a node, before its runtime reports."""
    status: Obj = dict(pod.get("status") or {})
    old = status.get("conditions") or []
    containers = [c for c in (pod.get("spec") or {}).get("containers") or [] if isinstance(c, dict)]
    names = " ".join(str(c.get("name")) for c in containers)
    note = f"containers with unready status: [{names}]"
    status.update(
        phase="Pending",
        hostIP=host_ip,
        hostIPs=[{"ip": host_ip}],
        startTime=status.get("startTime") or rfc3339(),
        conditions=[
            _condition("PodReadyToStartContainers", False, old),
            _condition("Initialized", True, old),
            _condition("Ready", False, old, "ContainersNotReady", note),
            _condition("ContainersReady", False, old, "ContainersNotReady", note),
            _condition("PodScheduled", True, old),
        ],
        containerStatuses=[_fresh_container_status(c) for c in containers],
    )
    return status


class InstantRuntime:
    """The default runtime: every pod runs and is ready at once at 127.0.0.1; no logs."""

    def __init__(self, store: Store, pod_ip: str = DEFAULT_POD_IP) -> None:
        self.status = PodStatusWriter(store)
        self.pod_ip = pod_ip

    def start(self, pod: Obj) -> None:
        self.status.running(pod, ready=True, pod_ip=self.pod_ip)

    def stop(self, pod: Obj) -> None:
        return None

    def logs(self, pod: Obj, tail_lines: int | None) -> str:
        return ""


def tail(text: str, tail_lines: int | None) -> str:
    """The last ``tail_lines`` lines of ``text`` (all of it when None), as kubectl shows them."""
    if tail_lines is None:
        return text
    if tail_lines <= 0:
        return ""
    lines = text.splitlines(keepends=True)
    return "".join(lines[-tail_lines:])


__all__ = [
    "DEFAULT_POD_IP",
    "InstantRuntime",
    "PodRuntime",
    "PodStatusWriter",
    "creating_status",
    "running_state",
    "tail",
    "terminated_state",
    "waiting_state",
]
