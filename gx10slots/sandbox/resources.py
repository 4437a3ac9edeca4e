"""The kinds the sandbox serves and what the apiserver does to them before they are stored.

For each resource: its discovery entry, its defaults (the subset of the apiserver's defaulting that
clients observe), the status-subresource rules, and validation — the kind's OpenAPI schema through
``kubernetes_validate`` plus the semantic checks of the real apiserver that matter to us (selector
vs template labels, Service ports, immutable fields, events.k8s.io required fields). Failures are
422 Invalid with ``details.causes`` as the apiserver renders them.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import math
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import referencing

from gx10slots.kube import quantity
from gx10slots.sandbox import customresources
from gx10slots.sandbox.selectors import (
    COMMON_FIELDS,
    SelectorError,
    format_selector,
    selector_from_spec,
)
from gx10slots.sandbox.store import Cause, Obj, ResourceType, StatusError, field_path, invalid

KUBERNETES_VERSION = "1.32"

_CRUD = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

NAMESPACES = ResourceType(
    "",
    "v1",
    "namespaces",
    "Namespace",
    namespaced=False,
    short_names=("ns",),
    subresources=("status",),
    status_subresource=True,
)
NODES = ResourceType(
    "",
    "v1",
    "nodes",
    "Node",
    namespaced=False,
    short_names=("no",),
    subresources=("status",),
    status_subresource=True,
)
PODS = ResourceType(
    "",
    "v1",
    "pods",
    "Pod",
    short_names=("po",),
    subresources=("status", "log"),
    categories=("all",),
    status_subresource=True,
    field_selectors=("spec.nodeName", "spec.restartPolicy", "status.phase", "status.podIP"),
)
SERVICES = ResourceType(
    "",
    "v1",
    "services",
    "Service",
    short_names=("svc",),
    subresources=("status",),
    categories=("all",),
    status_subresource=True,
)
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",))
SECRETS = ResourceType("", "v1", "secrets", "Secret", field_selectors=("type",))
ENDPOINTS = ResourceType("", "v1", "endpoints", "Endpoints", short_names=("ep",))
EVENTS = ResourceType(
    "",
    "v1",
    "events",
    "Event",
    short_names=("ev",),
    field_selectors=(
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
)
EVENTS_V1 = ResourceType(
    "events.k8s.io",
    "v1",
    "events",
    "Event",
    short_names=("ev",),
    storage_of="events",
    field_selectors=(
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "reason",
        "reportingController",
        "type",
    ),
)
DEPLOYMENTS = ResourceType(
    "apps",
    "v1",
    "deployments",
    "Deployment",
    short_names=("deploy",),
    subresources=("status", "scale"),
    categories=("all",),
    tracks_generation=True,
    status_subresource=True,
)
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")
# Deployments own ReplicaSets that own Pods (pkg/controller/deployment, pkg/controller/replicaset);
# a ResourceQuota is enforced when a pod is created (gx10slots.sandbox.quota).
REPLICASETS = ResourceType(
    "apps",
    "v1",
    "replicasets",
    "ReplicaSet",
    short_names=("rs",),
    subresources=("status", "scale"),
    categories=("all",),
    tracks_generation=True,
    status_subresource=True,
)
RESOURCEQUOTAS = ResourceType(
    "",
    "v1",
    "resourcequotas",
    "ResourceQuota",
    short_names=("quota",),
    subresources=("status",),
    status_subresource=True,
)
# Service accounts (with the TokenRequest subresource `kubectl create token` calls) and RBAC, so
# that docs/manifests/rbac.yaml can be applied and enforced (gx10slots.sandbox.rbac).
SERVICEACCOUNTS = ResourceType(
    "", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",), subresources=("token",)
)
_RBAC = "rbac.authorization.k8s.io"
ROLES = ResourceType(_RBAC, "v1", "roles", "Role")
ROLEBINDINGS = ResourceType(_RBAC, "v1", "rolebindings", "RoleBinding")
CLUSTERROLES = ResourceType(_RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False)
CLUSTERROLEBINDINGS = ResourceType(
    _RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
)
ENDPOINTSLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
# batch/v1 Jobs, run to completion by gx10slots.sandbox.jobs (docs/manifests/job-deploy.yaml).
JOBS = ResourceType(
    "batch",
    "v1",
    "jobs",
    "Job",
    subresources=("status",),
    categories=("all",),
    tracks_generation=True,
    status_subresource=True,
)

# Gateway API HTTPRoute, from its published CRD (gx10slots.sandbox.customresources): the
# `httproute` availability flag.
HTTPROUTES = customresources.HTTPROUTE.rt

RESOURCES: tuple[ResourceType, ...] = (
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    CONFIGMAPS,
    SECRETS,
    ENDPOINTS,
    EVENTS,
    EVENTS_V1,
    DEPLOYMENTS,
    REPLICASETS,
    RESOURCEQUOTAS,
    LEASES,
    ENDPOINTSLICES,
    SERVICEACCOUNTS,
    ROLES,
    ROLEBINDINGS,
    CLUSTERROLES,
    CLUSTERROLEBINDINGS,
    JOBS,
    HTTPROUTES,
)
_RBAC_KINDS = (ROLES, ROLEBINDINGS, CLUSTERROLES, CLUSTERROLEBINDINGS)
# Kinds whose DELETE answers with the object rather than a Status (ReturnDeletedObject).
RETURNS_DELETED_OBJECT = frozenset({PODS.key, SERVICES.key, NAMESPACES.key})


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return next(
        (r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, plural)), None
    )


def for_kind(api_version: str, kind: str) -> ResourceType | None:
    return next((r for r in RESOURCES if (r.api_version, r.kind) == (api_version, kind)), None)


def supported_field_selectors(rt: ResourceType) -> tuple[str, ...]:
    return COMMON_FIELDS + rt.field_selectors


def group_versions() -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if r.group and (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


# -- discovery --------------------------------------------------------------------------------


def api_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list() -> Obj:
    groups = []
    for group, version in group_versions():
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> Obj | None:
    for g in api_group_list()["groups"]:
        if g["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


def api_resource_list(group: str, version: str) -> Obj | None:
    rts = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not rts:
        return None
    resources: list[Obj] = []
    for r in rts:
        entry: Obj = {
            "name": r.plural,
            "singularName": r.kind.lower(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(_CRUD),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        for sub in r.subresources:
            sub_entry: Obj = {
                "name": f"{r.plural}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                sub_entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "log":
                sub_entry["verbs"] = ["get"]
            elif sub == "token":
                sub_entry.update(group="authentication.k8s.io", version="v1", kind="TokenRequest")
                sub_entry["verbs"] = ["create"]
            resources.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": rts[0].api_version,
        "resources": resources,
    }


def openapi_v3_root() -> Obj:
    """The ``/openapi/v3`` index: one document per group-version."""
    paths = {}
    for group, version in [("", "v1"), *group_versions()]:
        key = f"apis/{group}/{version}" if group else f"api/{version}"
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash=sandbox-{KUBERNETES_VERSION}"}
    return {"paths": paths}


def openapi_v3_document(group: str, version: str) -> Obj | None:
    """A group-version's OpenAPI v3 document, reduced to what kubectl reads from it: the PATCH
    operations and their query parameters (kubectl checks for ``fieldValidation`` there before
    it relies on server-side validation). Schemas are not included."""
    rts = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not rts:
        return None
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    params = [
        {"name": name, "in": "query", "schema": {"type": kind, "uniqueItems": True}}
        for name, kind in (
            ("dryRun", "string"),
            ("fieldManager", "string"),
            ("fieldValidation", "string"),
            ("force", "boolean"),
        )
    ]
    paths: Obj = {}
    for r in rts:
        scope = f"{prefix}/namespaces/{{namespace}}" if r.namespaced else prefix
        paths[f"{scope}/{r.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{r.kind}",
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {
                    "group": r.group,
                    "version": r.version,
                    "kind": r.kind,
                },
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }


# -- quantities -------------------------------------------------------------------------------
# A real apiserver decodes every resource.Quantity and encodes it back in canonical form, and
# core/v1 defaulting rounds ResourceList values up to milli (k8s.io/apimachinery/pkg/api/
# resource/quantity.go; pkg/apis/core/v1/defaults.go SetDefaults_ResourceList): `1.5Gi` is stored
# as `1536Mi`. gx10slots.kube.quantity is the port; here is where the quantities live in each kind.

_TEMPLATE_KINDS = {
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "ReplicationController",
}


def parse_quantity(value: object) -> float:
    """A resource.Quantity in base units (bytes for memory): ``128Gi``, ``60G``, ``1e9``."""
    if value is None:
        raise ValueError(quantity.FORMAT_WRONG)
    q = quantity.from_json(value)
    if q.exponent > 64:
        return math.inf if q.unscaled > 0 else -math.inf
    if q.exponent < -64:
        return 0.0
    return float(q.value)


def _resource_lists(kind: str, obj: Obj) -> list[dict[str, Any]]:
    """The ResourceList maps of an object of ``kind`` (in place)."""

    def at(node: Any, *path: str) -> Any:
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    lists: list[Any] = []
    if kind == "Pod":
        lists += quantity.pod_spec_quantity_maps(obj.get("spec"))
        status = at(obj, "status")
        for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
            items = at(status, key)
            for cs in items if isinstance(items, list) else []:
                lists += [
                    at(cs, "allocatedResources"),
                    at(cs, "resources", "limits"),
                    at(cs, "resources", "requests"),
                ]
    elif kind in _TEMPLATE_KINDS:
        lists += quantity.pod_spec_quantity_maps(at(obj, "spec", "template", "spec"))
    elif kind == "CronJob":
        lists += quantity.pod_spec_quantity_maps(
            at(obj, "spec", "jobTemplate", "spec", "template", "spec")
        )
    elif kind == "Node":
        lists += [at(obj, "status", "capacity"), at(obj, "status", "allocatable")]
    elif kind == "ResourceQuota":
        lists += [at(obj, "spec", "hard"), at(obj, "status", "hard"), at(obj, "status", "used")]
    elif kind == "LimitRange":
        items = at(obj, "spec", "limits")
        for item in items if isinstance(items, list) else []:
            for key in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
                lists.append(at(item, key))
    return [block for block in lists if isinstance(block, dict)]


def canonical_quantities(rt: ResourceType, obj: Obj) -> None:
    """Store ``obj``'s quantities as the apiserver would; ``QuantityError`` when one is none
    (the apiserver fails to decode the body)."""
    for block in _resource_lists(rt.kind, obj):
        quantity.canonical_resource_list(block, strict=True)


def quantity_decode_error(
    rt: ResourceType, obj: Obj, err: quantity.QuantityError, *, patch: bool
) -> StatusError:
    """How the apiserver answers a body whose quantity does not decode: a POST or PUT body is
    400 BadRequest (the codec's error); a patched object is 422 Invalid on the field `patch`
    (apiserver/pkg/endpoints/handlers/patch.go, applyPatchToCurrentObject)."""
    if not patch:
        return StatusError(
            400,
            "BadRequest",
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {err}',
        )
    patched = json.dumps(obj, separators=(",", ":"))
    message = f"Invalid value: {json.dumps(patched)}: {err}"
    return StatusError(
        422,
        "Invalid",
        f' "" is invalid: patch: {message}',
        {"causes": [{"reason": "FieldValueInvalid", "message": message, "field": "patch"}]},
    )


# -- defaulting -------------------------------------------------------------------------------


def _default_container(c: Obj, *, pod: bool) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    image = str(c.get("image") or "")
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
    c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    resources = c.setdefault("resources", {})
    if pod and resources.get("limits"):
        requests = resources.setdefault("requests", {})
        for name, qty in resources["limits"].items():
            requests.setdefault(name, qty)
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = c.get(probe_name)
        if isinstance(probe, dict):
            for key, value in (
                ("timeoutSeconds", 1),
                ("periodSeconds", 10),
                ("successThreshold", 1),
                ("failureThreshold", 3),
            ):
                probe.setdefault(key, value)
            if isinstance(probe.get("httpGet"), dict):
                probe["httpGet"].setdefault("path", "/")
                probe["httpGet"].setdefault("scheme", "HTTP")
    for env in c.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("fieldRef")
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")


def default_pod_spec(spec: Obj, *, pod: bool) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    if pod:
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if isinstance(c, dict):
            _default_container(c, pod=pod)


def _qos_class(spec: Obj) -> str:
    resources = [
        c.get("resources") or {} for c in spec.get("containers") or [] if isinstance(c, dict)
    ]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "Burstable"
    return "Guaranteed"


def _default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    if isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"], pod=False)


def _allocate_cluster_ip() -> str:
    # 10.96.0.0/12 is kubeadm's default service CIDR; collisions at sandbox scale are negligible.
    base = int(ipaddress.ip_address("10.96.0.0"))
    return str(ipaddress.ip_address(base + 1 + secrets.randbelow(2**20 - 2)))


def _default_service(obj: Obj, old: Obj | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])
    if spec["type"] != "ExternalName":
        old_spec = (old or {}).get("spec") or {}
        if not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec.get("clusterIP") or _allocate_cluster_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec["clusterIP"] != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")


def _default_secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _default_job(obj: Obj, old: Obj | None) -> None:
    """pkg/apis/batch/v1/defaults.go SetDefaults_Job, and the strategy's generateSelector
    (pkg/registry/batch/job/strategy.go): the template labelled with the job's name and a
    controller uid, the selector matching that uid. A real server uses metadata.uid; the sandbox
    assigns uids in its store after defaulting, so the label holds its own UUID (the job
    controller finds its pods by ownerReference either way)."""
    spec = obj.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    if not isinstance(template, dict):
        return
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    old_labels = (((old or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}
    old_uid = (old_labels.get("labels") or {}).get(JOB_UID_LABEL)
    if not spec.get("manualSelector") and isinstance(labels, dict):
        uid = labels.get(JOB_UID_LABEL) or old_uid or str(uuid.uuid4())
        name = str((obj.get("metadata") or {}).get("name") or "")
        labels.update(
            {JOB_UID_LABEL: uid, JOB_NAME_LABEL: name, "controller-uid": uid, "job-name": name}
        )
        spec.setdefault("selector", {"matchLabels": {JOB_UID_LABEL: uid}})
    if isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"], pod=False)


def _job_causes(obj: Obj, old: Obj | None) -> Iterator[Cause]:
    """pkg/apis/batch/validation/validation.go: a Job's pods run to completion, and its pod
    template is immutable once created (ValidateJobSpecUpdate: "field is immutable")."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        yield Cause(
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported",
            f'Unsupported value: {json.dumps(policy)}: supported values: "OnFailure", "Never"',
        )
    if isinstance(template.get("spec"), dict):
        yield from _pod_spec_causes(template["spec"], "spec.template.spec")
    if old is not None and ((old.get("spec") or {}).get("template") or {}) != template:
        yield Cause("spec.template", "FieldValueInvalid", "Invalid value: field is immutable")


