"""Authentication and RBAC authorization for the sandbox API server, as the apiserver does them.

Identities come from bearer tokens: the sandbox's admin token is ``system:masters`` (allowed
everything, as in a real cluster), tokens minted through ``serviceaccounts/<name>/token`` (what
``kubectl create token`` calls) are that service account, and tests may register more users.
Requests of anyone but ``system:masters`` are authorized by the RBAC objects stored in the
sandbox: Roles and RoleBindings in the request's namespace, ClusterRoles and ClusterRoleBindings
everywhere, with the rule matching of ``k8s.io/kubernetes/pkg/apis/rbac/v1`` (verbs, apiGroups,
resources including ``pods/log`` and ``*/scale``, resourceNames; a list or watch is authorized
against a name only through a ``metadata.name=`` field selector, as the apiserver's RequestInfo
does). A denial is the apiserver's 403 Forbidden Status, word for word:

    services "gx10-model" is forbidden: User "system:serviceaccount:gx10:gx10slots" cannot patch
    resource "services" in API group "" in the namespace "gx10"

Non-resource paths (discovery, /version, /openapi) are open to every authenticated user, as the
``system:discovery`` and ``system:public-info-viewer`` ClusterRoles make them in a cluster.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gx10slots.sandbox.store import Obj, StatusError

RBAC_GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
DECISION_LOG = 20_000


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = (AUTHENTICATED,)

    @property
    def is_master(self) -> bool:
        return MASTERS in self.groups


def service_account_user(namespace: str, name: str) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


ADMIN = User("sandbox-admin", (MASTERS, AUTHENTICATED))


@dataclass(frozen=True)
class Attributes:
    """What a request asks to do, as the authorizer sees it."""

    user: User
    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""  # for non-resource requests

    @property
    def resource_request(self) -> bool:
        return bool(self.resource)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Which binding and rule allowed it: "RoleBinding gx10/gx10slots -> Role gx10slots rule 3".
    via: str = ""


# -- rule matching (k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go) ----------------------


def _verb_matches(rule: Mapping[str, Any], verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _group_matches(rule: Mapping[str, Any], group: str) -> bool:
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def _resource_matches(rule: Mapping[str, Any], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for candidate in rule.get("resources") or []:
        if candidate in ("*", combined):
            return True
        if subresource and candidate == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: Mapping[str, Any], name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or (bool(name) and name in names)


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    if not attrs.resource_request:
        urls = rule.get("nonResourceURLs") or []
        return _verb_matches(rule, attrs.verb) and any(
            u == "*" or u == attrs.path or (u.endswith("*") and attrs.path.startswith(u[:-1]))
            for u in urls
        )
    return (
        _verb_matches(rule, attrs.verb)
        and _group_matches(rule, attrs.api_group)
        and _resource_matches(rule, attrs.resource, attrs.subresource)
        and _name_matches(rule, attrs.name)
    )


def _applies_to(subject: Mapping[str, Any], user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


# -- the authorizer -----------------------------------------------------------------------------


class RoleSource:
    """Where the authorizer reads RBAC objects: lists of stored objects (in API form)."""

    def __init__(self, list_objects: Any) -> None:
        # list_objects(resource_type_key, namespace | None) -> list of objects
        self._list = list_objects

    def objects(self, kind: str, namespace: str | None) -> list[Obj]:
        return list(self._list(kind, namespace))


class Authorizer:
    def __init__(self, source: RoleSource) -> None:
        self.source = source
        self._lock = threading.Lock()
        self._decisions: deque[dict[str, Any]] = deque(maxlen=DECISION_LOG)

    def authorize(self, attrs: Attributes) -> Decision:
        if attrs.user.is_master:
            return Decision(True, MASTERS)
        if not attrs.resource_request:
            # Discovery and version: open to every authenticated user (system:discovery).
            return Decision(AUTHENTICATED in attrs.user.groups, "system:discovery")
        decision = self._evaluate(attrs)
        self._log(attrs, decision)
        return decision

    def _evaluate(self, attrs: Attributes) -> Decision:
        for binding in self.source.objects("clusterrolebindings", None):
            meta = binding.get("metadata") or {}
            if not any(_applies_to(s, attrs.user, "") for s in binding.get("subjects") or []):
                continue
            ref = binding.get("roleRef") or {}
            if ref.get("kind") != "ClusterRole":
                continue
            found = self._rule(self._role("clusterroles", None, ref.get("name")), attrs)
            if found is not None:
                return Decision(
                    True,
                    f"ClusterRoleBinding {meta.get('name')} -> ClusterRole {ref.get('name')} "
                    f"rule {found}",
                )
        if attrs.namespace:
            for binding in self.source.objects("rolebindings", attrs.namespace):
                meta = binding.get("metadata") or {}
                subjects = binding.get("subjects") or []
                if not any(_applies_to(s, attrs.user, attrs.namespace) for s in subjects):
                    continue
                ref = binding.get("roleRef") or {}
                if ref.get("kind") == "Role":
                    role = self._role("roles", attrs.namespace, ref.get("name"))
                elif ref.get("kind") == "ClusterRole":
                    role = self._role("clusterroles", None, ref.get("name"))
                else:
                    continue
                found = self._rule(role, attrs)
                if found is not None:
                    return Decision(
                        True,
                        f"RoleBinding {attrs.namespace}/{meta.get('name')} -> {ref.get('kind')} "
                        f"{ref.get('name')} rule {found}",
                    )
        return Decision(False)

    def _role(self, kind: str, namespace: str | None, name: Any) -> Obj | None:
        for role in self.source.objects(kind, namespace):
            if (role.get("metadata") or {}).get("name") == name:
                return role
        return None

    @staticmethod
    def _rule(role: Obj | None, attrs: Attributes) -> int | None:
        for index, rule in enumerate((role or {}).get("rules") or []):
            if rule_allows(rule, attrs):
                return index
        return None

    # -- the decision log (control API GET /_sandbox/authz) ---------------------------------------

    def _log(self, attrs: Attributes, decision: Decision) -> None:
        entry = asdict(attrs)
        entry["user"] = attrs.user.name
        entry.pop("path")
        entry.update(allowed=decision.allowed, via=decision.via)
        with self._lock:
            self._decisions.append(entry)

    def decisions(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._decisions)

    def clear(self) -> None:
        with self._lock:
            self._decisions.clear()


def forbidden(attrs: Attributes) -> StatusError:
    """The apiserver's 403 for a denied request (responsewriters.Forbidden)."""
    user = attrs.user.name
    if not attrs.resource_request:
        return StatusError(
            403,
            "Forbidden",
            f'forbidden: User "{user}" cannot {attrs.verb} path "{attrs.path}"',
            {},
        )
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    reason = (
        f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.api_group}" {scope}'
    )
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if attrs.name:
        message = f'{qualified} "{attrs.name}" is forbidden: {reason}'
    else:
        message = f"{qualified} is forbidden: {reason}"
    details: dict[str, Any] = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.api_group:
        details["group"] = attrs.api_group
    details["kind"] = attrs.resource
    return StatusError(403, "Forbidden", message, details)


def name_from_field_selector(selector: str | None) -> str:
    """``metadata.name=x`` in a list/watch field selector: the name the request is authorized
    against (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go)."""
    for requirement in (selector or "").split(","):
        key, sep, value = requirement.partition("=")
        if sep and key.strip() == "metadata.name":
            return value.removeprefix("=").strip()
    return ""
