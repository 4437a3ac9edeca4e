"""The protobuf envelope as kubectl's typed clients send it, decoded to the JSON shape; hostile
bodies are refused as the API server refuses them (400), never a crash."""

from __future__ import annotations

import pytest

from gx10slots.sandbox import protobuf


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _entry(key: str, value: bytes) -> bytes:
    return _field(1, key.encode()) + _field(2, value)


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return protobuf.MAGIC + _field(1, type_meta) + _field(2, raw) + _field(3, b"") + _field(4, b"")


def test_a_configmap_with_labels_annotations_and_binary_data() -> None:
    meta = (
        _field(1, b"settings")
        + _field(3, b"gx10")
        + _field(11, _entry("app", b"model"))
        + _field(12, _entry("note", b"hi"))
        + _field(8, b"")  # creationTimestamp, empty
    )
    raw = _field(1, meta) + _field(2, _entry("mode", b"fast")) + _field(3, _entry("b", b"\x00\xff"))
    raw += _field(4, 1)
    assert protobuf.decode(_envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "settings",
            "namespace": "gx10",
            "labels": {"app": "model"},
            "annotations": {"note": "hi"},
        },
        "data": {"mode": "fast"},
        "binaryData": {"b": "AP8="},
        "immutable": True,
    }


def test_a_secrets_bytes_become_base64_and_string_data_stays_text() -> None:
    raw = _field(1, _field(1, b"creds")) + _field(2, _entry("k", b"\x01")) + _field(3, b"")
    raw += _field(4, _entry("s", b"plain"))
    obj = protobuf.decode(_envelope("v1", "Secret", raw))
    assert obj["data"] == {"k": "AQ=="}
    assert obj["stringData"] == {"s": "plain"}
    assert "type" not in obj  # "" is unset in proto3: the server defaults it to Opaque


@pytest.mark.parametrize(
    "body",
    [
        b"not protobuf",
        protobuf.MAGIC + b"\x0a\xff\xff\xff\xff\x0f",  # a length far past the end
        protobuf.MAGIC + b"\x0a",  # a truncated varint
        protobuf.MAGIC + b"\x0b",  # wire type 3 (groups)
        _envelope("v1", "ConfigMap", _field(1, b"\xff\xfe")),  # metadata with a bad field
    ],
)
def test_malformed_bodies_are_a_protobuf_error(body: bytes) -> None:
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(body)


def test_a_kind_the_sandbox_does_not_decode_is_named() -> None:
    with pytest.raises(protobuf.UnsupportedKind, match="batch/v1, Kind=Job"):
        protobuf.decode(_envelope("batch/v1", "Job", b""))
