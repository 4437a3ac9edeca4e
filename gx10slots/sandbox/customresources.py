"""Custom resources, served as by a cluster with their CustomResourceDefinitions installed.

The sandbox serves Gateway API ``HTTPRoute`` (gateway.networking.k8s.io/v1), from the published
CRD vendored in ``crds/`` (see its ``source`` and ``bundleVersion``). What the apiextensions
apiserver does to a custom resource, and this module does too:

- discovery from the CRD's names, scope and subresources (``status``: main-resource writes keep
  the stored status);
- **pruning**: fields the structural schema does not know are dropped (a warning, or 400 with
  ``fieldValidation=Strict``), like the built-in kinds' unknown fields;
- **defaulting** from the schema's ``default`` values (an HTTPRoute backendRef's ``weight`` is 1,
  its ``kind`` ``Service``; a rule without matches matches the path prefix ``/``);
- **validation** against the openAPIV3Schema with jsonschema, the failures rendered as
  kube-openapi's (apiextensions-apiserver/pkg/apiserver/validation/validation.go,
  kubeOpenAPIResultToFieldErrors): ``spec.rules[0].backendRefs[0].weight: Invalid value:
  1000001: spec.rules[0].backendRefs[0].weight in body should be less than or equal to 1000000``;
  ``x-kubernetes-list-type`` ``map``/``set`` uniqueness;
- of the CEL rules (``x-kubernetes-validations``), only the one the sandbox's routing depends on
  is ported by hand: a backendRef to a core Service must name a port. The others are not
  evaluated (a CEL runtime with Kubernetes' libraries is out of proportion here);
- JSON Patch and JSON merge patch only: a strategic merge patch is 415, as
  customresource_handler.go offers CRDs no other patch types;
- server-side printing from the CRD's ``additionalPrinterColumns`` (tableconvertor.go).

To regenerate the vendored file from a gateway-api checkout: take the ``v1`` entry of
``spec.versions`` in config/crd/standard/gateway.networking.k8s.io_httproutes.yaml and keep its
``subresources``, ``additionalPrinterColumns`` and ``schema.openAPIV3Schema`` with every
``description`` key removed, next to the CRD's ``group``, ``names`` and ``scope``.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources as package_files
from typing import Any

import jsonschema

from gx10slots.sandbox.store import Cause, Obj, ResourceType, field_path

CRD_DIRECTORY = "crds"


@dataclass(frozen=True)
class CustomResource:
    """One served version of a CustomResourceDefinition."""

    rt: ResourceType
    schema: Obj  # the version's openAPIV3Schema
    printer_columns: tuple[Obj, ...]
    source: str
    bundle_version: str


def _load(filename: str) -> CustomResource:
    text = (
        package_files.files("gx10slots.sandbox")
        .joinpath(CRD_DIRECTORY, filename)
        .read_text(encoding="utf-8")
    )
    crd = json.loads(text)
    names = crd["names"]
    subresources = tuple(sorted(crd.get("subresources") or {}))
    rt = ResourceType(
        crd["group"],
        crd["version"],
        names["plural"],
        names["kind"],
        namespaced=crd["scope"] == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        subresources=subresources,
        categories=tuple(names.get("categories") or ()),
        # A custom resource's generation moves with every change but to metadata and status
        # (apiextensions-apiserver/pkg/registry/customresource/strategy.go); an HTTPRoute has
        # nothing but spec besides them.
        tracks_generation=True,
        status_subresource="status" in subresources,
    )
    return CustomResource(
        rt=rt,
        schema=crd["openAPIV3Schema"],
        printer_columns=tuple(crd.get("additionalPrinterColumns") or ()),
        source=crd["source"],
        bundle_version=crd["bundleVersion"],
    )


HTTPROUTE = _load("httproutes.gateway.networking.k8s.io.json")
CUSTOM_RESOURCES: tuple[CustomResource, ...] = (HTTPROUTE,)


def definition(rt: ResourceType) -> CustomResource | None:
    return next((c for c in CUSTOM_RESOURCES if c.rt == rt), None)


# -- pruning and defaulting --------------------------------------------------------------------


def unknown_fields(schema: Obj, obj: Obj) -> list[tuple[list[Any], str, Obj]]:
    """The fields the structural schema would prune: (path to the map, name, the map)."""
    found: list[tuple[list[Any], str, Obj]] = []

    def walk(node: Any, s: Obj, path: list[Any]) -> None:
        if s.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(node, dict) and s.get("type") == "object":
            props = s.get("properties")
            extra = s.get("additionalProperties")
            if props is None and isinstance(extra, dict):
                for key, value in node.items():
                    walk(value, extra, [*path, key])
                return
            if props is None:
                # ObjectMeta is `type: object` at the root: the apiserver validates it on its own.
                if path != ["metadata"]:
                    found.extend((path, key, node) for key in node)
                return
            for key, value in node.items():
                if key in props:
                    walk(value, props[key], [*path, key])
                else:
                    found.append((path, key, node))
        elif isinstance(node, list) and isinstance(s.get("items"), dict):
            for i, item in enumerate(node):
                walk(item, s["items"], [*path, i])

    walk(obj, schema, [])
    return found


def apply_defaults(schema: Obj, obj: Obj) -> None:
    """Structural defaulting (apiextensions-apiserver/pkg/apiserver/schema/defaulting): a
    missing property with a ``default`` gets a copy of it, in objects that are there."""

    def walk(node: Any, s: Obj) -> None:
        if isinstance(node, dict):
            for key, prop in (s.get("properties") or {}).items():
                if key not in node and "default" in prop:
                    node[key] = copy.deepcopy(prop["default"])
                if key in node:
                    walk(node[key], prop)
        elif isinstance(node, list) and isinstance(s.get("items"), dict):
            for item in node:
                walk(item, s["items"])

    walk(obj, schema)


# -- validation --------------------------------------------------------------------------------


@functools.cache
def _validator(kind: str) -> Any:
    crd = next(c for c in CUSTOM_RESOURCES if c.rt.kind == kind)
    # OpenAPI v3.0 schemas are JSON Schema draft 4 with extensions; the `x-kubernetes-*` and
    # `format` keywords are left to the checks below (formats are not asserted by default).
    return jsonschema.Draft4Validator(crd.schema)


def _go_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number" if isinstance(value, float) else "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _cause(error: jsonschema.ValidationError) -> Cause:
    """go-openapi's error for one schema violation, as the apiserver turns it into a cause."""
    path = field_path(error.absolute_path)
    where = path or "body"
    value = json.dumps(error.instance, separators=(",", ":"))
    rule, limit = error.validator, error.validator_value
    if rule == "required":
        name = str(error.message).split("'")[1] if "'" in str(error.message) else "?"
        return Cause(f"{path}.{name}" if path else name, "FieldValueRequired", "Required value")
    if rule == "enum":
        allowed = ", ".join(json.dumps(v) for v in limit or [])
        return Cause(
            path,
            "FieldValueNotSupported",
            f"Unsupported value: {value}: supported values: {allowed}",
        )
    if rule == "type":
        return Cause(
            path,
            "FieldValueTypeInvalid",
            f"Invalid value: {value}: {where} in body must be of type {limit}: "
            f'"{_go_type(error.instance)}"',
        )
    if rule == "maxLength":
        return Cause(path, "FieldValueTooLong", f"Too long: may not be more than {limit} bytes")
    if rule == "maxItems":
        return Cause(
            path,
            "FieldValueTooMany",
            f"Too many: {len(error.instance)}: must have at most {limit} items",
        )
    why = {
        "maximum": f"should be less than or equal to {limit}",
        "minimum": f"should be greater than or equal to {limit}",
        "minLength": f"should be at least {limit} chars long",
        "minItems": f"should have at least {limit} items",
        "pattern": f"should match '{limit}'",
    }.get(str(rule), str(error.message))
    return Cause(path, "FieldValueInvalid", f"Invalid value: {value}: {where} in body {why}")


