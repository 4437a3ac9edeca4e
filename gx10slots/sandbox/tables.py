"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for.

Columns follow the apiserver's printers (pkg/printers/internalversion); columns with priority 1
only show with ``-o wide``. kubectl upper-cases the names.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gx10slots.kube.values import now_utc, parse_rfc3339
from gx10slots.sandbox import customresources
from gx10slots.sandbox.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    EVENTS,
    JOBS,
    LEASES,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    RESOURCEQUOTAS,
    SECRETS,
    SERVICES,
)
from gx10slots.sandbox.selectors import format_selector, selector_from_spec
from gx10slots.sandbox.store import Obj, ResourceType

Column = tuple[str, str, int]  # name, type, priority
Printer = Callable[[Obj, datetime], list[Any]]

NONE = "<none>"


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, as in the AGE column."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def _age(obj: Obj, at: datetime) -> str:
    return _since(obj["metadata"].get("creationTimestamp"), at)


def _since(stamp: str | None, at: datetime) -> str:
    moment = parse_rfc3339(stamp)
    return human_duration((at - moment).total_seconds()) if moment else "<unknown>"


def pod_status_reason(pod: Obj) -> str:
    """The STATUS column of ``kubectl get pods`` (printPod)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    running = False
    for cs in reversed(status.get("containerStatuses") or []):
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated:
            signal = terminated.get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
        elif cs.get("ready") and state.get("running"):
            running = True
    if reason == "Completed" and running:
        reason = "Running"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod(pod: Obj, at: datetime) -> list[Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in statuses)
    last = max(
        (
            (cs.get("lastState") or {}).get("terminated", {}).get("finishedAt") or ""
            for cs in statuses
        ),
        default="",
    )
    restart_text = f"{restarts} ({_since(last, at)} ago)" if restarts and last else str(restarts)
    status = pod.get("status") or {}
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        pod_status_reason(pod),
        restart_text,
        _age(pod, at),
        status.get("podIP") or NONE,
        (pod.get("spec") or {}).get("nodeName") or NONE,
        status.get("nominatedNodeName") or NONE,
        NONE,
    ]


def _deployment(d: Obj, at: datetime) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    containers = pod_spec.get("containers") or []
    return [
        d["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        _age(d, at),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        format_selector(selector_from_spec(spec.get("selector"))) or NONE,
    ]


def _service(svc: Obj, at: datetime) -> list[Any]:
    spec = svc.get("spec") or {}
    ports = []
    for p in spec.get("ports") or []:
        node = f":{p['nodePort']}" if p.get("nodePort") else ""
        ports.append(f"{p.get('port')}{node}/{p.get('protocol', 'TCP')}")
    selector = spec.get("selector") or {}
    external = ",".join(spec.get("externalIPs") or []) or NONE
    return [
        svc["metadata"]["name"],
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or NONE,
        external,
        ",".join(ports) or NONE,
        _age(svc, at),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or NONE,
    ]


def _node(node: Obj, at: datetime) -> list[Any]:
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    text = (
        "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    )
    if (node.get("spec") or {}).get("unschedulable"):
        text += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return [
        node["metadata"]["name"],
        text,
        ",".join(roles) or NONE,
        _age(node, at),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP") or NONE,
        addresses.get("ExternalIP") or NONE,
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _endpoints(ep: Obj, at: datetime) -> list[Any]:
    addrs = []
    for subset in ep.get("subsets") or []:
        for a in subset.get("addresses") or []:
            for p in subset.get("ports") or [{}]:
                addrs.append(f"{a.get('ip')}:{p.get('port')}" if p else str(a.get("ip")))
    return [ep["metadata"]["name"], ",".join(addrs) or NONE, _age(ep, at)]


def _event(ev: Obj, at: datetime) -> list[Any]:
    involved = ev.get("involvedObject") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get("creationTimestamp")
    return [
        _since(last, at),
        ev.get("type", ""),
        ev.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        ev.get("message", ""),
    ]


def _replicaset(rs: Obj, at: datetime) -> list[Any]:
    """kubernetes pkg/printers/internalversion printReplicaSet: desired, current, ready."""
    status = rs.get("status") or {}
    return [
        rs["metadata"]["name"],
        int((rs.get("spec") or {}).get("replicas", 1)),
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        _age(rs, at),
    ]


def _resource_quota(rq: Obj, at: datetime) -> list[Any]:
    """printResourceQuota: 'name: used/hard' for request-like and limits.* resources, sorted."""
    status = rq.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    names = sorted(hard)
    limits = [n for n in names if n.startswith("limits.")]
    requests = [n for n in names if n not in limits]

    def show(keys: list[str]) -> str:
        return ", ".join(f"{k}: {used.get(k, '0')}/{hard[k]}" for k in keys)

    return [rq["metadata"]["name"], _age(rq, at), show(requests), show(limits)]


def _slice(es: Obj, at: datetime) -> list[Any]:
    ports = ",".join(str(p.get("port")) for p in es.get("ports") or []) or NONE
    addrs = [a for e in es.get("endpoints") or [] for a in e.get("addresses") or []]
    return [
        es["metadata"]["name"],
        es.get("addressType", ""),
        ports,
        ",".join(addrs) or NONE,
        _age(es, at),
    ]


_PRINTERS: dict[str, tuple[list[Column], Printer]] = {
    PODS.key: (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod,
    ),
    DEPLOYMENTS.key: (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        _deployment,
    ),
    REPLICASETS.key: (
        [
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
        ],
        _replicaset,
    ),
    RESOURCEQUOTAS.key: (
        [
            ("Name", "string", 0),
            ("Age", "string", 0),
            ("Request", "string", 0),
            ("Limit", "string", 0),
        ],
        _resource_quota,
    ),
    SERVICES.key: (
        [
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        _service,
    ),
    NODES.key: (
        [
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        _node,
    ),
    LEASES.key: (
        [("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
        lambda o, at: [
            o["metadata"]["name"],
            (o.get("spec") or {}).get("holderIdentity", ""),
            _age(o, at),
        ],
    ),
    NAMESPACES.key: (
        [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        lambda o, at: [
            o["metadata"]["name"],
            (o.get("status") or {}).get("phase", ""),
            _age(o, at),
        ],
    ),
    CONFIGMAPS.key: (
        [("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        lambda o, at: [
            o["metadata"]["name"],
            len(o.get("data") or {}) + len(o.get("binaryData") or {}),
            _age(o, at),
        ],
    ),
    SECRETS.key: (
        [
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        lambda o, at: [
            o["metadata"]["name"],
            o.get("type", ""),
            len(o.get("data") or {}),
            _age(o, at),
        ],
    ),
    ENDPOINTS.key: (
        [("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)],
        _endpoints,
    ),
    EVENTS.key: (
        [
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        _event,
    ),
    ENDPOINTSLICES.key: (
        [
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        _slice,
    ),
}


def _job(job: Obj, at: datetime) -> list[Any]:
    """pkg/printers/internalversion/printers.go printJob (1.32): the status is the last true
    condition among Complete/Failed/FailureTarget/SuccessCriteriaMet, else Running."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    true = [c.get("type") for c in status.get("conditions") or [] if c.get("status") == "True"]
    state = next(
        (t for t in ("Failed", "Complete", "FailureTarget", "SuccessCriteriaMet") if t in true),
        "Suspended" if spec.get("suspend") else "Running",
    )
    started, finished = (
        parse_rfc3339(status.get("startTime")),
        parse_rfc3339(status.get("completionTime")),
    )
    duration = human_duration(((finished or at) - started).total_seconds()) if started else ""
    template = (spec.get("template") or {}).get("spec") or {}
    containers = template.get("containers") or []
    return [
        job["metadata"]["name"],
        state,
        f"{status.get('succeeded', 0)}/{spec.get('completions', 1)}",
        duration,
        _age(job, at),
        ",".join(str(c.get("name")) for c in containers),
        ",".join(str(c.get("image")) for c in containers),
        format_selector(selector_from_spec(spec.get("selector") or {})),
    ]


