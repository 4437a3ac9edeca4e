"""Label and field selectors with the apiserver's syntax and matching rules.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
joined by commas (all must match). ``!=`` and ``notin`` also match objects without the label, as
in Kubernetes. Field selectors: ``field=value``, ``field==value``, ``field!=value`` on the fields a
resource supports (``metadata.name`` and ``metadata.namespace`` everywhere).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_KEY_RE = re.compile(rf"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_TOKEN_RE = re.compile(r"\s*(==|!=|=|\(|\)|,|!|[^\s=!(),]+)")

COMMON_FIELDS = ("metadata.name", "metadata.namespace")


class SelectorError(ValueError):
    """A selector that does not parse or names an unsupported field (the apiserver's 400)."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and labels[self.key] in self.values
            case _:  # "!=" and "notin"
                return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _check_key(key: str) -> str:
    if len(key.rsplit("/", 1)[-1]) > 63 or not _KEY_RE.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise SelectorError(f"unable to parse requirement: invalid label value {value!r}")
    return value


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SelectorError(f"unable to parse selector {text!r}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query syntax; raise SelectorError on bad syntax."""
    if not text or not text.strip():
        return LabelSelector()
    tokens = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise SelectorError(f"unable to parse requirement: unexpected end of {text!r}")
        i += 1
        return tokens[i - 1]

    while True:
        tok = take()
        if tok == "!":
            reqs.append(Requirement(_check_key(take()), "!"))
        else:
            key = _check_key(tok)
            op = tokens[i] if i < len(tokens) else ","
            if op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = tokens[i] if i < len(tokens) and tokens[i] != "," else ""
                if value:
                    i += 1
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (_check_value(value),)))
            elif op in ("in", "notin"):
                i += 1
                if take() != "(":
                    raise SelectorError(f"unable to parse requirement: expected '(' after {op}")
                values: list[str] = []
                while True:
                    item = take()
                    if item == ")" and not values:
                        break
                    if item in (",", ")"):
                        raise SelectorError("unable to parse requirement: expected a value")
                    values.append(_check_value(item))
                    sep = take()
                    if sep == ")":
                        break
                    if sep != ",":
                        raise SelectorError(f"unable to parse requirement: unexpected {sep!r}")
                if not values:
                    raise SelectorError(f"unable to parse requirement: {op} needs values")
                reqs.append(Requirement(key, op, tuple(values)))
            else:
                raise SelectorError(f"unable to parse requirement: unexpected {op!r}")
        if i >= len(tokens):
            break
        if take() != ",":
            raise SelectorError(f"unable to parse selector {text!r}: expected ','")
    return LabelSelector(tuple(reqs))


def selector_from_spec(spec: Mapping[str, Any] | None) -> LabelSelector:
    """The selector of a ``metav1.LabelSelector`` (``matchLabels`` and ``matchExpressions``)."""
    spec = spec or {}
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (spec.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in spec.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return LabelSelector(tuple(reqs))


def format_selector(selector: LabelSelector) -> str:
    """The query-string form, as in a Scale's ``status.selector``."""
    parts: list[str] = []
    for r in selector.requirements:
        if r.operator == "exists":
            parts.append(r.key)
        elif r.operator == "!":
            parts.append(f"!{r.key}")
        elif r.operator in ("=", "!="):
            parts.append(f"{r.key}{r.operator}{r.values[0]}")
        else:
            parts.append(f"{r.key} {r.operator} ({','.join(r.values)})")
    return ",".join(parts)


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[tuple[str, bool, str], ...] = ()  # (field, equal, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, f) == v) == eq for f, eq, v in self.requirements)


def field_value(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    return "" if cur is None else str(cur)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, escaped = [], "", False
    for ch in text:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            cur += ch
            escaped = True
        elif ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value)


def parse_field_selector(
    text: str | None, supported: Iterable[str] = COMMON_FIELDS
) -> FieldSelector:
    """Parse the ``fieldSelector`` query syntax against the fields the resource supports."""
    if not text or not text.strip():
        return FieldSelector()
    allowed = set(supported)
    reqs: list[tuple[str, bool, str]] = []
    for term in _split_unescaped(text, ","):
        m = re.match(r"^\s*([^=!\s]+)\s*(==|!=|=)(.*)$", term)
        if not m:
            raise SelectorError(f"invalid selector: {term!r}; can't understand {term!r}")
        name, op, value = m.group(1), m.group(2), _unescape(m.group(3).strip())
        if name not in allowed:
            raise SelectorError(f"field label not supported: {name}")
        reqs.append((name, op != "!=", value))
    return FieldSelector(tuple(reqs))