def _list_causes(schema: Obj, obj: Obj) -> Iterator[Cause]:
    """``x-kubernetes-list-type: map|set``: keys (or items) are unique (structural-schema
    list validation, apiextensions-apiserver/pkg/apiserver/schema/listtype)."""

    def walk(node: Any, s: Obj, path: list[Any]) -> Iterator[Cause]:
        if isinstance(node, dict):
            for key, prop in (s.get("properties") or {}).items():
                if key in node:
                    yield from walk(node[key], prop, [*path, key])
        elif isinstance(node, list):
            kind = s.get("x-kubernetes-list-type")
            keys = s.get("x-kubernetes-list-map-keys") or []
            seen: list[Any] = []
            for i, item in enumerate(node):
                ident: Any = item
                if kind == "map" and isinstance(item, dict):
                    ident = {k: item.get(k) for k in keys}
                if kind in ("map", "set"):
                    if ident in seen:
                        shown = json.dumps(ident, separators=(",", ":"))
                        if kind == "map":
                            shown = f"map[string]interface {{}}{shown}"
                        yield Cause(
                            field_path([*path, i]),
                            "FieldValueDuplicate",
                            f"Duplicate value: {shown}",
                        )
                    else:
                        seen.append(ident)
                if isinstance(s.get("items"), dict):
                    yield from walk(item, s["items"], [*path, i])

    yield from walk(obj, schema, [])


