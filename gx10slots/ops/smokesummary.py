"""The last smoke report of each slot kept in the cluster: ConfigMap ``gx10slots-smoke-<slot>``.

Written by every smoke (`slots smoke`, and the smoke inside `slots deploy`) under the lease the
result is recorded with, by compare-and-swap (gx10slots.kube.cas); read by `slots status`, so an
on-call engineer on any machine sees the verdict, what it gated and the figures
(gx10slots.smoke.summary holds the rules). Best effort both ways: a summary that cannot be written
is a warning (the verdict and the gate's record on the Deployment stand), one that cannot be read
is shown as unreadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gx10slots import console
from gx10slots.app import App
from gx10slots.errors import ClusterError, Conflict, LockHeld, NotFound
from gx10slots.kube.cas import patch_until_settled
from gx10slots.kube.client import FIELD_MANAGER
from gx10slots.smoke.summary import KEY, LastSmoke, configmap_name, encode, last_smoke_of

if TYPE_CHECKING:
    from gx10slots.kube.lease import Lock


def read_summary_configmap(app: App, slot: str) -> dict[str, Any] | None:
    kube = app.kube
    name = configmap_name(slot)
    try:
        return kube.read(
            f"read ConfigMap {kube.namespace}/{name}",
            kube.api("core").read_namespaced_config_map,
            name,
            kube.namespace,
        )
    except NotFound:
        return None


def read_last_smoke(app: App, slot: str) -> LastSmoke | None:
    """The slot's last smoke summary; None when none was kept. Never raises for what the
    ConfigMap holds, nor for a read the cluster refuses (that is said in ``error``)."""
    try:
        configmap = read_summary_configmap(app, slot)
    except ClusterError as exc:  # e.g. a Role without this ConfigMap: status goes on
        return LastSmoke(error=f"cannot read ConfigMap {configmap_name(slot)}: {exc.message}")
    return last_smoke_of(configmap, slot)


def _data_ops(current: Mapping[str, Any], text: str) -> list[dict[str, Any]]:
    """Replace the ConfigMap's data whole: the name is ours, and a garbled or oversized value
    someone left there must not keep the summary from being written."""
    ops: list[dict[str, Any]] = [{"op": "add", "path": "/data", "value": {KEY: text}}]
    if "binaryData" in current:
        ops.append({"op": "remove", "path": "/binaryData"})
    return ops


def write_summary(app: App, slot: str, summary: dict[str, Any], lock: Lock) -> bool:
    """Create or compare-and-swap the slot's summary ConfigMap under ``lock``. True once written;
    otherwise a warning says why (never raises for the cluster's refusal or a lost lease: the
    verdict must still decide the exit code)."""
    kube, name = app.kube, configmap_name(slot)
    core = kube.api("core")
    text = encode(summary)
    try:
        lock.check()
        if read_summary_configmap(app, slot) is None:
            try:
                kube.write(
                    f"create ConfigMap {kube.namespace}/{name}",
                    core.create_namespaced_config_map,
                    kube.namespace,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": name,
                            "labels": {
                                "app.kubernetes.io/managed-by": "gx10slots",
                                "gx10slots.io/slot": slot,
                            },
                        },
                        "data": {KEY: text},
                    },
                    field_manager=FIELD_MANAGER,
                )
                return True
            except Conflict:
                pass  # created meanwhile (AlreadyExists): replace it below

        def plan(current: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
            if current is None:
                return None
            lock.check()
            return _data_ops(current, text)

        written = patch_until_settled(
            lambda: read_summary_configmap(app, slot),
            plan,
            lambda ops: kube.write(
                f"update ConfigMap {kube.namespace}/{name}",
                core.patch_namespaced_config_map,
                name,
                kube.namespace,
                ops,
                field_manager=FIELD_MANAGER,
            ),
        )
        if written:
            return True
        why = "it kept changing or was refused as invalid"
    except (ClusterError, LockHeld) as exc:
        why = exc.message
    console.progress(
        f"warning: the smoke summary of slot {slot} was not kept in ConfigMap {name} ({why}): "
        "`slots status` on other machines will not show this run; the verdict stands"
    )
    return False
