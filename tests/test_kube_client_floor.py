"""The declared client floor (pyproject: kubernetes>=30): no call may rely on a keyword that only
newer official clients accept.

`_content_type=` exists only from kubernetes-client/python v36 (its pydantic generator); with 30-35
the generated methods reject unknown keywords (ApiTypeError, a traceback) before sending anything,
so every flip, park and smoke record died. It is not needed: a list body goes out as
`application/json-patch+json` in every version (<= 35: ApiClient.select_header_content_type picks
json-patch for a PATCH whose body is a list; >= 36: the generated PATCH methods list
`application/json-patch+json` first and select_header_content_type takes the first JSON type).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import gx10slots


def test_no_call_passes_a_content_type_keyword() -> None:
    offenders = []
    for path in Path(gx10slots.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and any(k.arg == "_content_type" for k in node.keywords):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


class _Sent(Exception):
    pass


def test_a_list_body_goes_out_as_a_json_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The premise of the above, checked on the installed client (CI also runs the e2e flip)."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"
    api_client = client.ApiClient(configuration)
    seen: dict[str, Any] = {}

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.update(method=method, headers=kwargs.get("headers") or {})
        raise _Sent

    monkeypatch.setattr(api_client.rest_client, "request", request)
    body = [{"op": "replace", "path": "/spec/selector/slot", "value": "green"}]
    with pytest.raises(_Sent):
        client.CoreV1Api(api_client).patch_namespaced_service(
            "gx10-model", "gx10", body, field_manager="gx10slots", _preload_content=False
        )
    assert seen["method"] == "PATCH"
    assert seen["headers"]["Content-Type"] == "application/json-patch+json"
