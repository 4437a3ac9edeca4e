"""The declared client floor (pyproject: kubernetes>=30): no call may rely on a keyword that only
newer official clients accept.

Since the adapter sends plain JSON requests itself (gx10slots.kube.rest), the official client is
used only for its kubeconfig loader (exec plugins, auth providers, in-cluster): the floor script
also runs tests/test_kubeconfig_loaders.py, which checks that loader against ours, and the list
body of a PATCH going out as a JSON patch is checked there on our own requests.

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

import gx10slots


def test_no_call_passes_a_content_type_keyword() -> None:
    offenders = []
    for path in Path(gx10slots.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and any(k.arg == "_content_type" for k in node.keywords):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