def apply_defaults(rt: ResourceType, obj: Obj, old: Obj | None = None) -> None:
    """The apiserver's defaulting for ``obj`` (in place); runs on every write, as decoding does."""
    meta = obj.setdefault("metadata", {})
    crd = customresources.definition(rt)
    if crd is not None:
        customresources.apply_defaults(crd.schema, obj)
    elif rt is DEPLOYMENTS:
        _default_deployment(obj)
    elif rt is PODS:
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec, pod=True)
    elif rt is SERVICES:
        _default_service(obj, old)
    elif rt is SECRETS:
        _default_secret(obj)
    elif rt is JOBS:
        _default_job(obj, old)
    elif rt is NAMESPACES:
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])


def initial_status(rt: ResourceType, obj: Obj) -> None:
    """Status on create: the server's, not the client's (nodes may bring their own)."""
    if rt is DEPLOYMENTS:
        obj["status"] = {}
    elif rt is REPLICASETS:
        obj["status"] = {"replicas": 0}
    elif rt is PODS:
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}
    elif rt is NAMESPACES:
        obj["status"] = {"phase": "Active"}
    elif rt is SERVICES:
        obj["status"] = {"loadBalancer": {}}
    elif rt is JOBS:
        obj["status"] = {}
    elif rt.status_subresource and customresources.definition(rt) is not None:
        # A custom resource's status is the status subresource's to write (PrepareForCreate in
        # apiextensions-apiserver/pkg/registry/customresource/strategy.go drops it).
        obj.pop("status", None)


