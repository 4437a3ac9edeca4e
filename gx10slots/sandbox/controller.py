"""The simulated control plane: deployment controller, scheduler and endpoints controllers.

One background thread reconciles the whole store level-triggered, on every store event and once
per ``tick`` (for the progress deadline):

- Deployments own ReplicaSets ``<deployment>-<pod-template-hash>`` (pkg/controller/deployment/
  sync.go getNewReplicaSet: ownerReference to the Deployment, ``pod-template-hash`` added to the
  labels, selector and template labels, annotations ``deployment.kubernetes.io/revision``,
  ``desired-replicas`` and ``max-replicas``); ReplicaSets own the Pods, created with
  ``generateName: <replicaset>-`` (pkg/controller/replicaset/replica_set.go manageReplicas).
  ``Recreate`` deletes every old pod before creating new ones; ``RollingUpdate`` honours
  maxSurge/maxUnavailable (so a rollout that cannot fit the node stalls, as on a one-GPU node).
  Status (observedGeneration, replica counts with zeros omitted, Available and Progressing
  conditions with the real reasons) and the ``deployment.kubernetes.io/revision`` annotation.
- The Deployment is synced a moment (``status_delay``) after each change of its generation, so
  ``observedGeneration`` trails ``generation`` as it does behind a real controller's informer and
  work queue; ``progressDeadlineSeconds`` turns Progressing False (ProgressDeadlineExceeded).
- A pod the apiserver refuses (a ResourceQuota, :mod:`gx10slots.sandbox.quota`) gives the
  ReplicaSet a Warning Event ``FailedCreate`` "Error creating: <API error>" (controller_utils.go
  RealPodControl.createPods) and a ``ReplicaFailure`` condition, reason FailedCreate, with the
  error as message (replica_set_utils.go calculateStatus); the deployment controller copies it to
  the Deployment (progress.go syncRolloutStatus, getReplicaFailures, deployment_util.go
  ReplicaSetToDeploymentCondition). Creation is retried with a growing back-off, as the
  ReplicaSet work queue's rate limiter does.
- ResourceQuota status (hard, used) is kept up to date as the resourcequota controller does.
- The scheduler binds a pending pod to the first node whose allocatable memory, minus the
  requests of the pods already on it, fits the pod's requests (and whose labels match its
  nodeSelector / required node affinity); otherwise the pod stays Pending with PodScheduled False
  reason Unschedulable, "0/1 nodes are available: 1 Insufficient memory. ...".
- Bound pods are started by the pod runtime (:mod:`gx10slots.sandbox.runtime`), deleted pods
  stopped; pods whose owning Deployment is gone are deleted.
- Every Service with a selector gets an ``Endpoints`` and an ``EndpointSlice`` listing the
  selected pods' IPs (ready ones as ready addresses).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from gx10slots.kube.values import now_utc, parse_rfc3339, rfc3339
from gx10slots.sandbox.quota import admit_pod, quota_status
from gx10slots.sandbox.resources import (
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    EVENTS,
    NODES,
    PODS,
    REPLICASETS,
    RESOURCEQUOTAS,
    SERVICES,
    admit_create,
    parse_quantity,
)
from gx10slots.sandbox.runtime import (
    InstantRuntime,
    PodRuntime,
    PodStatusWriter,
    creating_status,
    node_ip,
)
from gx10slots.sandbox.selectors import LabelSelector, Requirement
from gx10slots.sandbox.store import ALPHANUMS, Obj, ResourceType, StatusError, Store

__all__ = ["Controller", "InstantRuntime", "PodRuntime", "PodStatusWriter", "template_hash"]

log = logging.getLogger(__name__)

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
FAILED_CREATE = "FailedCreate"
REPLICA_FAILURE = "ReplicaFailure"
# The sandbox's stand-in for informer + work-queue latency: how long after a change of its spec a
# Deployment is synced (and its status written). Real controllers take milliseconds to a second.
STATUS_DELAY = 0.2
# ReplicaSet creation retries after a refused pod: doubling from this, up to the cap (the work
# queue's exponential failure rate limiter, client-go util/workqueue/default_rate_limiters.go).
RETRY_FIRST, RETRY_MAX = 0.5, 30.0
HASH_LABEL = "pod-template-hash"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"


def template_hash(template: Obj) -> str:
    """The pod-template-hash: FNV-1a 32 of the template, rendered as Kubernetes does
    (rand.SafeEncodeString of the decimal value)."""
    h = 0x811C9DC5
    for byte in json.dumps(_comparable(template), sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in str(h))


def _revision_of(obj: Obj) -> int:
    """The ``deployment.kubernetes.io/revision`` annotation; 0 when absent or not a number
    (deployment_util.go Revision fails to parse it and the controller treats it as 0)."""
    text = str((_meta(obj).get("annotations") or {}).get(REVISION) or "0")
    return int(text) if text.isdigit() and len(text) < 19 else 0


def _comparable(template: Obj) -> Obj:
    """A pod template as Go compares it after decoding: a null creationTimestamp (kubectl sends
    one) is the zero time, the same as none."""
    template = copy.deepcopy(template)
    meta = template.get("metadata")
    if isinstance(meta, dict) and meta.get("creationTimestamp", "") is None:
        del meta["creationTimestamp"]
    return template


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj["metadata"]
    return meta


def _active(pod: Obj) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not _meta(pod).get("deletionTimestamp")


def _condition(obj: Obj, kind: str) -> Obj | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def _ready(pod: Obj) -> bool:
    cond = _condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def _available(pod: Obj, min_ready_seconds: int, at: datetime) -> bool:
    if not _ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_rfc3339((_condition(pod, "Ready") or {}).get("lastTransitionTime"))
    return since is not None and (at - since).total_seconds() >= min_ready_seconds


def _controller_ref(obj: Obj) -> Obj | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def _controller_uid(obj: Obj) -> str | None:
    ref = _controller_ref(obj)
    return str(ref.get("uid")) if ref is not None else None


def _replica_failure(replicasets: list[Obj], new_name: str) -> Obj | None:
    """progress.go getReplicaFailures: the new ReplicaSet's ReplicaFailure condition, else an old
    one's, as a Deployment condition (deployment_util.go ReplicaSetToDeploymentCondition: both
    times are the ReplicaSet condition's lastTransitionTime)."""
    ranked = sorted(replicasets, key=lambda rs: _meta(rs)["name"] != new_name)
    for rs in ranked:
        for c in (rs.get("status") or {}).get("conditions") or []:
            if c.get("type") == REPLICA_FAILURE:
                return {
                    "type": REPLICA_FAILURE,
                    "status": c.get("status"),
                    "lastUpdateTime": c.get("lastTransitionTime"),
                    "lastTransitionTime": c.get("lastTransitionTime"),
                    "reason": c.get("reason"),
                    "message": c.get("message"),
                }
    return None


