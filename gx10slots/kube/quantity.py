"""Kubernetes resource quantities, parsed and printed exactly as kube-apiserver does (pure).

A real API server never stores the text it was sent: it decodes every quantity into a fixed-point
number and encodes it back in *canonical form* (``1.5Gi`` -> ``1536Mi``, ``60.5Gi`` -> ``61952Mi``,
``1000`` -> ``1k``). Anything that hashes or compares what it wrote against what it reads back
(the tool's revision of a pod template) must compare canonical forms; the sandbox API server uses
the same code to store what a real one would.

Ported by reading k8s.io/apimachinery/pkg/api/resource (quantity.go ``parseQuantityString``,
``ParseQuantity``, ``CanonicalizeBytes``, ``MarshalJSON``; amount.go ``AsCanonicalBytes`` and
``AsCanonicalBase1024Bytes``; suffix.go; math.go), release-1.32, including its quirks:

- a quantity already in canonical form keeps the text as sent (ParseQuantity's fast path caches
  the string), so ``+1Gi`` and ``01Gi`` come back as sent;
- BinarySI values are capped at 2^63-1; a value is rounded *up* to the nano (``0.1n`` -> ``1n``);
- a DecimalSI exponent with no suffix (``1000E`` = 1e21) loses its suffix (``1``), as upstream.

Values are kept as ``unscaled * 10**exponent`` with Python ints (as inf.Dec does), so a hostile
``1e999999999`` costs nothing to canonicalise.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

DECIMAL_EXPONENT = "DecimalExponent"
BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"

# The messages of quantity.go's ErrFormatWrong, ErrNumeric and ErrSuffix, verbatim.
_SPLIT_RE = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
FORMAT_WRONG = f"quantities must match the regular expression '{_SPLIT_RE}'"
NUMERIC = "unable to parse numeric part of quantity"
SUFFIX = "unable to parse quantity's suffix"

_DIGITS = "0123456789"
_SUFFIX_CHARS = "eEinumkKMGTP"
_DEC_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BIN_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC_BY_EXPONENT = {e: s for s, e in _DEC_SUFFIXES.items()}
_BIN_BY_EXPONENT = {e: s for s, e in _BIN_SUFFIXES.items()}
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
# math.go maxInt64Factors (18 through release-1.32): the digits the int64 fast path takes.
_MAX_INT64_FACTORS = 18
_NANO = -9
# A bound of ours, not the API server's: longer numbers are refused as not numeric.
MAX_DIGITS = 1000


class QuantityError(ValueError):
    """Not a quantity; the message is the API server's own."""


@dataclass(frozen=True)
class Quantity:
    """``unscaled * 10**exponent``, with the format it prints in and, when the text it was parsed
    from was already canonical, that text (kept as the API server keeps it)."""

    unscaled: int
    exponent: int
    format: str
    text: str | None = None

    @property
    def value(self) -> Fraction:
        """The exact value (bounded exponents only: callers compare memory sizes)."""
        if abs(self.exponent) > 64:
            raise QuantityError(f"quantity out of range: {self.canonical()}")
        return Fraction(self.unscaled) * Fraction(10) ** self.exponent

    def canonical(self) -> str:
        """What a kube-apiserver writes back (``MarshalJSON``)."""
        return self.text if self.text else _canonicalize(self)


def _scan(text: str) -> tuple[bool, str, str, str, str]:
    """quantity.go ``parseQuantityString``: (positive, value, num, denom, suffix)."""
    positive, pos, end = True, 0, len(text)
    if pos < end and text[0] in "+-":
        positive = text[0] == "+"
        pos += 1
    while True:  # leading zeros
        if pos >= end:
            return positive, "0", "0", "", ""
        if text[pos] != "0":
            break
        pos += 1
    i = pos
    while i < end and text[i] in _DIGITS:
        i += 1
    num = text[pos:i] or "0"
    if i >= end:
        return positive, text, num, "", ""
    pos, denom = i, ""
    if text[pos] == ".":
        pos += 1
        i = pos
        while i < end and text[i] in _DIGITS:
            i += 1
        denom = text[pos:i]
        if i >= end:
            return positive, text, num, denom, ""
        pos = i
    value, suffix_start = text[:pos], pos
    i = pos
    while i < end and text[i] in _SUFFIX_CHARS:
        i += 1
    if i >= end:
        return positive, value, num, denom, text[suffix_start:]
    pos = i + 1 if text[i] in "+-" else i
    i = pos
    while i < end and text[i] in _DIGITS:
        i += 1
    if i >= end:
        return positive, value, num, denom, text[suffix_start:]
    raise QuantityError(FORMAT_WRONG)


