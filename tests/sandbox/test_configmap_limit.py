"""A ConfigMap's data may total at most 1 MiB, as kube-apiserver validates it: the limit the
history ConfigMap's byte bound (gx10slots.ops.audit) keeps well clear of."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gx10slots.ops.audit import HISTORY_MAX_BYTES
from gx10slots.sandbox.resources import CONFIGMAP_MAX_BYTES, CONFIGMAPS
from tests.helpers.apiserver import NAMESPACE, TOKEN, Sandbox

PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps"


def _post(sandbox: Sandbox, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{sandbox.url}{PATH}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        content=json.dumps(body),
        timeout=10,
    )


def test_a_configmap_over_one_mib_is_invalid(sandbox: Sandbox) -> None:
    big = {"metadata": {"name": "big"}, "data": {"a": "x" * 600_000, "b": "y" * 500_000}}
    refused = _post(sandbox, big)
    assert refused.status_code == 422
    assert "Too long: must have at most 1048576 bytes" in refused.json()["message"]
    assert sandbox.store.find(CONFIGMAPS, NAMESPACE, "big") is None


def test_a_configmap_at_the_history_budget_is_stored(sandbox: Sandbox) -> None:
    assert HISTORY_MAX_BYTES * 4 <= CONFIGMAP_MAX_BYTES
    fits = {"metadata": {"name": "fits"}, "data": {"entries": "x" * HISTORY_MAX_BYTES}}
    assert _post(sandbox, fits).status_code == 201