# -- events.k8s.io <-> core/v1 ----------------------------------------------------------------

# events.k8s.io/v1 field -> core/v1 field; both APIs share one storage, as in Kubernetes.
_EVENT_FIELDS = {
    "note": "message",
    "regarding": "involvedObject",
    "reportingController": "reportingComponent",
    "deprecatedSource": "source",
    "deprecatedFirstTimestamp": "firstTimestamp",
    "deprecatedLastTimestamp": "lastTimestamp",
    "deprecatedCount": "count",
}


def to_storage(rt: ResourceType, obj: Obj) -> Obj:
    """The stored form of an object in ``rt``'s API form."""
    return event_to_core(obj) if rt is EVENTS_V1 else obj


def from_storage(rt: ResourceType, obj: Obj) -> Obj:
    """``rt``'s API form of a stored object (with its kind and apiVersion)."""
    if rt is EVENTS_V1:
        return event_from_core(obj)
    return {**obj, "apiVersion": rt.api_version, "kind": rt.kind}


def event_to_core(obj: Obj) -> Obj:
    core = {_EVENT_FIELDS.get(k, k): v for k, v in obj.items()}
    core.update(apiVersion="v1", kind="Event")
    return core


def event_from_core(obj: Obj) -> Obj:
    back = {v: k for k, v in _EVENT_FIELDS.items()}
    event = {back.get(k, k): v for k, v in obj.items()}
    event.update(apiVersion="events.k8s.io/v1", kind="Event")
    return event