def _go_parse_int64(text: str) -> int:
    """strconv.ParseInt(text, 10, 64): an optional sign and ASCII digits, within int64."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or any(c not in _DIGITS for c in body):
        raise ValueError(text)
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(text)
    return value


def _interpret(suffix: str) -> tuple[int, int, str]:
    """suffix.go ``interpret``: (base, exponent, format)."""
    if suffix in _DEC_SUFFIXES:
        return 10, _DEC_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BIN_SUFFIXES:
        return 2, _BIN_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        try:
            parsed = _go_parse_int64(suffix[1:])
        except ValueError:
            raise QuantityError(SUFFIX) from None
        exponent = (parsed + 2**31) % 2**32 - 2**31  # Go's int32(parsed) truncates
        return 10, exponent, DECIMAL_EXPONENT
    raise QuantityError(SUFFIX)


def parse(text: str) -> Quantity:
    """quantity.go ``ParseQuantity`` (raises :class:`QuantityError` with the server's message)."""
    if not text:
        raise QuantityError(FORMAT_WRONG)
    if text == "0":
        return Quantity(0, 0, DECIMAL_SI, "0")
    positive, value, num, denom, suffix = _scan(text)
    base, exponent, fmt = _interpret(suffix)

    precision, scale, mantissa = 0, 0, 1
    if fmt in (DECIMAL_EXPONENT, DECIMAL_SI):
        scale = exponent
        precision = _MAX_INT64_FACTORS - (len(num) + len(denom))
    elif exponent >= 0 and not denom:
        mantissa = 1 << exponent
        # float32(exponent)*3/10 truncated, as Go's int32() of it
        precision = 15 - len(num) - int(exponent * 3 / 10) - 1
    else:
        precision = -1

    if precision >= 0:
        scale -= len(denom)
        if scale >= _NANO:
            shifted = num + denom
            try:
                parsed = _go_parse_int64(shifted)
            except ValueError:
                raise QuantityError(NUMERIC) from None
            result = parsed * mantissa
            if _INT64_MIN <= result <= _INT64_MAX:  # int64Multiply did not overflow
                if not positive:
                    result = -result
                # "if the number is in canonical form, reuse the string"
                if fmt == BINARY_SI:
                    keep = exponent % 10 == 0 and parsed & 0x07 != 0
                else:
                    keep = scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"
                return Quantity(result, scale, fmt, text if keep else None)

    # The inf.Dec path: exact decimal arithmetic, then the bounds.
    unscaled, dec_scale = _dec_from_string(value)
    if base == 10:
        dec_scale -= exponent
    else:
        unscaled <<= exponent
    negative = unscaled < 0
    unscaled = abs(unscaled)
    if unscaled:
        unscaled, dec_scale = _round_up(unscaled, dec_scale, 9)
    if fmt == BINARY_SI and _cmp_int(unscaled, dec_scale, _INT64_MAX) > 0:
        unscaled, dec_scale = _INT64_MAX, 0
    if fmt == BINARY_SI and unscaled and _cmp_int(unscaled, dec_scale, 1) < 0:
        fmt = DECIMAL_SI
    return Quantity(-unscaled if negative else unscaled, -dec_scale, fmt)


def _dec_from_string(value: str) -> tuple[int, int]:
    """inf.Dec ``SetString``: an optional sign, digits with at most one point; (unscaled, scale)."""
    body = value[1:] if value[:1] in ("+", "-") else value
    whole, dot, frac = body.partition(".")
    digits = whole + frac
    if not digits or any(c not in _DIGITS for c in digits) or "." in frac:
        raise QuantityError(NUMERIC)
    if len(digits) > MAX_DIGITS:
        # Go would take it; we bound it (Python refuses int() of 4300+ digits anyway).
        raise QuantityError(NUMERIC)
    unscaled = int(digits)
    return (-unscaled if value.startswith("-") else unscaled), len(frac) if dot else 0


def _round_up(unscaled: int, scale: int, to_scale: int) -> tuple[int, int]:
    """inf.Dec ``Round(.., to_scale, RoundUp)`` of a positive value: away from zero."""
    if scale <= to_scale:
        return unscaled, scale
    drop = scale - to_scale
    if drop > len(str(unscaled)):  # smaller than one unit at to_scale: rounds up to one unit
        return 1, to_scale
    divisor = 10**drop
    quotient, remainder = divmod(unscaled, divisor)
    return quotient + (1 if remainder else 0), to_scale


def _cmp_int(unscaled: int, scale: int, n: int) -> int:
    """Compare ``unscaled * 10**-scale`` (non-negative) with the positive integer ``n``, without
    building powers of ten larger than the operands (a hostile exponent stays cheap)."""
    digits = len(str(unscaled)) if unscaled else 0
    if unscaled == 0:
        return -1
    if scale <= 0:
        if digits - scale > len(str(n)) + 1:
            return 1
        left = unscaled * 10**-scale
        return (left > n) - (left < n)
    if digits - scale <= 0:  # below 1
        return -1
    right = n * 10**scale
    return (unscaled > right) - (unscaled < right)


def _strip(value: int, factor: int) -> tuple[int, int]:
    """math.go ``removeInt64Factors``: value == result * factor**times."""
    times, result = 0, abs(value)
    while result >= factor and result % factor == 0:
        result //= factor
        times += 1
    return (-result if value < 0 else result), times


def _canonical_decimal(q: Quantity) -> tuple[str, int]:
    """amount.go ``AsCanonicalBytes``: digits and an exponent that is a multiple of 3."""
    amount, times = _strip(q.unscaled, 10)
    exponent = q.exponent + times
    remainder = exponent % 3
    if remainder:
        amount *= 10**remainder
        exponent -= remainder
    return str(amount), exponent


def _canonicalize(q: Quantity) -> str:
    """quantity.go ``CanonicalizeBytes``."""
    if q.unscaled == 0:
        return "0"
    fmt = q.format
    rounded = q.unscaled
    if fmt == BINARY_SI:
        if _cmp_int(abs(q.unscaled), -q.exponent, 1024) < 0:
            fmt = DECIMAL_SI  # "This avoids rounding and hopefully confusion, too."
        elif q.exponent >= 0:
            rounded = q.unscaled * 10**q.exponent
        else:
            whole, remainder = divmod(abs(q.unscaled), 10**-q.exponent)
            if remainder:
                fmt = DECIMAL_SI  # "Don't lose precision-- show as DecimalSI"
            else:
                rounded = -whole if q.unscaled < 0 else whole
    elif fmt not in (DECIMAL_SI, DECIMAL_EXPONENT):
        fmt = DECIMAL_EXPONENT
    if fmt == BINARY_SI:
        amount, times = _strip(rounded, 1024)
        return str(amount) + _BIN_BY_EXPONENT.get(times * 10, "")
    number, exponent = _canonical_decimal(q)
    if fmt == DECIMAL_SI:
        # An exponent with no SI suffix (above E) prints no suffix at all, as upstream does.
        return number + _DEC_BY_EXPONENT.get(exponent, "")
    return number + (f"e{exponent}" if exponent else "")


def from_json(value: Any) -> Quantity:
    """A quantity as it arrives in a JSON document: a string, a number, or null (which the API
    server decodes as a zero quantity and writes back as ``0``)."""
    if value is None:
        return Quantity(0, 0, DECIMAL_SI)
    if isinstance(value, bool):
        raise QuantityError(FORMAT_WRONG)
    if isinstance(value, int):
        return parse(str(value))
    if isinstance(value, float):
        # Python has already read the JSON number; its shortest repr is the closest to the
        # bytes Go's UnmarshalJSON would have seen (1e9 as a bare number differs: 1G, not 1e9).
        return parse(repr(value))
    if isinstance(value, str):
        return parse(value.strip())  # UnmarshalJSON trims spaces
    raise QuantityError(FORMAT_WRONG)


def canonical(value: Any) -> str:
    """The canonical text of a JSON quantity value; :class:`QuantityError` when it is none."""
    return from_json(value).canonical()


def canonical_or_same(value: Any) -> Any:
    """``canonical(value)``, or the value untouched when it is not a quantity."""
    try:
        return canonical(value)
    except QuantityError:
        return value


def round_up_milli(q: Quantity) -> Quantity:
    """``Quantity.RoundUp(Milli)``, which core/v1's ``SetDefaults_ResourceList`` applies to every
    value of a ResourceList ("We round up resource values to milli scale to maintain API
    compatibility", pkg/apis/core/v1/defaults.go): finer values round away from zero."""
    if q.exponent >= -3:
        return q
    whole, remainder = divmod(abs(q.unscaled), 10 ** (-3 - q.exponent))
    whole += 1 if remainder else 0
    return Quantity(-whole if q.unscaled < 0 else whole, -3, q.format)


def resource_list_value(value: Any) -> str:
    """A ResourceList value as the API server stores it: decoded, defaulted, canonical."""
    return round_up_milli(from_json(value)).canonical()


def to_bytes(value: Any) -> float:
    """A memory quantity's value as a float (bytes); :class:`QuantityError` when it is none."""
    return float(from_json(value).value)


# -- where quantities live in a pod spec -----------------------------------------------------


def pod_spec_quantity_maps(spec: Any) -> list[dict[str, Any]]:
    """The ResourceList maps of a PodSpec (in place): containers' (init, ephemeral) limits and
    requests, the pod-level ``resources`` and ``overhead``."""
    maps: list[dict[str, Any]] = []
    if not isinstance(spec, dict):
        return maps

    def resources(block: Any) -> None:
        if isinstance(block, dict):
            for section in ("limits", "requests"):
                if isinstance(block.get(section), dict):
                    maps.append(block[section])

    for key in ("containers", "initContainers", "ephemeralContainers"):
        containers = spec.get(key)
        for container in containers if isinstance(containers, list) else []:
            if isinstance(container, dict):
                resources(container.get("resources"))
    resources(spec.get("resources"))
    if isinstance(spec.get("overhead"), dict):
        maps.append(spec["overhead"])
    return maps


def canonical_resource_list(block: dict[str, Any], *, strict: bool = False) -> None:
    """A ResourceList in place, as stored; a value that is no quantity is left as it is, or
    raises :class:`QuantityError` when ``strict`` (the API server's decoding)."""
    for name, value in list(block.items()):
        try:
            block[name] = resource_list_value(value)
        except QuantityError:
            if strict:
                raise


def canonical_pod_spec(spec: Any, *, strict: bool = False) -> None:
    """A PodSpec's ResourceLists in canonical form, in place (see canonical_resource_list)."""
    for block in pod_spec_quantity_maps(spec):
        canonical_resource_list(block, strict=strict)
