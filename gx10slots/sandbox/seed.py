"""The objects a fresh sandbox starts with: a GX10 node, two slots, their Services, production.

Shaped like the manifests an operator would apply to the real node (see docs/manifests): slot
Deployments pinned to the node with the `Recreate` strategy (a one-GPU node cannot run two pods of
one slot during a rolling update), memory requests and limits, and a production Service whose
selector carries the flag key.
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "gx10"
NODE = "gx10"
NODE_MEMORY = "128Gi"
SLOT_MEMORY = "60Gi"
APP_LABEL = "app.kubernetes.io/name"
APP = "gx10-model"
SLOT_LABEL = "gx10slots.io/slot"
PRODUCTION_SERVICE = "gx10-model"
# With `sandbox up --flag configmap`: the flag is this ConfigMap's key, which the sandbox's own
# production router follows (docs/manifests/flag-configmap.yaml).
FLAG_CONFIGMAP = "gx10-flag"
FLAG_KEY = "active-slot"
# With `sandbox up --flag httproute`: the flag is the weights of this Gateway API HTTPRoute's
# backendRefs to the slot Services (100 active, 0 parked), which the sandbox's router follows as
# the Gateway it names would (gx10slots.sandbox.routing).
FLAG_ROUTE = PRODUCTION_SERVICE
GATEWAY = "gx10-gateway"
FLAG_KINDS = ("service-selector", "configmap", "httproute")
CONTAINER = "engine"
PORT = 8000
IMAGE = "vllm/vllm-openai:v0.11.0"
LLAMA_SERVER_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"
INITIAL_MODEL = "sandbox/ok"


def deployment_name(slot: str) -> str:
    return f"gx10-{slot}"


def namespace() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}


def node() -> dict[str, Any]:
    resources = {"cpu": "20", "memory": NODE_MEMORY, "nvidia.com/gpu": "1", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE,
            "labels": {
                "kubernetes.io/hostname": NODE,
                "kubernetes.io/arch": "arm64",
                "nvidia.com/gpu.product": "NVIDIA-GB10",
            },
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "nodeInfo": {"architecture": "arm64", "kubeletVersion": "v1.32.4-sandbox"},
        },
    }


def engine_container(slot: str, engine: str) -> dict[str, Any]:
    """The engine's image, command and args, with the served names wired as the manifests do."""
    if engine == "llama-server":
        # As docs/manifests/slot-llama-server.yaml: every name in one comma-separated --alias,
        # the slot's identity name last; --metrics for the progress check.
        return {
            "image": LLAMA_SERVER_IMAGE,
            "args": [
                "--model",
                "$(MODEL)",
                "--alias",
                f"$(SERVED_MODEL_NAME),gx10slots/{slot}",
                "--host",
                "0.0.0.0",
                "--port",
                str(PORT),
                "--ctx-size",
                "512",
                "--metrics",
            ],
        }
    # As docs/manifests/slot-blue-vllm.yaml: the served names follow --served-model-name, the
    # slot's identity name last.
    return {
        "image": IMAGE,
        "command": ["vllm"],
        "args": [
            "serve",
            "$(MODEL)",
            "--served-model-name",
            "$(SERVED_MODEL_NAME)",
            f"gx10slots/{slot}",
            "--gpu-memory-utilization",
            "0.45",
        ],
    }


def slot_deployment(
    slot: str, *, model: str, served_name: str, replicas: int, engine: str = "vllm"
) -> dict[str, Any]:
    labels = {APP_LABEL: APP, SLOT_LABEL: slot}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(slot),
            "namespace": NAMESPACE,
            "labels": labels,
            "annotations": {"gx10slots.io/model": model},
        },
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"},
            "progressDeadlineSeconds": 1200,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "containers": [
                        {
                            "name": CONTAINER,
                            **engine_container(slot, engine),
                            "env": [
                                {"name": "MODEL", "value": model},
                                {"name": "SERVED_MODEL_NAME", "value": served_name},
                            ],
                            "ports": [{"name": "http", "containerPort": PORT}],
                            "resources": {
                                "requests": {"memory": SLOT_MEMORY},
                                "limits": {"memory": SLOT_MEMORY},
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "periodSeconds": 5,
                            },
                        }
                    ],
                },
            },
        },
    }


def service(
    name: str, selector: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations or {}},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }


def flag_configmap() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": FLAG_CONFIGMAP,
            "namespace": NAMESPACE,
            "labels": {APP_LABEL: APP},
            "annotations": {"gx10slots.io/active": "blue"},
        },
        "data": {FLAG_KEY: "blue"},
    }


def http_route(active: str = "blue") -> dict[str, Any]:
    """docs/manifests/flag-httproute.yaml: one rule, the two slot Services weighted 100 and 0."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": FLAG_ROUTE,
            "namespace": NAMESPACE,
            "labels": {APP_LABEL: APP},
            "annotations": {"gx10slots.io/active": active},
        },
        "spec": {
            "parentRefs": [{"name": GATEWAY}],
            "rules": [
                {
                    "backendRefs": [
                        {
                            "name": deployment_name(slot),
                            "port": PORT,
                            "weight": 100 if slot == active else 0,
                        }
                        for slot in ("blue", "green")
                    ]
                }
            ],
        },
    }


def initial_objects(flag: str = "service-selector", engine: str = "vllm") -> list[dict[str, Any]]:
    """In creation order; `blue` active serving sandbox/ok, `green` parked; the slots' containers
    shaped for ``engine`` (the slots.yaml engine: vllm or llama-server)."""
    objects = [
        namespace(),
        node(),
        slot_deployment(
            "blue", model=INITIAL_MODEL, served_name="sandbox-ok", replicas=1, engine=engine
        ),
        slot_deployment(
            "green", model=INITIAL_MODEL, served_name="sandbox-ok", replicas=0, engine=engine
        ),
        service(deployment_name("blue"), {APP_LABEL: APP, SLOT_LABEL: "blue"}),
        service(deployment_name("green"), {APP_LABEL: APP, SLOT_LABEL: "green"}),
    ]
    if flag == "configmap":
        # Production enters through the router, which follows the ConfigMap: its Service has no
        # selector (its endpoints are the router's business, not the endpoint controller's).
        objects += [flag_configmap(), service(PRODUCTION_SERVICE, {})]
    elif flag == "httproute":
        # Production enters through the Gateway (the sandbox's router), which follows the
        # route's weights; its Service, like the ConfigMap router's, has no selector.
        objects += [http_route(), service(PRODUCTION_SERVICE, {})]
    else:
        objects.append(
            service(
                PRODUCTION_SERVICE,
                {APP_LABEL: APP, SLOT_LABEL: "blue"},
                annotations={"gx10slots.io/active": "blue"},
            )
        )
    return objects
