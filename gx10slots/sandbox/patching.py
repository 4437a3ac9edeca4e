"""The three patch types the apiserver accepts: JSON merge, JSON Patch and strategic merge.

Server-side apply (``application/apply-patch+yaml``) is deliberately unsupported: it answers 415.
Custom resources take JSON Patch and JSON merge patch only (``custom=True``): the apiextensions
apiserver offers them no strategic merge patch (customresource_handler.go, ``supportedTypes``).
The strategic merge patch covers what Kubernetes clients send for the built-in kinds we serve:
maps merge recursively, ``null`` deletes a key, lists of named things (containers, volumes, env,
ports, conditions...) merge by their merge key, ``$patch: delete|replace|merge`` directives,
``$retainKeys``, ``$deleteFromPrimitiveList/…`` and ``$setElementOrder/…``; every other list is
replaced whole.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_ACCEPTED = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)
_ACCEPTED_CUSTOM = (JSON_PATCH, MERGE_PATCH)

# Field name -> merge key, from the patchMergeKey tags of the core/apps/meta types.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "addresses": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}


class PatchError(Exception):
    """A patch the apiserver refuses: ``code`` is 400, 415 or 422."""

    def __init__(self, code: int, reason: str, message: str, causes: list[str] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def patch_type(content_type: str | None, *, custom: bool = False) -> str:
    """The patch type of a PATCH request's Content-Type; 415 for any other (apply included,
    and strategic merge for a ``custom`` resource)."""
    kind = media_type(content_type)
    accepted = _ACCEPTED_CUSTOM if custom else _ACCEPTED
    if kind not in accepted:
        raise PatchError(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )
    return kind


def apply_patch(
    original: Mapping[str, Any], body: bytes, content_type: str | None, *, custom: bool = False
) -> dict:
    """Apply a PATCH request body of the given Content-Type to ``original`` (not modified)."""
    kind = patch_type(content_type, custom=custom)
    try:
        patch = json.loads(body or b"null")
    except ValueError as e:
        raise PatchError(400, "BadRequest", f"error decoding patch: {e}") from e
    if kind == JSON_PATCH:
        return json_patch(original, patch)
    if not isinstance(patch, dict):
        raise PatchError(400, "BadRequest", "Invalid JSON Patch")
    if kind == MERGE_PATCH:
        return merge_patch(original, patch)
    return strategic_merge_patch(original, patch)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(doc: Mapping[str, Any], operations: Any) -> dict:
    """RFC 6902 JSON Patch; a failing ``test`` or a missing path is 422, a malformed patch 400."""
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise PatchError(400, "BadRequest", "json: cannot unmarshal object into Go value")
    result: Any = copy.deepcopy(dict(doc))
    for op in operations:  # one at a time, to name the operation that failed as the server does
        try:
            result = jsonpatch.JsonPatch([op]).apply(result, in_place=True)
        except jsonpatch.InvalidJsonPatch as e:
            raise PatchError(400, "BadRequest", str(e)) from e
        except jsonpatch.JsonPatchTestFailed as e:
            raise _unprocessable(f"testing value {op.get('path')} failed: test failed") from e
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
            raise _unprocessable(
                f"{op.get('op')} operation does not apply: doc is missing path: "
                f'"{op.get("path")}": missing value'
            ) from e
    if not isinstance(result, dict):
        raise _unprocessable("the patched document is not an object")
    return result


def _unprocessable(cause: str) -> PatchError:
    # As the apiserver does: a generic 422 with the patch library's error as the only cause.
    return PatchError(
        422, "Invalid", "the server rejected our request due to an error in our request", [cause]
    )


def strategic_merge_patch(original: Mapping[str, Any], patch: Mapping[str, Any]) -> dict:
    """Strategic merge patch for the built-in kinds (see the module docstring)."""
    result = _merge_map(dict(original), patch, ())
    return result if isinstance(result, dict) else {}


def _merge_key(path: tuple[str, ...], field: str, items: list[Any]) -> str | None:
    if field == "ports":
        # Service ports merge by port, container ports by containerPort.
        return "port" if path == ("spec",) else "containerPort"
    key = _MERGE_KEYS.get(field)
    if key == "type" and field == "addresses" and not any("type" in i for i in items):
        return None  # EndpointSubset addresses have no merge key
    return key


def _merge_map(original: Mapping[str, Any], patch: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    result: dict[str, Any] = copy.deepcopy(dict(original))
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in (value or [])]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            merged = _merge_map(current if isinstance(current, dict) else {}, value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            current = result.get(key)
            result[key] = _merge_list(
                current if isinstance(current, list) else [], value, (*path, key)
            )
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: list[Any], patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    field = path[-1]
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    key = _merge_key(path[:-1], field, original + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [_strip(i) for i in patch]
    result = copy.deepcopy(original)
    for item in patch:
        ident = item.get(key)
        index = next(
            (n for n, cur in enumerate(result) if isinstance(cur, dict) and cur.get(key) == ident),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(_strip(item))
        else:
            merged = _merge_map(result[index], item, path)
            result[index] = merged if merged is not None else result[index]
    return result


def _strip(value: Any) -> Any:
    """Drop patch directives from a value that is copied in whole."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
