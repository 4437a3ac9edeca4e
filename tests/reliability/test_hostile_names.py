"""Model names and reasons with shell metacharacters, newlines, escape sequences or 300
characters: a name is refused with a message (exit 2, nothing changed); a reason is stored safely
(one line, bounded, no control characters) and the annotations, the history and the Events stay
valid, whatever a terminal later shows of them."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Sandbox

HOSTILE_NAMES = [
    "org/m; rm -rf /",
    "org/m$(id)",
    "org/m`id`",
    "org/m|tee x",
    "org/m&x",
    "org/m>x",
    "org/m'x",
    'org/m"x',
    "org/m\\x",
    "org/m\nx",
    "org/m\x1b[31m",
    "org/" + "m" * 300,
    "",
]


@pytest.mark.e2e
def test_hostile_model_and_served_names_are_refused_and_change_nothing(sandbox: Sandbox) -> None:
    before = sandbox.versions()
    for name in HOSTILE_NAMES:
        for args in (("deploy", name), ("deploy", "org/ok", "--served-name", name)):
            result = sandbox.cli("-o", "json", *args)
            assert result.code == 2, (name, result.err)
            message = result.json()["error"]["message"]
            assert "MODEL" in message or "--served-name" in message, message
            assert "\n" not in message and len(message) < 300, message
            assert "\x1b" not in result.out + result.err
            assert "Traceback" not in result.err
    assert sandbox.versions() == before
    assert sandbox.history() == []


HOSTILE_REASONS = [
    "line one\nline two\r\n\tline three",
    "$(rm -rf /); `id`; a | b && c > /etc/passwd < x",
    "r" * 300,
    "ünïcödé 🚀 中文",
    "\x1b]0;owned\x07\x1b[31mred\x1b[0m \u202egnp.exe \x00 nul",
    '{"json": "inside"} </script> <!-- -->',
]


@pytest.mark.e2e
def test_hostile_reasons_are_stored_safely(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    for index, reason in enumerate(HOSTILE_REASONS):
        command = "flip" if index % 2 == 0 else "flip-back"
        result = box.cli("-o", "json", command, "--reason", reason)
        assert result.code == 0, (reason, result.err)
        stored = box.get("service", "gx10-model")["metadata"]["annotations"]["gx10slots.io/reason"]
        assert "\n" not in stored and "\r" not in stored
        assert all(c.isprintable() for c in stored), repr(stored)
        assert len(stored) <= 256
        newest = box.history()[0]
        assert newest["reason"] == stored
        # What survives is the reason's printable text, whitespace collapsed.
        for word in ("line", "rm -rf", "ünïcödé", "red", '"json"'):
            if word in reason:
                assert word in stored
    # The objects stay valid for every client: kubectl parses them, the CLI renders them.
    events = box.kubectl("get", "events", "-o", "json")
    assert events.returncode == 0, events.stderr
    assert len(json.loads(events.stdout)["items"]) >= len(HOSTILE_REASONS)
    flag = box.kubectl("get", "service", "gx10-model", "-o", "json")
    assert json.loads(flag.stdout)["metadata"]["annotations"]["gx10slots.io/active"] == "blue"
    table = box.cli("history")
    assert table.code == 0
    assert "\x1b" not in table.out and "\x07" not in table.out and "\u202e" not in table.out
    listing = box.cli("-o", "json", "history", "-l", "50").json()
    assert len(listing) == len(HOSTILE_REASONS) + 1  # and the fixture's deploy


@pytest.mark.e2e
def test_escape_sequences_planted_in_the_cluster_never_reach_the_terminal(
    two_warm_slots: Sandbox,
) -> None:
    # Someone with write access to the history ConfigMap (not through slots) plants escapes.
    box = two_warm_slots
    entries = box.history()
    entries[0]["reason"] = "\x1b]0;owned\x07\x1b[2J cleared"
    entries[0]["model"] = "m\x1b[31m"
    cm = box.get("configmap", "gx10slots-history")
    cm["data"]["entries"] = json.dumps(entries)
    box.api("PUT", "/api/v1/namespaces/gx10/configmaps/gx10slots-history", cm)
    table = box.cli("history")
    assert table.code == 0
    assert "\x1b" not in table.out and "\x07" not in table.out
    assert "\\x1b" in table.out  # shown, escaped
    status = box.cli("status")
    assert status.code == 0 and "\x1b" not in status.out
