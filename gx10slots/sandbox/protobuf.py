"""Protobuf request bodies, as a real API server accepts them for built-in types.

Why kubectl sends them: since client-go v0.32 (Kubernetes 1.32; kubernetes commit c2ae465355b5
"Use protobuf for core clients", client-go 6f44458e5) every generated typed client of a built-in
type is built with ``gentype.PrefersProtobuf`` (client-go kubernetes/typed/core/v1/configmap.go,
secret.go, batch/v1/job.go, ...), and ``rest.Request.UseProtobufAsDefault`` then sends
``Content-Type: application/vnd.kubernetes.protobuf`` (Accept: protobuf, then JSON) whenever the
rest.Config leaves ContentType unset, as kubectl's does. ``kubectl create configmap`` and
``kubectl create secret`` use those typed clients (kubectl pkg/cmd/create/create_configmap.go and
create_secret.go: ``corev1client.NewForConfig(restConfig)``); ``kubectl apply/create -f`` use the
dynamic client and send JSON. Nothing is negotiated: discovery lists no content types per resource
(the OpenAPI document's ``consumes`` does, and names protobuf for every built-in operation), and
client-go's 415 fallback exists only for CBOR. A real kube-apiserver decodes protobuf for every
built-in type (only custom resources are JSON/YAML-only), so "never ask for it" is not an option:
the faithful sandbox decodes it.

Decoded here: the k8s envelope (magic ``k8s\\0`` then ``runtime.Unknown{typeMeta=1, raw=2}``,
apimachinery pkg/runtime/serializer/protobuf) around the types kubectl's typed clients create and
the sandbox stores: ConfigMap, Secret, Namespace, ServiceAccount, with ObjectMeta's name,
generateName, namespace, labels, annotations and finalizers. Field numbers from
k8s.io/api core/v1/generated.proto and apimachinery meta/v1/generated.proto. Any other kind gets
the 415 a server without that type's protobuf would answer.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

Obj = dict[str, Any]
Field = tuple[int, int | bytes]


class ProtobufError(ValueError):
    """A body that is not a well-formed k8s protobuf envelope."""


class UnsupportedKind(ValueError):
    """A well-formed envelope around a kind this sandbox does not decode from protobuf."""


def fields(data: bytes) -> Iterator[Field]:
    """(field number, value) pairs of one protobuf message: varints and length-delimited."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ProtobufError("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            length = varint()
            if pos + length > len(data):
                raise ProtobufError("truncated field")
            yield number, data[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ProtobufError(f"unsupported protobuf wire type {wire}")


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a string field")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtobufError("a string field is not UTF-8") from err


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a bytes field")
    return value


def _entry(value: int | bytes) -> tuple[str, bytes]:
    """A map entry (key = 1, value = 2)."""
    key, item = "", b""
    for number, part in fields(_bytes(value)):
        if number == 1:
            key = _text(part)
        elif number == 2:
            item = _bytes(part)
    return key, item


def _metadata(data: bytes) -> Obj:
    meta: Obj = {}
    names = {1: "name", 2: "generateName", 3: "namespace"}
    for number, value in fields(data):
        if number in names:
            if text := _text(value):
                meta[names[number]] = text
        elif number in (11, 12):  # labels, annotations
            key, item = _entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = item.decode(
                "utf-8", errors="replace"
            )
        elif number == 14:  # finalizers
            meta.setdefault("finalizers", []).append(_text(value))
    return meta


def _config_map(data: bytes) -> Obj:
    obj: Obj = {}
    for number, value in fields(data):
        if number == 1:
            obj["metadata"] = _metadata(_bytes(value))
        elif number == 2:
            key, item = _entry(value)
            obj.setdefault("data", {})[key] = item.decode("utf-8", errors="replace")
        elif number == 3:
            key, item = _entry(value)
            obj.setdefault("binaryData", {})[key] = base64.b64encode(item).decode()
        elif number == 4:
            obj["immutable"] = bool(value)
    return obj


def _secret(data: bytes) -> Obj:
    obj: Obj = {}
    for number, value in fields(data):
        if number == 1:
            obj["metadata"] = _metadata(_bytes(value))
        elif number == 2:  # bytes on the wire, base64 in JSON
            key, item = _entry(value)
            obj.setdefault("data", {})[key] = base64.b64encode(item).decode()
        elif number == 3 and (kind := _text(value)):  # proto3: "" is unset, defaulted Opaque
            obj["type"] = kind
        elif number == 4:
            key, item = _entry(value)
            obj.setdefault("stringData", {})[key] = item.decode("utf-8", errors="replace")
        elif number == 5:
            obj["immutable"] = bool(value)
    return obj


def _metadata_only(data: bytes) -> Obj:
    """Namespace, ServiceAccount: kubectl's create sends only metadata that matters here."""
    obj: Obj = {}
    for number, value in fields(data):
        if number == 1:
            obj["metadata"] = _metadata(_bytes(value))
        elif number == 4 and isinstance(value, int):  # ServiceAccount.automountServiceAccountToken
            obj["automountServiceAccountToken"] = bool(value)
    return obj


_DECODERS = {
    ("v1", "ConfigMap"): _config_map,
    ("v1", "Secret"): _secret,
    ("v1", "Namespace"): _metadata_only,
    ("v1", "ServiceAccount"): _metadata_only,
}


def unwrap(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, raw message) of a k8s protobuf envelope."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf envelope")
    api_version = kind = ""
    raw = b""
    for number, value in fields(body[len(MAGIC) :]):
        if number == 1:  # TypeMeta
            for inner, text in fields(_bytes(value)):
                if inner == 1:
                    api_version = _text(text)
                elif inner == 2:
                    kind = _text(text)
        elif number == 2:
            raw = _bytes(value)
    return api_version, kind, raw


def decode(body: bytes) -> Obj:
    """The JSON shape of a protobuf-encoded object of a kind in ``_DECODERS``."""
    api_version, kind, raw = unwrap(body)
    decoder = _DECODERS.get((api_version, kind))
    if decoder is None:
        raise UnsupportedKind(f"{api_version}, Kind={kind}")
    obj = decoder(raw)
    obj.setdefault("metadata", {})
    return {"apiVersion": api_version, "kind": kind, **obj}
