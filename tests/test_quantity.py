"""Quantities as kube-apiserver stores them (k8s.io/apimachinery/pkg/api/resource)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from gx10slots.kube.quantity import (
    FORMAT_WRONG,
    SUFFIX,
    QuantityError,
    canonical,
    canonical_pod_spec,
    resource_list_value,
    to_bytes,
)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        # What a real API server returns (and the examples in quantity.go's own comment).
        ("1.5Gi", "1536Mi"),
        ("60.5Gi", "61952Mi"),
        ("0.5Gi", "512Mi"),
        ("1000Mi", "1000Mi"),
        ("1024Mi", "1Gi"),
        ("61440Mi", "60Gi"),
        ("2048Mi", "2Gi"),
        ("1000M", "1G"),
        ("1000m", "1"),
        ("1.5", "1500m"),
        ("0.5", "500m"),
        ("1536Mi", "1536Mi"),
        ("1.1Ki", "1126400m"),
        ("2000m", "2"),
        ("1500m", "1500m"),
        ("1024", "1024"),
        ("512Ki", "512Ki"),
        ("1000Ki", "1000Ki"),
        ("1Ei", "1Ei"),
        ("1e3", "1e3"),
        ("1e-3", "1e-3"),
        ("1500e0", "1500e0"),
        ("0", "0"),
        ("100m", "100m"),
        ("0.25", "250m"),
        ("12000k", "12M"),
        ("0.5Ki", "512"),
        ("1000e0", "1e3"),
        ("128Gi", "128Gi"),
        ("1.5Pi", "1536Ti"),
        # BinarySI is capped at 2^63-1.
        ("10Ei", "9223372036854775807"),
        # Canonical text is kept as sent (the parser's fast path caches it).
        ("+1Gi", "+1Gi"),
        ("0Gi", "0"),
        # JSON numbers and null.
        (1073741824, "1073741824"),
        (1.5, "1500m"),
        (None, "0"),
        (" 2Gi ", "2Gi"),
    ],
)
def test_canonical_form_is_the_api_servers(given: Any, stored: str) -> None:
    assert canonical(given) == stored


@pytest.mark.parametrize(
    ("given", "stored"),
    [("0.1m", "1m"), ("100u", "1m"), ("1500u", "2m"), ("1.5Gi", "1536Mi"), ("1n", "1m")],
)
def test_resource_lists_round_up_to_milli(given: str, stored: str) -> None:
    assert resource_list_value(given) == stored


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("1e+06Gi", FORMAT_WRONG),  # what `--memory-gib 1000000` used to write
        ("12 GB", FORMAT_WRONG),
        ("1.1.M", FORMAT_WRONG),
        ("1+1.0M", FORMAT_WRONG),
        ("aoeu", FORMAT_WRONG),
        (" 1Gi x", FORMAT_WRONG),
        ("", FORMAT_WRONG),
        ("0.1mi", SUFFIX),
        ("-3.01e-", SUFFIX),
        (".5i", SUFFIX),
        ("1i", SUFFIX),
        ("1Ki5", SUFFIX),
        (True, FORMAT_WRONG),
        ({"a": 1}, FORMAT_WRONG),
    ],
)
def test_malformed_quantities_are_refused_with_the_servers_message(
    given: Any, message: str
) -> None:
    with pytest.raises(QuantityError) as caught:
        canonical(given)
    assert str(caught.value) == message


def test_hostile_exponents_and_lengths_stay_cheap() -> None:
    started = time.monotonic()
    assert canonical("1e999999999") == "1e999999999"
    assert canonical("1.5e999999999") == "1500e999999996"
    assert canonical("1e-999999999") == "1e-9"  # rounded up to the nano
    with pytest.raises(QuantityError):
        canonical("9" * 5000 + "Ki")
    with pytest.raises(QuantityError):
        to_bytes("1e999999999")
    assert time.monotonic() - started < 1.0


def test_bytes() -> None:
    assert to_bytes("60.5Gi") == 60.5 * 2**30
    assert to_bytes("500M") == 500e6
    assert to_bytes("1e9") == 1e9


def test_pod_spec_resource_lists_are_rewritten_in_place() -> None:
    spec: dict[str, Any] = {
        "containers": [
            {"name": "a", "resources": {"limits": {"memory": "1.5Gi", "cpu": "0.5"}}},
            {"name": "b", "resources": {"requests": {"memory": "bogus"}}},
        ],
        "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1024Mi"}}}],
        "overhead": {"memory": "0.5Gi"},
    }
    canonical_pod_spec(spec)
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "1536Mi", "cpu": "500m"}
    assert spec["containers"][1]["resources"]["requests"] == {"memory": "bogus"}
    assert spec["initContainers"][0]["resources"]["requests"] == {"memory": "1Gi"}
    assert spec["overhead"] == {"memory": "512Mi"}
    with pytest.raises(QuantityError):
        canonical_pod_spec(spec, strict=True)
