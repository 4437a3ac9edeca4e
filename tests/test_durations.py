from __future__ import annotations

import pytest

from gx10slots.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        (" 2M ", 120),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "ten minutes", "5d", "1h 30m", "-5s", "s"])
def test_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"use e\.g\. 90s, 15m, 1h"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.25, 1, 59, 90, 600, 1800, 3600, 5400, 3661])
def test_format_reads_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