def _httproute_cel_causes(obj: Obj) -> Iterator[Cause]:
    """The HTTPRoute CEL rule the routing depends on, on every backendRef:
    ``(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true``."""
    rules = (obj.get("spec") or {}).get("rules")
    for r, rule in enumerate(rules if isinstance(rules, list) else []):
        refs = rule.get("backendRefs") if isinstance(rule, dict) else None
        for b, ref in enumerate(refs if isinstance(refs, list) else []):
            if not isinstance(ref, dict):
                continue
            core_service = ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
            if core_service and "port" not in ref:
                yield Cause(
                    f"spec.rules[{r}].backendRefs[{b}]",
                    "FieldValueInvalid",
                    'Invalid value: "object": Must have port for Service reference',
                )


def schema_causes(crd: CustomResource, obj: Obj) -> list[Cause]:
    """Every schema violation of ``obj`` (already pruned and defaulted), status included: the
    status subresource is validated against the schema too."""
    errors = sorted(_validator(crd.rt.kind).iter_errors(obj), key=lambda e: list(map(str, e.path)))
    causes = [_cause(e) for e in errors if list(e.absolute_path)[:1] != ["metadata"]]
    causes += _list_causes(crd.schema, obj)
    if crd is HTTPROUTE:
        causes += _httproute_cel_causes(obj)
    return causes


def findings(crd: CustomResource, obj: Obj) -> tuple[list[tuple[list[Any], str, Obj]], list[Cause]]:
    """The fields pruning drops (path, name, the map holding it) and the violations of the
    object as it will be stored, without them."""
    unknown = unknown_fields(crd.schema, obj)
    pruned = copy.deepcopy(obj)
    for parts, name, _ in unknown:
        container: Any = pruned
        for part in parts:
            container = container[part]
        container.pop(name, None)
    return unknown, schema_causes(crd, pruned)


# -- printing ----------------------------------------------------------------------------------


def _json_path(obj: Obj, path: str) -> Any:
    """A simple JSONPath (``.spec.hostnames``) as the CRD's printer columns use."""
    node: Any = obj
    for key in path.strip(".").split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return node


def printer_cell(column: Obj, obj: Obj, age: Any) -> Any:
    """tableconvertor.go: a string column prints lists and maps as JSON; a date column is an
    age; a missing value is a null cell. ``age`` turns a timestamp into the AGE text."""
    value = _json_path(obj, str(column.get("jsonPath") or ""))
    if value is None:
        return None
    kind = column.get("type")
    if kind == "string":
        if isinstance(value, list | dict):
            return json.dumps(value, separators=(",", ":"))
        return value if isinstance(value, str) else json.dumps(value)
    if kind == "date":
        return age(value) if isinstance(value, str) else None
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    return None
