"""Webhook notifications (gx10slots.notify) against real HTTP receivers on 127.0.0.1: what
arrives, what a failing or hanging receiver costs the caller (a warning, a bounded wait, never an
exception), and that a webhook URL never shows."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from gx10slots import notify as notify_mod
from gx10slots import scrub
from gx10slots.config import Config, parse_config
from gx10slots.errors import ConfigError
from gx10slots.notify import BUDGET_S, EVENTS, notify, payload, summary
from tests.reliability.test_hostile_engine import endless, hostile
from tests.test_config import valid
from tests.webhook_receiver import closed_port_url, receiver

# Generous: the budget plus a thread join's grace and a loaded CI machine's scheduling.
BOUND_S = BUDGET_S + 2.0
FLIP = {"from": "blue", "to": "green", "model": "org/model-b", "by": "alice", "result": "ok"}


def config_with(*webhooks: dict[str, Any]) -> Config:
    return parse_config({**valid(), "notify": {"webhooks": list(webhooks)}})


def test_a_flip_reaches_the_webhook_as_json_with_a_one_line_text() -> None:
    with receiver() as hook:
        warnings = notify(config_with({"url": hook.url}), "flip", {**FLIP, "reason": "new model"})
    assert warnings == []
    [got] = hook.received
    assert got.headers["Content-Type"] == "application/json"
    body = got.body
    assert body["event"] == "flip"
    assert (body["from"], body["to"], body["model"], body["by"]) == (
        "blue",
        "green",
        "org/model-b",
        "alice",
    )
    assert body["namespace"] == "gx10" and body["at"]
    assert body["text"] == (
        "[gx10] production flipped blue → green (model org/model-b) by alice: new model"
    )
    assert "\n" not in body["text"]


def test_every_webhook_gets_the_event_and_the_events_filter_chooses() -> None:
    with receiver() as everything, receiver() as reverts_only:
        config = config_with(
            {"url": everything.url}, {"url": reverts_only.url, "events": ["auto-revert"]}
        )
        assert notify(config, "flip", FLIP) == []
        assert notify(config, "auto-revert", {**FLIP, "from": "green", "to": "blue"}) == []
    assert everything.events() == ["flip", "auto-revert"]
    assert reverts_only.events() == ["auto-revert"]


def test_no_webhooks_sends_nothing_and_says_nothing() -> None:
    assert notify(parse_config(valid()), "flip", FLIP) == []


def test_a_receiver_answering_500_is_retried_briefly_then_a_warning_without_the_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with receiver("fail") as hook:
        started = time.monotonic()
        warnings = notify(config_with({"url": hook.url}), "flip", FLIP)
        elapsed = time.monotonic() - started
    assert len(hook.received) == notify_mod.ATTEMPTS  # retried, then given up
    assert elapsed < BOUND_S
    assert warnings == [
        "notification not delivered to webhook #1 (127.0.0.1): HTTP 500 after 3 attempts"
    ]
    err = capsys.readouterr().err
    assert "warning: notification not delivered to webhook #1" in err
    assert hook.url not in err and "SECRET" not in err


def test_a_hanging_receiver_costs_at_most_the_budget() -> None:
    with receiver("hang") as hook, receiver() as healthy:
        started = time.monotonic()
        warnings = notify(config_with({"url": hook.url}, {"url": healthy.url}), "flip", FLIP)
        elapsed = time.monotonic() - started
    assert elapsed < BOUND_S
    assert len(warnings) == 1 and warnings[0].startswith(
        "notification not delivered to webhook #1 (127.0.0.1): "
    )
    assert "timed out" in warnings[0] or "no answer" in warnings[0]
    assert healthy.events() == ["flip"]  # the hanging one did not hold the other back


def status_line_one_byte_at_a_time(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    for byte in b"HTTP/1.1 200 OK\r\n" * 100:
        if stop.wait(0.3):
            return
        conn.sendall(bytes([byte]))


def test_a_receiver_that_answers_one_byte_at_a_time_is_cut_off_at_the_budget() -> None:
    # Each read completes well within its timeout; only the overall budget ends it.
    with hostile(status_line_one_byte_at_a_time) as url:
        started = time.monotonic()
        [warning] = notify(config_with({"url": url + "/secret-path"}), "flip", FLIP)
        elapsed = time.monotonic() - started
    assert elapsed < BOUND_S
    assert warning == "notification not delivered to webhook #1 (127.0.0.1): no answer within 2 s"


def test_the_answer_body_is_never_read() -> None:
    with hostile(endless) as url:  # 200, then a body that never ends
        started = time.monotonic()
        assert notify(config_with({"url": url + "/secret-path"}), "flip", FLIP) == []
        assert time.monotonic() - started < BOUND_S


def test_a_client_error_is_not_retried_and_a_redirect_not_followed() -> None:
    with receiver("not-found") as missing, receiver("redirect") as moved:
        warnings = notify(config_with({"url": missing.url}, {"url": moved.url}), "flip", FLIP)
    assert len(missing.received) == 1 and len(moved.received) == 1
    assert warnings == [
        "notification not delivered to webhook #1 (127.0.0.1): HTTP 404",
        "notification not delivered to webhook #2 (127.0.0.1): HTTP 302 (a redirect; not followed)",
    ]


def test_nobody_listening_is_a_warning() -> None:
    url = closed_port_url()
    started = time.monotonic()
    [warning] = notify(config_with({"url": url}), "flip", FLIP)
    assert time.monotonic() - started < BOUND_S
    assert warning.endswith("connection failed after 3 attempts")
    assert url not in warning


def test_a_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_with({"url_env": "TEAM_WEBHOOK"})
    with receiver() as hook:
        monkeypatch.setenv("TEAM_WEBHOOK", hook.url + "\n")  # as a Secret's file often ends
        assert notify(config, "flip-back", {**FLIP, "from": "green", "to": "blue"}) == []
        assert hook.events() == ["flip-back"]
        monkeypatch.delenv("TEAM_WEBHOOK")
        warnings = notify(config, "flip", FLIP)
    assert warnings == [
        "notification not delivered to webhook #1 (from $TEAM_WEBHOOK): environment variable "
        "TEAM_WEBHOOK is not set"
    ]


def test_a_non_http_url_in_the_environment_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEAM_WEBHOOK", "file:///etc/passwd-token-value")
    [warning] = notify(config_with({"url_env": "TEAM_WEBHOOK"}), "flip", FLIP)
    assert warning.endswith("not an http:// or https:// URL (not shown)")
    assert "passwd" not in warning


def test_without_waiting_the_caller_returns_at_once_and_the_post_still_arrives() -> None:
    with receiver("hang") as slow, receiver() as hook:
        started = time.monotonic()
        assert (
            notify(config_with({"url": slow.url}, {"url": hook.url}), "flip", FLIP, wait=False)
            == []
        )
        assert time.monotonic() - started < 1.0  # generous: no network wait at all
        hook.wait_for(1)
    assert hook.events() == ["flip"]


def test_the_text_is_safe_for_slack_and_carries_no_credential() -> None:
    scrub.remember("sk-live-engine-key-123")
    fields = {
        "from": "blue",
        "to": "green",
        "model": "<!channel> & friends",
        "by": "mallory",
        "result": "failed",
        "detail": "engine said: bad key sk-live-engine-key-123\n\x1b[2Jcleared",
    }
    body = payload("flip", fields, namespace="gx10", at="2026-01-01T00:00:00Z")
    text = body["text"]
    assert text.startswith("[gx10] flip blue → green FAILED by mallory: engine said: bad key")
    assert "<!channel>" not in summary("flip", {**fields, "result": "ok"}, namespace="gx10")
    assert "&lt;!channel&gt; &amp; friends" in summary(
        "flip", {**fields, "result": "ok"}, namespace="gx10"
    )
    assert "sk-live-engine-key-123" not in str(body)
    assert "\x1b" not in text and "\n" not in text
    assert len(text) <= notify_mod.TEXT_MAX_CHARS


@pytest.mark.parametrize(
    ("event", "fields", "text"),
    [
        (
            "deploy",
            {"to": "green", "model": "m", "by": "a", "result": "ok", "detail": "smoke passed"},
            "[gx10] deployed m into slot green by a: smoke passed",
        ),
        (
            "deploy",
            {"to": "green", "model": "m", "by": "a", "result": "failed", "detail": "rollout"},
            "[gx10] deploy of m into slot green FAILED by a: rollout",
        ),
        (
            "flip-back",
            {"from": "green", "to": "blue", "by": "a", "result": "ok", "reason": "r"},
            "[gx10] production flipped back green → blue by a: r",
        ),
        (
            "auto-revert",
            {"from": "green", "to": "blue", "model": "m", "by": "guard:x", "reason": "wedged"},
            "[gx10] production automatically reverted green → blue (model m) by guard:x: wedged",
        ),
        (
            "would-revert",
            {"from": "green", "to": "blue", "reason": "stalled"},
            "[gx10] would revert production green → blue (observe mode): stalled",
        ),
        (
            "smoke-failed",
            {"slot": "green", "model": "m", "detail": "tool_call: no tool call"},
            "[gx10] smoke of slot green (model m) FAILED: tool_call: no tool call",
        ),
    ],
)
def test_each_event_has_its_summary(event: str, fields: dict[str, Any], text: str) -> None:
    assert event in EVENTS
    assert summary(event, fields, namespace="gx10") == text


@pytest.mark.parametrize(
    ("webhook", "message"),
    [
        ({}, "expected exactly one of url"),
        ({"url": "http://a", "url_env": "X"}, "expected exactly one of url"),
        ({"url": "ftp://host/secret-path"}, "expected an http:// or https:// URL"),
        ({"url": "https://host/with space"}, "expected an http:// or https:// URL"),
        ({"url_env": "not a name"}, "expected an environment variable name"),
        ({"url": "http://a", "events": ["flip", "reboot"]}, "expected a list drawn from deploy"),
        ({"url": "http://a", "colour": "red"}, "unknown key"),
    ],
)
def test_config_mistakes_name_the_webhook_and_never_quote_its_url(
    webhook: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        config_with({"url": "http://ok"}, webhook)
    assert "notify.webhooks[1]" in info.value.message
    assert message in info.value.message
    assert "secret-path" not in info.value.message


def test_the_config_repr_never_holds_a_webhook_url() -> None:
    config = config_with({"url": "https://hooks.example/T0/B0/secret-token-zz"})
    assert "secret-token-zz" not in repr(config)