_PRINTERS[JOBS.key] = (
    [
        ("Name", "string", 0),
        ("Status", "string", 0),
        ("Completions", "string", 0),
        ("Duration", "string", 0),
        ("Age", "string", 0),
        ("Containers", "string", 1),
        ("Images", "string", 1),
        ("Selector", "string", 1),
    ],
    _job,
)


def _custom_printer(crd: customresources.CustomResource) -> tuple[list[Column], Printer]:
    """A custom resource's Table: NAME, then its CRD's additionalPrinterColumns."""
    columns: list[Column] = [("Name", "string", 0)]
    columns += [
        (str(c.get("name")), str(c.get("type")), int(c.get("priority") or 0))
        for c in crd.printer_columns
    ]

    def printer(obj: Obj, at: datetime) -> list[Any]:
        cells: list[Any] = [obj["metadata"]["name"]]
        for column in crd.printer_columns:
            cells.append(customresources.printer_cell(column, obj, lambda t: _since(t, at)))
        return cells

    return columns, printer


for _crd in customresources.CUSTOM_RESOURCES:
    _PRINTERS[_crd.rt.key] = _custom_printer(_crd)

_DEFAULT: tuple[list[Column], Printer] = (
    [("Name", "string", 0), ("Age", "string", 0)],
    lambda o, at: [o["metadata"]["name"], _age(o, at)],
)


def wants_table(accept: str | None) -> bool:
    """Whether an Accept header asks for server-side printing (``as=Table``)."""
    for media in (accept or "").split(","):
        params = {
            p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip() for p in media.split(";")[1:]
        }
        if params.get("as") == "Table" and params.get("g", "meta.k8s.io") == "meta.k8s.io":
            return True
    return False


def table(
    rt: ResourceType,
    objects: list[Obj],
    *,
    resource_version: str | None = None,
    include_object: str = "Metadata",
    with_columns: bool = True,
) -> Obj:
    columns, printer = _PRINTERS.get(rt.key, _DEFAULT)
    at = now_utc()
    rows = []
    for obj in objects:
        row: Obj = {"cells": printer(obj, at)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata") or {},
            }
        rows.append(row)
    result: Obj = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version} if resource_version else {},
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": "",
                "priority": priority,
            }
            for name, kind, priority in columns
        ]
        if with_columns
        else None,
        "rows": rows,
    }
    return result