# -- scale subresource ------------------------------------------------------------------------


def scale_of(deployment: Obj) -> Obj:
    meta = deployment["metadata"]
    try:
        selector = format_selector(
            selector_from_spec((deployment.get("spec") or {}).get("selector"))
        )
    except SelectorError:
        selector = ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (deployment.get("spec") or {}).get("replicas", 1)},
        "status": {
            "replicas": (deployment.get("status") or {}).get("replicas", 0),
            "selector": selector,
        },
    }


def apply_scale(deployment: Obj, scale: Obj) -> Obj:
    """The deployment a Scale write asks for (the Scale's RV is the deployment's)."""
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise invalid(
            ResourceType("autoscaling", "v1", "scale", "Scale"),
            deployment["metadata"]["name"],
            [
                Cause(
                    "spec.replicas",
                    "FieldValueInvalid",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
            ],
        )
    updated = copy.deepcopy(deployment)
    updated["spec"]["replicas"] = replicas
    updated["metadata"]["resourceVersion"] = (scale.get("metadata") or {}).get("resourceVersion")
    return updated


# -- admission --------------------------------------------------------------------------------


def admit_create(
    rt: ResourceType,
    obj: Obj,
    *,
    field_validation: str = "Warn",
    warnings: list[str] | None = None,
) -> Obj:
    """The object as the apiserver would store it on create: unknown fields dropped (or 400
    with ``fieldValidation=Strict``), defaulted, validated."""
    new = copy.deepcopy(obj)
    new["apiVersion"], new["kind"] = rt.api_version, rt.kind
    new.setdefault("metadata", {})
    try:
        canonical_quantities(rt, new)
    except quantity.QuantityError as err:
        raise quantity_decode_error(rt, obj, err, patch=False) from err
    apply_defaults(rt, new)
    initial_status(rt, new)
    _check(rt, new, None, field_validation, warnings)
    return new


def admit_update(
    rt: ResourceType,
    old: Obj,
    new: Obj,
    subresource: str | None = None,
    *,
    field_validation: str = "Warn",
    warnings: list[str] | None = None,
    patch: bool = False,
) -> Obj:
    """The object an update (or patch result) stores: status-subresource rules, defaults, checks."""
    result = copy.deepcopy(new)
    try:
        canonical_quantities(rt, result)
    except quantity.QuantityError as err:
        raise quantity_decode_error(rt, new, err, patch=patch) from err
    result["apiVersion"], result["kind"] = rt.api_version, rt.kind
    meta = result.setdefault("metadata", {})
    if subresource == "status":
        status = result.get("status")
        result = copy.deepcopy(old)
        result["metadata"]["resourceVersion"] = meta.get("resourceVersion")
        if status is None:
            result.pop("status", None)
        else:
            result["status"] = status
    elif rt.status_subresource:
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
        else:
            result.pop("status", None)
    apply_defaults(rt, result, old)
    _check(rt, result, old, field_validation, warnings)
    return result


def _check(
    rt: ResourceType,
    obj: Obj,
    old: Obj | None,
    field_validation: str,
    warnings: list[str] | None,
) -> None:
    """Drop unknown fields as decoding does (400 when Strict, a warning when Warn), then
    validate: schema causes, then the kind's semantic checks."""
    unknown, causes = _schema_findings(rt, obj)
    if unknown:
        paths = [f'unknown field "{field_path([*parts, name])}"' for parts, name, _ in unknown]
        if field_validation == "Strict":
            raise StatusError(
                400,
                "BadRequest",
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                f"strict decoding error: {', '.join(paths)}",
            )
        for _, name, container in unknown:
            container.pop(name, None)
        if field_validation != "Ignore" and warnings is not None:
            warnings.extend(paths)
    causes += list(_semantic_causes(rt, obj, old))
    if causes:
        raise invalid(rt, str(obj["metadata"].get("name") or ""), causes)


# -- schema validation ------------------------------------------------------------------------

_validators: dict[tuple[str, str], Any] = {}
_validators_lock = threading.Lock()


def _schema_dir() -> str:
    versions = [v for v in kv.all_versions() if kv.major_minor(v) == KUBERNETES_VERSION]
    return f"v{(versions or [kv.latest_version()])[-1]}-local"


def _validator(api_version: str, kind: str) -> Any:
    key = (api_version, kind)
    with _validators_lock:
        if key not in _validators:
            directory = _schema_dir() + "-strict"  # additionalProperties: false everywhere
            group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            schema = kv.schema_contents(
                f"kubernetes-json-schema/{directory}/{kind.lower()}-{group}.json",
                KUBERNETES_VERSION,
            )
            defs = kv.schema_contents(
                f"kubernetes-json-schema/{directory}/_definitions.json", KUBERNETES_VERSION
            )
            registry: referencing.Registry[Any] = referencing.Registry().with_resources(
                [
                    (schema["$id"], referencing.Resource.from_contents(schema)),
                    (defs["$id"], referencing.Resource.from_contents(defs)),
                ]
            )
            _validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
        return _validators[key]


def _schema_findings(
    rt: ResourceType, obj: Obj
) -> tuple[list[tuple[list[Any], str, Obj]], list[Cause]]:
    """Unknown fields (path, name, the map holding it) and the other schema violations."""
    crd = customresources.definition(rt)
    if crd is not None:
        return customresources.findings(crd, obj)
    try:
        validator = _validator(str(obj.get("apiVersion")), str(obj.get("kind")))
    except (FileNotFoundError, kv.SchemaNotFoundError, kv.VersionNotSupportedError):
        return [], []
    unknown: list[tuple[list[Any], str, Obj]] = []
    causes: list[Cause] = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        parts = list(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            known = set(error.schema.get("properties") or {})
            unknown += [
                (parts, name, error.instance) for name in error.instance if name not in known
            ]
        elif parts[:1] != ["status"]:
            # The schema marks every non-omitempty Go field required; the apiserver does not
            # enforce that for status, which kubelets and controllers write partially.
            causes.append(_cause_of(error))
    return unknown, causes


def _cause_of(error: jsonschema.ValidationError) -> Cause:
    path = field_path(error.absolute_path)
    if error.validator == "required":
        missing = re.match(r"'([^']+)'", error.message)
        name = missing.group(1) if missing else "?"
        return Cause(f"{path}.{name}" if path else name, "FieldValueRequired", "Required value")
    value = json.dumps(error.instance)
    if error.validator == "enum":
        allowed = ", ".join(json.dumps(v) for v in error.validator_value or [])
        return Cause(
            path,
            "FieldValueNotSupported",
            f"Unsupported value: {value}: supported values: {allowed}",
        )
    if error.validator in ("type", "oneOf"):
        return Cause(path, "FieldValueTypeInvalid", f"Invalid value: {value}: {error.message}")
    return Cause(path, "FieldValueInvalid", f"Invalid value: {value}: {error.message}")


# -- semantic validation ----------------------------------------------------------------------

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_MSG = (
    "a DNS-1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def _q(value: Any) -> str:
    return json.dumps(value)


def _required(path: str) -> Cause:
    return Cause(path, "FieldValueRequired", "Required value")


def _bad(path: str, value: Any, why: str) -> Cause:
    return Cause(path, "FieldValueInvalid", f"Invalid value: {_q(value)}: {why}")


def _go_map(labels: dict[str, Any]) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"


def _valid_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _meta_causes(rt: ResourceType, obj: Obj) -> Iterator[Cause]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if name:
        if rt in (SERVICES,):
            if len(name) > 63 or not _DNS1035_LABEL.match(name):
                yield _bad("metadata.name", name, _DNS1035_MSG)
        elif rt in (NAMESPACES,):
            if len(name) > 63 or not re.match(rf"^{_DNS1123_LABEL}$", name):
                yield _bad("metadata.name", name, _LABEL_MSG)
        elif rt in _RBAC_KINDS:
            # ValidateRBACName: a path segment ("system:controller:x" is fine).
            if name in (".", "..") or "/" in name or "%" in name:
                yield _bad("metadata.name", name, "may not contain '/' or '%'")
        elif rt is not NODES and (len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name)):
            yield _bad("metadata.name", name, _SUBDOMAIN_MSG)
    for key, value in (meta.get("labels") or {}).items():
        if not _valid_qualified_name(str(key)):
            yield _bad(
                "metadata.labels",
                key,
                "name part must consist of alphanumeric "
                "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character",
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            yield _bad(
                "metadata.labels",
                value,
                "a valid label must be an empty string or "
                "consist of alphanumeric characters, '-', '_' or '.', and must start and "
                "end with an alphanumeric character",
            )


def _pod_spec_causes(spec: Any, path: str) -> Iterator[Cause]:
    if not isinstance(spec, dict):
        return
    containers = spec.get("containers")
    if not containers:
        yield _required(f"{path}.containers")
        return
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            if not isinstance(c, dict):
                continue
            cpath = f"{path}.{kind}[{i}]"
            name = c.get("name")
            if name in seen:
                yield Cause(f"{cpath}.name", "FieldValueDuplicate", f"Duplicate value: {_q(name)}")
            elif isinstance(name, str) and name:
                seen.add(name)
                if len(name) > 63 or not re.match(rf"^{_DNS1123_LABEL}$", name):
                    yield _bad(f"{cpath}.name", name, _LABEL_MSG)
            if not c.get("image"):
                yield _required(f"{cpath}.image")
            yield from _resources_causes(c.get("resources"), f"{cpath}.resources")


def _resources_causes(resources: Any, path: str) -> Iterator[Cause]:
    if not isinstance(resources, dict):
        return
    parsed: dict[str, dict[str, float]] = {}
    for section in ("limits", "requests"):
        for name, qty in (resources.get(section) or {}).items():
            try:
                parsed.setdefault(section, {})[name] = parse_quantity(qty)
            except ValueError as e:
                yield _bad(f"{path}.{section}[{name}]", qty, str(e))
    for name, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(name)
        if limit is not None and request > limit:
            yield _bad(
                f"{path}.requests",
                resources["requests"][name],
                f"must be less than or equal to {name} limit of {resources['limits'][name]}",
            )


def _deployment_causes(obj: Obj, old: Obj | None) -> Iterator[Cause]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        return  # the schema reports the missing selector
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        yield _bad("spec.selector", selector, "empty selector is invalid for deployment")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    try:
        if not selector_from_spec(selector).matches(labels):
            yield Cause(
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`",
            )
    except SelectorError as e:
        yield _bad("spec.selector", selector, str(e))
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        yield _bad("spec.replicas", replicas, "must be greater than or equal to 0")
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
        yield Cause(
            "spec.strategy.rollingUpdate",
            "FieldValueForbidden",
            "Forbidden: may not be specified when strategy `type` is 'Recreate'",
        )
    elif strategy.get("type") not in ("Recreate", "RollingUpdate"):
        yield Cause(
            "spec.strategy.type",
            "FieldValueNotSupported",
            f"Unsupported value: {_q(strategy.get('type'))}: supported values: "
            '"Recreate", "RollingUpdate"',
        )
    pod_spec = template.get("spec")
    yield from _pod_spec_causes(pod_spec, "spec.template.spec")
    if isinstance(pod_spec, dict) and pod_spec.get("restartPolicy") not in (None, "Always"):
        yield Cause(
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported",
            f'Unsupported value: {_q(pod_spec.get("restartPolicy"))}: supported values: "Always"',
        )
    deadline, min_ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds") or 0
    if isinstance(deadline, int) and deadline <= min_ready:
        yield _bad("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds")
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        yield _bad("spec.selector", selector, "field is immutable")


def _blank_images(spec: Obj) -> Obj:
    spec = copy.deepcopy(spec)
    for kind in ("containers", "initContainers"):
        for c in spec.get(kind) or []:
            if isinstance(c, dict):
                c.pop("image", None)
    for mutable in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        spec.pop(mutable, None)
    return spec


def _pod_causes(obj: Obj, old: Obj | None) -> Iterator[Cause]:
    yield from _pod_spec_causes(obj.get("spec"), "spec")
    if old is not None and _blank_images(obj.get("spec") or {}) != _blank_images(
        old.get("spec") or {}
    ):
        yield Cause(
            "spec",
            "FieldValueForbidden",
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
            "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
            "(allow it to be set to 1 if it was previously negative)",
        )


def _service_causes(obj: Obj, old: Obj | None) -> Iterator[Cause]:
    spec = obj.get("spec") or {}
    ports = spec.get("ports") or []
    if not ports and spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName":
        yield _required("spec.ports")
    names: set[str] = set()
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        if len(ports) > 1 and not port.get("name"):
            yield _required(f"spec.ports[{i}].name")
        elif port.get("name") in names:
            yield Cause(
                f"spec.ports[{i}].name",
                "FieldValueDuplicate",
                f"Duplicate value: {_q(port.get('name'))}",
            )
        names.add(str(port.get("name")))
        number = port.get("port")
        if isinstance(number, int) and not 1 <= number <= 65535:
            yield _bad(f"spec.ports[{i}].port", number, "must be between 1 and 65535, inclusive")
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and spec.get("clusterIP") != old_ip and spec.get("type") != "ExternalName":
            yield _bad("spec.clusterIPs[0]", [spec.get("clusterIP")], "may not change once set")


def _lease_causes(obj: Obj) -> Iterator[Cause]:
    spec = obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        yield _bad("spec.leaseDurationSeconds", duration, "must be greater than 0")
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        yield _bad("spec.leaseTransitions", transitions, "must be greater than or equal to 0")


def event_causes(core: Obj, *, strict: bool) -> Iterator[Cause]:
    """The apiserver's ValidateEventCreate on the core form (``strict`` for events.k8s.io/v1).

    Field paths are the core field names (``message``, ``involvedObject``), as the real server
    reports them even for events.k8s.io requests."""
    namespace = (core.get("metadata") or {}).get("namespace") or ""
    involved_ns = (core.get("involvedObject") or {}).get("namespace") or ""
    if not core.get("eventTime"):
        if strict:
            yield _required("eventTime")
        elif (involved_ns or namespace not in ("", "default")) and namespace != involved_ns:
            yield _bad("involvedObject.namespace", involved_ns, "does not match event.namespace")
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            yield _bad("involvedObject.namespace", involved_ns, "does not match event.namespace")
        controller = str(core.get("reportingComponent") or "")
        if not controller:
            yield _required("reportingController")
        elif not _valid_qualified_name(controller):
            yield _bad(
                "reportingController",
                controller,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and "
                "must start and end with an alphanumeric character",
            )
        for name, path, limit in (
            ("reportingInstance", "reportingInstance", 128),
            ("action", "action", 128),
            ("reason", "reason", 128),
            ("message", "message", 1024),
        ):
            value = str(core.get(name) or "")
            if not value and name != "message":
                yield _required(path)
            elif len(value.encode()) > limit:
                yield Cause(
                    path,
                    "FieldValueInvalid",
                    f'Invalid value: "": can have at most {limit} characters',
                )
    if strict:
        if core.get("type") not in ("Normal", "Warning"):
            yield Cause(
                "type",
                "FieldValueInvalid",
                f'Invalid value: "": has invalid value: {core.get("type") or ""}',
            )
        series = core.get("series")
        if isinstance(series, dict):
            if int(series.get("count") or 0) < 2:
                yield Cause(
                    "series.count", "FieldValueInvalid", 'Invalid value: "": should be at least 2'
                )
            if not series.get("lastObservedTime"):
                yield _required("series.lastObservedTime")
        for name in ("firstTimestamp", "lastTimestamp", "count"):
            if core.get(name):
                yield Cause(name, "FieldValueInvalid", 'Invalid value: "": needs to be unset')
        source = core.get("source") or {}
        if source.get("component") or source.get("host"):
            yield Cause("source", "FieldValueInvalid", 'Invalid value: "": needs to be unset')


_SEMANTIC: dict[str, Callable[[Obj, Obj | None], Iterator[Cause]]] = {
    DEPLOYMENTS.key: _deployment_causes,
    PODS.key: _pod_causes,
    SERVICES.key: _service_causes,
    LEASES.key: lambda obj, old: _lease_causes(obj),
    EVENTS.key: lambda obj, old: event_causes(obj, strict=False),
    EVENTS_V1.key: lambda obj, old: event_causes(event_to_core(obj), strict=old is None),
}


def _binding_causes(obj: Obj, old: Obj | None) -> Iterator[Cause]:
    ref = obj.get("roleRef") or {}
    if old is not None and (old.get("roleRef") or {}) != ref:
        yield _bad("roleRef", ref, "cannot change roleRef")
    for i, subject in enumerate(obj.get("subjects") or []):
        if isinstance(subject, dict) and subject.get("kind") not in (
            "ServiceAccount",
            "User",
            "Group",
        ):
            yield Cause(
                f"subjects[{i}].kind",
                "FieldValueNotSupported",
                f"Unsupported value: {_q(subject.get('kind'))}: supported values: "
                '"ServiceAccount", "User", "Group"',
            )


_SEMANTIC[ROLEBINDINGS.key] = _binding_causes
_SEMANTIC[JOBS.key] = _job_causes

# pkg/apis/core/validation/validation.go ValidateConfigMap: keys and values (data and binaryData)
# may total core.MaxSecretSize = 1 MiB; the error names the whole object (path "").
CONFIGMAP_MAX_BYTES = 1024 * 1024


def _configmap_causes(obj: Obj, old: Obj | None) -> Iterator[Cause]:
    total = 0
    for key, value in (obj.get("data") or {}).items():
        total += len(str(key).encode()) + len(str(value).encode())
    for key, value in (obj.get("binaryData") or {}).items():
        total += len(str(key).encode()) + len(str(value)) * 3 // 4  # base64 in JSON
    if total > CONFIGMAP_MAX_BYTES:
        yield Cause(
            "[]", "FieldValueTooLong", f"Too long: must have at most {CONFIGMAP_MAX_BYTES} bytes"
        )


_SEMANTIC[CONFIGMAPS.key] = _configmap_causes
_SEMANTIC[CLUSTERROLEBINDINGS.key] = _binding_causes


def _semantic_causes(rt: ResourceType, obj: Obj, old: Obj | None) -> Iterator[Cause]:
    yield from _meta_causes(rt, obj)
    check = _SEMANTIC.get(rt.key)
    if check is not None:
        yield from check(obj, old)