def _memory_request(pod: Obj) -> float:
    """The pod's effective memory request: sum over containers, at least the largest init
    container's (requests default to limits, as the apiserver defaults them)."""

    def request(c: Obj) -> float:
        res = c.get("resources") or {}
        qty = (res.get("requests") or {}).get("memory") or (res.get("limits") or {}).get("memory")
        try:
            return parse_quantity(qty) if qty is not None else 0.0
        except ValueError:
            return 0.0

    spec = pod.get("spec") or {}
    main = sum(request(c) for c in spec.get("containers") or [])
    init = max((request(c) for c in spec.get("initContainers") or []), default=0.0)
    return max(main, init)


def _resolve_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        scaled = total * int(value[:-1]) / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value or 0)


def _node_matches(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = _meta(node).get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    fields = {"metadata.name": _meta(node)["name"]}
    for term in terms:
        reqs = [
            Requirement(
                e["key"], ops.get(e.get("operator", ""), "in"), tuple(e.get("values") or ())
            )
            for e in term.get("matchExpressions") or []
        ]
        field_reqs = [
            Requirement(
                e["key"], ops.get(e.get("operator", ""), "in"), tuple(e.get("values") or ())
            )
            for e in term.get("matchFields") or []
        ]
        if LabelSelector(tuple(reqs)).matches(labels) and LabelSelector(tuple(field_reqs)).matches(
            fields
        ):
            return True
    return False


class Controller:
    """Runs the simulated controllers on ``store`` in a background thread.

    ``runtime`` starts and stops pods (default :class:`InstantRuntime`: running and ready at
    once). ``tick`` bounds how late time-based changes (the progress deadline) are noticed.
    """

    def __init__(
        self,
        store: Store,
        runtime: PodRuntime | None = None,
        *,
        tick: float = 1.0,
        status_delay: float = STATUS_DELAY,
    ):
        self.store = store
        self.runtime: PodRuntime = runtime if runtime is not None else InstantRuntime(store)
        self.tick = tick
        self.status_delay = status_delay
        self._seen: dict[str, tuple[Any, float]] = {}  # deployment uid -> generation, first seen
        self._failures: dict[str, str] = {}  # replicaset uid -> the last pod creation error
        self._retry: dict[str, tuple[float, float]] = {}  # replicaset uid -> (retry at, back-off)
        self._wake_at: float | None = None
        self._status = PodStatusWriter(store)
        self._started: dict[str, Obj] = {}  # pod uid -> pod, for the runtime
        self._revisions: dict[str, dict[str, int]] = {}  # deployment uid -> hash -> revision
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the controller is already running")
        self._stopping.clear()
        subscription = self.store.subscribe()
        self._thread = threading.Thread(
            target=self._run, args=(subscription,), name="sandbox-controller", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop reconciling, then stop the runtime's pods."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            started, self._started = self._started, {}
        for pod in started.values():
            self._stop_runtime(pod)

    def __enter__(self) -> Controller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, subscription: Any) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self.reconcile()
                except Exception:  # one failed pass must not kill the control plane
                    log.exception("sandbox controller: reconcile failed")
                timeout = self.tick
                if self._wake_at is not None:
                    timeout = max(0.0, min(timeout, self._wake_at - time.monotonic()))
                if subscription.get(timeout=timeout) is not None:
                    while subscription.get(timeout=0) is not None:
                        pass  # level-triggered: one pass covers every queued event
        finally:
            subscription.close()

    # -- one pass ----------------------------------------------------------------------------

    def reconcile(self) -> None:
        """One level-triggered pass over everything (also usable without the thread)."""
        with self._lock:
            self._wake_at = None
            self._stop_deleted_pods()
            deployments, _ = self.store.list(DEPLOYMENTS)
            replicasets, _ = self.store.list(REPLICASETS)
            pods, _ = self.store.list(PODS)
            self._collect_orphans(deployments, replicasets, pods)
            due = [d for d in deployments if self._due(d)]
            for d in due:
                self._sync_deployment(d, self.store.list(PODS)[0])
            for rs in self.store.list(REPLICASETS)[0]:
                if _controller_ref(rs) is None:  # a ReplicaSet of its own: the RS controller's
                    self._sync_standalone_replicaset(rs)
            self._schedule()
            self._start_bound_pods()
            pods, _ = self.store.list(PODS)
            for rs in self.store.list(REPLICASETS)[0]:
                self._sync_replicaset_status(rs, pods)
            replicasets, _ = self.store.list(REPLICASETS)
            for d in due:
                self._sync_deployment_status(d, replicasets, pods)
            self._sync_quotas()
            self._sync_endpoints(pods)

    def _wake(self, at: float) -> None:
        self._wake_at = at if self._wake_at is None else min(self._wake_at, at)

    def _due(self, deployment: Obj) -> bool:
        """Whether the controller has had its moment since the Deployment's spec last changed."""
        meta = _meta(deployment)
        at = time.monotonic()
        seen = self._seen.get(meta["uid"])
        if seen is None or seen[0] != meta.get("generation"):
            seen = self._seen[meta["uid"]] = (meta.get("generation"), at)
        if at >= seen[1] + self.status_delay:
            return True
        self._wake(seen[1] + self.status_delay)
        return False

    # -- runtime -----------------------------------------------------------------------------

    def _stop_runtime(self, pod: Obj) -> None:
        try:
            self.runtime.stop(pod)
        except Exception:  # a runtime bug must not stop the controllers
            log.exception("sandbox runtime: stopping pod %s failed", _meta(pod).get("name"))

    def _stop_deleted_pods(self) -> None:
        live = {_meta(p)["uid"] for p in self.store.list(PODS)[0]}
        for uid in [uid for uid in self._started if uid not in live]:
            self._stop_runtime(self._started.pop(uid))

    def _start_bound_pods(self) -> None:
        for pod in self.store.list(PODS)[0]:
            uid = _meta(pod)["uid"]
            if uid in self._started or not (pod.get("spec") or {}).get("nodeName"):
                continue
            if not _active(pod):
                continue
            self._started[uid] = pod
            try:
                self.runtime.start(pod)
            except Exception:  # a runtime bug must not stop the controllers
                log.exception("sandbox runtime: starting pod %s failed", _meta(pod)["name"])

    def _delete_pod(self, pod: Obj) -> None:
        meta = _meta(pod)
        try:
            self.store.delete(PODS, meta.get("namespace"), meta["name"], uid=meta["uid"])
        except StatusError:
            return  # already gone or replaced
        started = self._started.pop(meta["uid"], None)
        if started is not None:
            self._stop_runtime(started)

    def _collect_orphans(
        self, deployments: list[Obj], replicasets: list[Obj], pods: list[Obj]
    ) -> None:
        """The garbage collector: ReplicaSets whose Deployment is gone, Pods whose ReplicaSet is."""
        alive = {_meta(d)["uid"] for d in deployments}
        self._seen = {uid: seen for uid, seen in self._seen.items() if uid in alive}
        live_rs = set()
        for rs in replicasets:
            owner = _controller_ref(rs)
            if owner and owner.get("kind") == "Deployment" and owner.get("uid") not in alive:
                self._delete_quietly(REPLICASETS, _meta(rs))
            else:
                live_rs.add(_meta(rs)["uid"])
        for uid in [u for u in self._failures if u not in live_rs]:
            self._failures.pop(uid, None)
        for uid in [u for u in self._retry if u not in live_rs]:
            self._retry.pop(uid, None)
        for pod in pods:
            owner = _controller_ref(pod)
            if owner is None:
                continue
            gone = (owner.get("kind") == "Deployment" and owner.get("uid") not in alive) or (
                owner.get("kind") == "ReplicaSet" and owner.get("uid") not in live_rs
            )
            if gone:
                self._delete_pod(pod)

    # -- deployments -------------------------------------------------------------------------

    def _replicasets_of(self, deployment: Obj) -> list[Obj]:
        meta = _meta(deployment)
        return [
            rs
            for rs in self.store.list(REPLICASETS, meta["namespace"])[0]
            if _controller_uid(rs) == meta["uid"]
        ]

    def _current_hash(self, deployment: Obj) -> str:
        """The pod-template-hash of the Deployment's template: that of an existing ReplicaSet whose
        template equals it but for the hash label (deployment_util.go FindNewReplicaSet,
        EqualIgnoreHash: `kubectl rollout undo` brings an old ReplicaSet back), else a new hash."""
        template = (deployment.get("spec") or {}).get("template") or {}
        for rs in sorted(
            self._replicasets_of(deployment), key=lambda r: str(_meta(r)["creationTimestamp"])
        ):
            theirs = _comparable((rs.get("spec") or {}).get("template") or {})
            pod_hash = ((theirs.get("metadata") or {}).get("labels") or {}).pop(HASH_LABEL, None)
            if pod_hash and theirs == _comparable(template):
                return str(pod_hash)
        return template_hash(template)

    def _owned(self, deployment: Obj, pods: Iterable[Obj]) -> list[Obj]:
        """The Deployment's active pods: those of its ReplicaSets."""
        owners = {_meta(rs)["uid"] for rs in self._replicasets_of(deployment)}
        return [p for p in pods if _controller_uid(p) in owners and _active(p)]

    def _revision(self, deployment: Obj, pod_hash: str) -> int:
        """The template's revision: the highest, also when an older template comes back."""
        uid = _meta(deployment)["uid"]
        if uid not in self._revisions:
            # A controller (re)started on a store that has ReplicaSets: their revision annotations
            # are the history (deployment_util.go MaxRevision).
            self._revisions[uid] = {
                str((_meta(rs).get("labels") or {}).get(HASH_LABEL)): _revision_of(rs)
                for rs in self._replicasets_of(deployment)
                if (_meta(rs).get("labels") or {}).get(HASH_LABEL) and _revision_of(rs)
            }
        known = self._revisions[uid]
        top = max(known.values(), default=0)
        if pod_hash not in known or known[pod_hash] < top:
            annotated = _revision_of(deployment)
            known[pod_hash] = max(annotated, top) + 1 if known else annotated or 1
        return known[pod_hash]

    def _sync_deployment(self, deployment: Obj, pods: list[Obj]) -> None:
        spec = deployment.get("spec") or {}
        meta = _meta(deployment)
        pod_hash = self._current_hash(deployment)
        revision = self._revision(deployment, pod_hash)
        if (meta.get("annotations") or {}).get(REVISION) != str(revision):

            def annotate(current: Obj) -> Obj:
                _meta(current).setdefault("annotations", {})[REVISION] = str(revision)
                return current

            self.store.mutate(
                DEPLOYMENTS, meta["namespace"], meta["name"], annotate, uid=meta["uid"]
            )
        if spec.get("paused"):
            return
        desired = int(spec.get("replicas", 1))
        strategy = spec.get("strategy") or {}
        surge = 0
        if strategy.get("type") != "Recreate":
            rolling = strategy.get("rollingUpdate") or {}
            surge = _resolve_percent(rolling.get("maxSurge", "25%"), desired, round_up=True)
        rs = self._new_replicaset(deployment, pod_hash, revision, desired + surge)
        if rs is None:
            return
        owned = self._owned(deployment, pods)
        new = [p for p in owned if (_meta(p).get("labels") or {}).get(HASH_LABEL) == pod_hash]
        old = [p for p in owned if p not in new]
        if strategy.get("type") == "Recreate":
            for pod in old:
                self._delete_pod(pod)
            self._scale(rs, new, desired)
            self._scale_old_replicasets(deployment, rs)
            return
        rolling = strategy.get("rollingUpdate") or {}
        unavailable = _resolve_percent(
            rolling.get("maxUnavailable", "25%"), desired, round_up=False
        )
        if surge == 0 and unavailable == 0:
            unavailable = 1
        room = desired + surge - len(new) - len(old)
        if len(new) < desired:
            want = len(new) + max(0, min(desired - len(new), room))
            new = self._scale(rs, new, want)
        elif len(new) > desired:
            new = self._scale(rs, new, desired)
        else:
            self._scale(rs, new, desired)
        if not old:
            self._scale_old_replicasets(deployment, rs)
            return
        min_available = desired - unavailable
        new_unavailable = sum(1 for p in new if not _ready(p))
        # First old pods that are not ready, then ready ones while availability allows it.
        cleanup = len(new) + len(old) - min_available - new_unavailable
        for pod in [p for p in old if not _ready(p)][: max(0, cleanup)]:
            self._delete_pod(pod)
            old.remove(pod)
        available = sum(1 for p in new + old if _ready(p))
        victims = sorted((p for p in old if _ready(p)), key=lambda p: _meta(p)["creationTimestamp"])
        for pod in victims[: max(0, available - min_available)]:
            self._delete_pod(pod)
        self._scale_old_replicasets(deployment, rs)

    def _new_replicaset(
        self, deployment: Obj, pod_hash: str, revision: int, max_replicas: int
    ) -> Obj | None:
        """The ReplicaSet of the current template, created if missing (sync.go getNewReplicaSet):
        ``<deployment>-<hash>``, owned by the Deployment, the hash in its labels, selector and
        template labels, the revision annotations kept current."""
        meta = _meta(deployment)
        spec = deployment.get("spec") or {}
        name = f"{meta['name']}-{pod_hash}"
        annotations = {
            REVISION: str(revision),
            DESIRED_REPLICAS: str(int(spec.get("replicas", 1))),
            MAX_REPLICAS: str(max_replicas),
        }
        current = self.store.find(REPLICASETS, meta["namespace"], name)
        if current is not None:
            if _controller_uid(current) != meta["uid"]:
                return None  # a hash collision with someone else's ReplicaSet: leave it alone
            have = _meta(current).get("annotations") or {}
            if any(have.get(k) != v for k, v in annotations.items()):

                def annotate(cur: Obj) -> Obj:
                    _meta(cur).setdefault("annotations", {}).update(annotations)
                    return cur

                current = (
                    self.store.mutate(
                        REPLICASETS, meta["namespace"], name, annotate, uid=_meta(current)["uid"]
                    )
                    or current
                )
            return current
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {})
        template["metadata"]["labels"] = {
            **(template["metadata"].get("labels") or {}),
            HASH_LABEL: pod_hash,
        }
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: pod_hash}
        body: Obj = {
            "apiVersion": REPLICASETS.api_version,
            "kind": REPLICASETS.kind,
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": DEPLOYMENTS.api_version,
                        "kind": DEPLOYMENTS.kind,
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        try:
            return self.store.create(REPLICASETS, admit_create(REPLICASETS, body))
        except StatusError as err:
            log.warning("sandbox controller: creating ReplicaSet %s failed: %s", name, err)
            return None

    def _set_replicas(self, rs: Obj, replicas: int) -> None:
        """Scale a ReplicaSet's spec (the deployment controller's scaleReplicaSet)."""
        if int((rs.get("spec") or {}).get("replicas", 1)) == replicas:
            return
        rmeta = _meta(rs)

        def scale(cur: Obj) -> Obj:
            cur.setdefault("spec", {})["replicas"] = replicas
            return cur

        self.store.mutate(REPLICASETS, rmeta["namespace"], rmeta["name"], scale, uid=rmeta["uid"])

    def _scale_old_replicasets(self, deployment: Obj, new_rs: Obj) -> None:
        """Old ReplicaSets keep the number of pods the strategy left them (zero when done)."""
        live = self._owned(deployment, self.store.list(PODS, _meta(deployment)["namespace"])[0])
        for rs in self._replicasets_of(deployment):
            if _meta(rs)["uid"] == _meta(new_rs)["uid"]:
                continue
            left = sum(1 for p in live if _controller_uid(p) == _meta(rs)["uid"])
            self._set_replicas(rs, left)

    def _scale(self, rs: Obj, pods: list[Obj], desired: int) -> list[Obj]:
        """Create or delete pods of the ReplicaSet until there are ``desired``; the
        unscheduled, then the unready, then the newest go first. Returns the survivors."""
        self._set_replicas(rs, desired)
        if len(pods) < desired:
            return pods + self._create_pods(rs, desired - len(pods))
        self._failures.pop(_meta(rs)["uid"], None)  # nothing to create: manageReplicas succeeds
        self._retry.pop(_meta(rs)["uid"], None)

        def keep_first(p: Obj) -> tuple[bool, bool, str]:
            scheduled = bool((p.get("spec") or {}).get("nodeName"))
            return (not scheduled, not _ready(p), str(_meta(p)["creationTimestamp"]))

        ranked = sorted(pods, key=keep_first)
        for pod in ranked[desired:]:
            self._delete_pod(pod)
        return ranked[:desired]

    def _create_pods(self, rs: Obj, count: int) -> list[Obj]:
        """The ReplicaSet's manageReplicas: pods from its template with ``generateName``, each
        admitted as an API create would be (quota included). The first refusal stops the batch
        (slowStartBatch), records a FailedCreate Event and backs off."""
        meta = _meta(rs)
        uid = meta["uid"]
        at = time.monotonic()
        retry_at, backoff = self._retry.get(uid, (0.0, 0.0))
        if at < retry_at:
            self._wake(retry_at)
            return []
        template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
        template_meta = template.get("metadata") or {}
        created = []
        for _ in range(max(0, count)):
            pod: Obj = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "generateName": f"{meta['name']}-",
                    "namespace": meta["namespace"],
                    "labels": dict(template_meta.get("labels") or {}),
                    "ownerReferences": [
                        {
                            "apiVersion": REPLICASETS.api_version,
                            "kind": REPLICASETS.kind,
                            "name": meta["name"],
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": copy.deepcopy(template.get("spec") or {}),
            }
            if template_meta.get("annotations"):
                pod["metadata"]["annotations"] = dict(template_meta["annotations"])
            try:
                with self.store.atomic():
                    admitted = admit_create(PODS, pod)
                    admit_pod(self.store, admitted)
                    created.append(self.store.create(PODS, admitted))
            except StatusError as err:
                log.warning(
                    "sandbox controller: creating a pod for %s failed: %s", meta["name"], err
                )
                self._failures[uid] = err.message
                backoff = min(RETRY_MAX, backoff * 2 if backoff else RETRY_FIRST)
                self._retry[uid] = (at + backoff, backoff)
                self._wake(at + backoff)
                self._record_event(rs, "Warning", FAILED_CREATE, f"Error creating: {err.message}")
                return created
        self._failures.pop(uid, None)
        self._retry.pop(uid, None)
        return created

    def _sync_standalone_replicaset(self, rs: Obj) -> None:
        """manageReplicas for a ReplicaSet no Deployment controls: its pods up or down to
        spec.replicas (pods are not adopted by selector)."""
        uid = _meta(rs)["uid"]
        pods = [p for p in self.store.list(PODS)[0] if _controller_uid(p) == uid and _active(p)]
        self._scale(rs, pods, int((rs.get("spec") or {}).get("replicas", 1)))

    def _record_event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        """A core/v1 Event as client-go's recorder writes it for the replicaset-controller
        (tools/record/event.go makeEvent: name ``<object>.<unix nanos in hex>``, source
        component; events_cache.go EventCorrelator: a repeat bumps ``count`` and
        ``lastTimestamp`` of the same Event instead of writing a new one)."""
        meta = _meta(obj)
        stamp = rfc3339()
        for ev in self.store.list(EVENTS, meta["namespace"])[0]:
            involved = ev.get("involvedObject") or {}
            if (
                involved.get("uid") == meta["uid"]
                and ev.get("reason") == reason
                and ev.get("message") == message
            ):

                def bump(cur: Obj) -> Obj:
                    cur["count"] = int(cur.get("count") or 1) + 1
                    cur["lastTimestamp"] = stamp
                    return cur

                self.store.mutate(EVENTS, meta["namespace"], _meta(ev)["name"], bump)
                return
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "kind": obj.get("kind", REPLICASETS.kind),
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "apiVersion": obj.get("apiVersion", REPLICASETS.api_version),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "replicaset-controller"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": kind,
            "eventTime": None,
            "reportingComponent": "replicaset-controller",
            "reportingInstance": "",
        }
        try:
            self.store.create(EVENTS, admit_create(EVENTS, body))
        except StatusError as err:
            log.warning("sandbox controller: recording an event failed: %s", err)

    def _sync_replicaset_status(self, rs: Obj, pods: list[Obj]) -> None:
        """replica_set_utils.go calculateStatus: counts (``replicas`` always, the others omitted
        when zero), observedGeneration, and the ReplicaFailure condition while creating fails
        (set once with the first error's text, removed when a sync succeeds)."""
        meta = _meta(rs)
        spec = rs.get("spec") or {}
        owned = [p for p in pods if _controller_uid(p) == meta["uid"] and _active(p)]
        at = now_utc()
        min_ready = int(spec.get("minReadySeconds") or 0)
        counts = {
            "fullyLabeledReplicas": len(owned),
            "readyReplicas": sum(1 for p in owned if _ready(p)),
            "availableReplicas": sum(1 for p in owned if _available(p, min_ready, at)),
        }
        failure = self._failures.get(meta["uid"])
        generation = meta.get("generation")

        def change(current: Obj) -> Obj | None:
            old_status = current.get("status") or {}
            status: Obj = {"replicas": len(owned)}
            status.update({k: v for k, v in counts.items() if v})
            status["observedGeneration"] = generation
            conditions = [
                dict(c)
                for c in old_status.get("conditions") or []
                if c.get("type") != REPLICA_FAILURE
            ]
            existing = next(
                (c for c in old_status.get("conditions") or [] if c.get("type") == REPLICA_FAILURE),
                None,
            )
            if failure is not None:
                conditions.append(
                    dict(existing)
                    if existing is not None
                    else {
                        "type": REPLICA_FAILURE,
                        "status": "True",
                        "lastTransitionTime": rfc3339(at),
                        "reason": FAILED_CREATE,
                        "message": failure,
                    }
                )
            if conditions:
                status["conditions"] = conditions
            if status == old_status:
                return None
            current["status"] = status
            return current

        self.store.mutate(REPLICASETS, meta["namespace"], meta["name"], change, uid=meta["uid"])

    def _sync_quotas(self) -> None:
        for rq in self.store.list(RESOURCEQUOTAS)[0]:
            status = quota_status(self.store, rq)
            if rq.get("status") == status:
                continue
            meta = _meta(rq)

            def write(cur: Obj, status: Obj = status) -> Obj | None:
                if cur.get("status") == status:
                    return None
                cur["status"] = status
                return cur

            self.store.mutate(
                RESOURCEQUOTAS, meta["namespace"], meta["name"], write, uid=meta["uid"]
            )

    def _sync_deployment_status(
        self, deployment: Obj, replicasets: list[Obj], pods: list[Obj]
    ) -> None:
        spec = deployment.get("spec") or {}
        meta = _meta(deployment)
        mine = [rs for rs in replicasets if _controller_uid(rs) == meta["uid"]]
        owners = {_meta(rs)["uid"] for rs in mine}
        owned = [p for p in pods if _controller_uid(p) in owners and _active(p)]
        pod_hash = self._current_hash(deployment)
        at = now_utc()
        desired = int(spec.get("replicas", 1))
        min_ready = int(spec.get("minReadySeconds") or 0)
        updated = sum(
            1 for p in owned if (_meta(p).get("labels") or {}).get(HASH_LABEL) == pod_hash
        )
        counts = {
            "replicas": len(owned),
            "updatedReplicas": updated,
            "readyReplicas": sum(1 for p in owned if _ready(p)),
            "availableReplicas": sum(1 for p in owned if _available(p, min_ready, at)),
        }
        counts["unavailableReplicas"] = max(
            0, max(desired, len(owned)) - counts["availableReplicas"]
        )
        strategy = spec.get("strategy") or {}
        max_unavailable = 0
        if strategy.get("type") != "Recreate":
            rolling = strategy.get("rollingUpdate") or {}
            surge = _resolve_percent(rolling.get("maxSurge", "25%"), desired, round_up=True)
            max_unavailable = _resolve_percent(
                rolling.get("maxUnavailable", "25%"), desired, round_up=False
            )
            if surge == 0 and max_unavailable == 0:
                max_unavailable = 1
            max_unavailable = min(max_unavailable, desired)
        rs_name = f"{meta['name']}-{pod_hash}"
        failure = _replica_failure(mine, rs_name)
        generation = meta.get("generation")

        def change(current: Obj) -> Obj | None:
            if _meta(current).get("generation") != generation:
                return None  # the spec moved on: the next pass computes from the new one
            old_status = current.get("status") or {}
            status: Obj = {"observedGeneration": generation}
            status.update({k: v for k, v in counts.items() if v})
            if old_status.get("collisionCount"):
                status["collisionCount"] = old_status["collisionCount"]
            conditions = [dict(c) for c in old_status.get("conditions") or []]
            available_ok = counts["availableReplicas"] >= desired - max_unavailable
            _set_condition(
                conditions,
                "Available",
                available_ok,
                "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if available_ok
                else "Deployment does not have minimum availability.",
            )
            self._progress(conditions, old_status, counts, desired, rs_name, spec, at)
            # syncRolloutStatus moves the ReplicaSets' failure into the Deployment's conditions.
            conditions = [c for c in conditions if c.get("type") != REPLICA_FAILURE]
            if failure is not None:
                conditions.append(failure)
            status["conditions"] = _ordered(conditions)
            if status == old_status:
                return None
            current["status"] = status
            return current

        self.store.mutate(DEPLOYMENTS, meta["namespace"], meta["name"], change, uid=meta["uid"])

    @staticmethod
    def _progress(
        conditions: list[Obj],
        old_status: Obj,
        counts: dict[str, int],
        desired: int,
        rs_name: str,
        spec: Obj,
        at: datetime,
    ) -> None:
        """The Progressing condition, as the deployment controller's syncRolloutStatus sets it."""
        current = next((c for c in conditions if c.get("type") == "Progressing"), None)
        complete = (
            counts["updatedReplicas"] == desired
            and counts["replicas"] == desired
            and counts["availableReplicas"] == desired
        )
        old_old = int(old_status.get("replicas") or 0) - int(old_status.get("updatedReplicas") or 0)
        new_old = counts["replicas"] - counts["updatedReplicas"]
        progressed = (
            counts["updatedReplicas"] > int(old_status.get("updatedReplicas") or 0)
            or new_old < old_old
            or counts["readyReplicas"] > int(old_status.get("readyReplicas") or 0)
            or counts["availableReplicas"] > int(old_status.get("availableReplicas") or 0)
        )
        new_rs = current is None or rs_name not in str(current.get("message", ""))
        deadline = spec.get("progressDeadlineSeconds")
        if complete:
            _set_condition(
                conditions,
                "Progressing",
                True,
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                at,
            )
        elif new_rs:
            _set_condition(
                conditions,
                "Progressing",
                True,
                "NewReplicaSetCreated",
                f'Created new replica set "{rs_name}"',
                at,
                refresh=True,
            )
        elif progressed:
            _set_condition(
                conditions,
                "Progressing",
                True,
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                at,
                refresh=True,
            )
        elif (
            current is not None
            and current.get("reason") != "NewReplicaSetAvailable"
            and isinstance(deadline, int)
        ):
            since = parse_rfc3339(current.get("lastUpdateTime"))
            if since is not None and (at - since).total_seconds() > deadline:
                _set_condition(
                    conditions,
                    "Progressing",
                    False,
                    "ProgressDeadlineExceeded",
                    f'ReplicaSet "{rs_name}" has timed out progressing.',
                    at,
                )

    # -- scheduler ---------------------------------------------------------------------------

    def _schedule(self) -> None:
        nodes, _ = self.store.list(NODES)
        pods = sorted(
            self.store.list(PODS)[0],
            key=lambda p: (str(_meta(p)["creationTimestamp"]), int(_meta(p)["resourceVersion"])),
        )
        used: defaultdict[str, float] = defaultdict(float)
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name and _active(pod):
                used[node_name] += _memory_request(pod)
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") or not _active(pod):
                continue
            if (pod.get("spec") or {}).get(
                "schedulerName", "default-scheduler"
            ) != "default-scheduler":
                continue
            request = _memory_request(pod)
            reasons: Counter[str] = Counter()
            chosen = None
            for node in nodes:
                name = _meta(node)["name"]
                allocatable = ((node.get("status") or {}).get("allocatable") or {}).get("memory")
                try:
                    free = parse_quantity(allocatable) - used[name] if allocatable else math.inf
                except ValueError:
                    free = math.inf
                if (node.get("spec") or {}).get("unschedulable"):
                    reasons["node(s) were unschedulable"] += 1
                elif not _node_matches(pod, node):
                    reasons["node(s) didn't match Pod's node affinity/selector"] += 1
                elif request > free:
                    reasons["Insufficient memory"] += 1
                else:
                    chosen = node
                    break
            if chosen is not None:
                used[_meta(chosen)["name"]] += request
                self._bind(pod, chosen)
            else:
                self._unschedulable(pod, len(nodes), reasons)

    def _bind(self, pod: Obj, node: Obj) -> None:
        meta = _meta(pod)
        node_name = _meta(node)["name"]
        host_ip = node_ip(self.store, node_name)

        def bind(current: Obj) -> Obj | None:
            if (current.get("spec") or {}).get("nodeName"):
                return None
            current["spec"]["nodeName"] = node_name
            current["status"] = creating_status(current, host_ip)
            return current

        self.store.mutate(PODS, meta.get("namespace"), meta["name"], bind, uid=meta["uid"])

    def _unschedulable(self, pod: Obj, node_count: int, reasons: Counter[str]) -> None:
        if node_count == 0:
            message = "no nodes available to schedule pods"
        else:
            parts = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
            message = (
                f"0/{node_count} nodes are available: {parts}. preemption: 0/{node_count} nodes "
                f"are available: {node_count} No preemption victims found for incoming pod."
            )
        meta = _meta(pod)

        def mark(current: Obj) -> Obj | None:
            status = current.setdefault("status", {})
            conditions = [dict(c) for c in status.get("conditions") or []]
            before = copy.deepcopy(conditions)
            _set_condition(conditions, "PodScheduled", False, "Unschedulable", message, now_utc())
            for c in conditions:
                c.pop("lastUpdateTime", None)
                c.setdefault("lastProbeTime", None)
            if conditions == before and status.get("phase") == "Pending":
                return None
            status["conditions"] = conditions
            status["phase"] = "Pending"
            return current

        self.store.mutate(PODS, meta.get("namespace"), meta["name"], mark, uid=meta["uid"])

    # -- endpoints ---------------------------------------------------------------------------

    def _sync_endpoints(self, pods: list[Obj]) -> None:
        services, _ = self.store.list(SERVICES)
        wanted: set[tuple[str, str]] = set()
        for svc in services:
            selector = (svc.get("spec") or {}).get("selector")
            if not selector:
                continue  # endpoints managed elsewhere
            meta = _meta(svc)
            wanted.add((meta["namespace"], meta["name"]))
            chosen = LabelSelector(
                tuple(Requirement(k, "=", (str(v),)) for k, v in selector.items())
            )
            members = [
                p
                for p in pods
                if _meta(p).get("namespace") == meta["namespace"]
                and _active(p)
                and (p.get("status") or {}).get("podIP")
                and chosen.matches(_meta(p).get("labels"))
            ]
            self._write_endpoints(svc, members)
            self._write_slice(svc, members)
        for ep in self.store.list(ENDPOINTS)[0]:
            m = _meta(ep)
            if (m.get("labels") or {}).get(SKIP_MIRROR_LABEL) == "true" and (
                m.get("namespace"),
                m["name"],
            ) not in wanted:
                self._delete_quietly(ENDPOINTS, m)
        for es in self.store.list(ENDPOINTSLICES)[0]:
            m = _meta(es)
            labels = m.get("labels") or {}
            if (
                labels.get(MANAGED_BY_LABEL) == MANAGED_BY
                and (
                    m.get("namespace"),
                    labels.get(SERVICE_NAME_LABEL),
                )
                not in wanted
            ):
                self._delete_quietly(ENDPOINTSLICES, m)

    def _delete_quietly(self, rt: ResourceType, meta: Obj) -> None:
        with contextlib.suppress(StatusError):  # someone else removed it first
            self.store.delete(rt, meta.get("namespace"), meta["name"], uid=meta.get("uid"))

    @staticmethod
    def _ports(svc: Obj, members: list[Obj]) -> list[Obj]:
        ports = []
        for sp in (svc.get("spec") or {}).get("ports") or []:
            target = sp.get("targetPort", sp.get("port"))
            if isinstance(target, str) and not target.isdigit():
                named = [
                    cp.get("containerPort")
                    for p in members[:1]
                    for c in (p.get("spec") or {}).get("containers") or []
                    for cp in c.get("ports") or []
                    if cp.get("name") == target
                ]
                if not named:
                    continue
                target = named[0]
            port: Obj = {"port": int(target), "protocol": sp.get("protocol", "TCP")}
            if sp.get("name"):
                port = {"name": sp["name"], **port}
            ports.append(port)
        return ports

    def _write_endpoints(self, svc: Obj, members: list[Obj]) -> None:
        meta = _meta(svc)

        def address(p: Obj) -> Obj:
            pm = _meta(p)
            addr: Obj = {"ip": p["status"]["podIP"]}
            if (p.get("spec") or {}).get("nodeName"):
                addr["nodeName"] = p["spec"]["nodeName"]
            addr["targetRef"] = {
                "kind": "Pod",
                "namespace": pm["namespace"],
                "name": pm["name"],
                "uid": pm["uid"],
            }
            return addr

        ready = [address(p) for p in members if _ready(p)]
        not_ready = [address(p) for p in members if not _ready(p)]
        subset: Obj = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        ports = self._ports(svc, members)
        if ports:
            subset["ports"] = ports
        labels = {**(meta.get("labels") or {}), SKIP_MIRROR_LABEL: "true"}
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels},
        }
        if ready or not_ready:
            body["subsets"] = [subset]
        current = self.store.find(ENDPOINTS, meta["namespace"], meta["name"])
        if current is None:
            self.store.create(ENDPOINTS, body)
            return
        if current.get("subsets") == body.get("subsets") and _meta(current).get("labels") == labels:
            return

        def replace(cur: Obj) -> Obj:
            _meta(cur)["labels"] = labels
            cur.pop("subsets", None)
            if "subsets" in body:
                cur["subsets"] = body["subsets"]
            return cur

        self.store.mutate(ENDPOINTS, meta["namespace"], meta["name"], replace)

    def _write_slice(self, svc: Obj, members: list[Obj]) -> None:
        """One discovery.k8s.io/v1 EndpointSlice per Service, shaped as the endpointslice
        controller writes it (kubernetes staging/src/k8s.io/endpointslice/utils.go: podToEndpoint
        sets conditions ready = serving && !terminating, serving = pod Ready, terminating =
        deletionTimestamp set, a Pod targetRef and nodeName; newEndpointSlice: generateName
        "<service>-", a controller ownerReference to the Service, the Service's labels plus
        kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by). Production
        routing in the sandbox follows these slices (gx10slots/sandbox/dataplane.py)."""
        meta = _meta(svc)
        endpoints = []
        for p in members:
            pm = _meta(p)
            ready = _ready(p)
            ep: Obj = {
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "targetRef": {
                    "kind": "Pod",
                    "namespace": pm["namespace"],
                    "name": pm["name"],
                    "uid": pm["uid"],
                },
            }
            if (p.get("spec") or {}).get("nodeName"):
                ep["nodeName"] = p["spec"]["nodeName"]
            endpoints.append(ep)
        ports = [{"name": p.get("name", ""), **p} for p in self._ports(svc, members)]
        labels = {
            **(meta.get("labels") or {}),
            SERVICE_NAME_LABEL: meta["name"],
            MANAGED_BY_LABEL: MANAGED_BY,
        }
        existing = [
            es
            for es in self.store.list(ENDPOINTSLICES, meta["namespace"])[0]
            if (_meta(es).get("labels") or {}).get(SERVICE_NAME_LABEL) == meta["name"]
            and (_meta(es).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY
        ]
        if not existing:
            self.store.create(
                ENDPOINTSLICES,
                {
                    "apiVersion": ENDPOINTSLICES.api_version,
                    "kind": ENDPOINTSLICES.kind,
                    "metadata": {
                        "generateName": f"{meta['name']}-",
                        "namespace": meta["namespace"],
                        "labels": labels,
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Service",
                                "name": meta["name"],
                                "uid": meta["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": ports,
                },
            )
            return
        es = existing[0]
        if es.get("endpoints") == endpoints and es.get("ports") == ports:
            return

        def replace(cur: Obj) -> Obj:
            cur.update(endpoints=endpoints, ports=ports)
            _meta(cur)["labels"] = labels
            return cur

        self.store.mutate(ENDPOINTSLICES, meta["namespace"], _meta(es)["name"], replace)


def _set_condition(
    conditions: list[Obj],
    kind: str,
    ok: bool,
    reason: str,
    message: str,
    at: datetime | None = None,
    *,
    refresh: bool = False,
) -> None:
    """SetDeploymentCondition: keep the transition time while the status holds; change nothing
    when status and reason are unchanged, unless ``refresh`` (progress was made)."""
    stamp = rfc3339(at or now_utc())
    status = "True" if ok else "False"
    current = next((c for c in conditions if c.get("type") == kind), None)
    unchanged = current is not None and (current.get("status"), current.get("reason")) == (
        status,
        reason,
    )
    if current is not None and unchanged and not refresh:
        current["message"] = message
        return
    updated = {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }
    if current is not None:
        if current.get("status") == status:
            updated["lastTransitionTime"] = current.get("lastTransitionTime", stamp)
        conditions[conditions.index(current)] = updated
    else:
        conditions.append(updated)


def _ordered(conditions: list[Obj]) -> list[Obj]:
    order = {"Available": 0, "Progressing": 1}
    return sorted(conditions, key=lambda c: order.get(str(c.get("type")), 2))
