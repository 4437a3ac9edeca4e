"""Notifications from the CLI on a real sandbox: deploy, flip, flip-back and a failed smoke reach
a webhook receiver on 127.0.0.1 with the right event and text; a receiver that hangs or answers
500 costs each command a warning and at most the notification budget, never its result; a URL
from the environment works; no webhook URL ever shows."""

from __future__ import annotations

import time

import pytest

from gx10slots.notify import BUDGET_S
from tests.e2e.conftest import Sandbox
from tests.webhook_receiver import receiver

pytestmark = pytest.mark.e2e

# Generous: a flip on the sandbox takes a few seconds; a hanging webhook adds BUDGET_S at most.
FLIP_BOUND_S = 30.0 + BUDGET_S


def test_deploy_flip_flip_back_and_a_failed_smoke_reach_the_webhooks(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = sandbox
    with receiver() as team, receiver("hang") as hanging, receiver("fail") as failing:
        monkeypatch.setenv("GX10_TEAM_WEBHOOK", team.url)
        box.set_config(
            "notify",
            webhooks=[
                {"url_env": "GX10_TEAM_WEBHOOK"},
                {"url": hanging.url, "events": ["flip", "flip-back"]},
                {"url": failing.url, "events": ["flip-back"]},
            ],
        )
        results = []
        deployed = box.cli("-o", "json", "deploy", "sandbox/ok", "--served-name", "sandbox-v2")
        results.append(deployed)
        assert deployed.code == 0, deployed.err

        started = time.monotonic()
        flipped = box.cli("-o", "json", "flip", "--reason", "new model for the team")
        assert time.monotonic() - started < FLIP_BOUND_S
        results.append(flipped)
        assert flipped.code == 0, flipped.err
        assert box.answering_slot() == "green"

        started = time.monotonic()
        back = box.cli("-o", "json", "flip-back")
        assert time.monotonic() - started < FLIP_BOUND_S
        results.append(back)
        assert back.code == 0, back.err
        assert box.answering_slot() == "blue"

        # A model that fails its smoke, into green (production's fallback now: deliberately).
        box.set_smoke(probe_timeout="2s")
        failed = box.cli("deploy", "sandbox/garbage", "--served-name", "x", "--replace-fallback")
        results.append(failed)
        assert failed.code == 1
        assert box.answering_slot() == "blue"

    assert team.events() == ["deploy", "flip", "flip-back", "smoke-failed", "deploy"]
    deploy, flip, flip_back, smoke_failed, deploy_failed = team.bodies()
    assert (deploy["to"], deploy["model"], deploy["result"]) == ("green", "sandbox/ok", "ok")
    assert deploy["text"].startswith("[gx10] deployed sandbox/ok into slot green by ")
    assert (flip["from"], flip["to"], flip["result"]) == ("blue", "green", "ok")
    assert flip["text"].startswith("[gx10] production flipped blue → green (model sandbox/ok) by ")
    assert flip["text"].endswith(": new model for the team")
    assert (flip_back["from"], flip_back["to"]) == ("green", "blue")
    assert flip_back["text"].startswith("[gx10] production flipped back green → blue")
    assert (smoke_failed["slot"], smoke_failed["model"]) == ("green", "sandbox/garbage")
    assert smoke_failed["text"].startswith(
        "[gx10] smoke of slot green (model sandbox/garbage) FAILED: "
    )
    assert deploy_failed["result"] == "failed"
    assert deploy_failed["text"].startswith(
        "[gx10] deploy of sandbox/garbage into slot green FAILED"
    )

    # The broken receivers were tried, and cost a warning each, not the result.
    # (each tried again within the budget after its first attempt timed out)
    assert list(dict.fromkeys(hanging.events())) == ["flip", "flip-back"]
    assert failing.events() == ["flip-back"] * 3  # retried, then given up
    assert "warning: notification not delivered to webhook #2 (127.0.0.1)" in flipped.err
    assert (
        "warning: notification not delivered to webhook #3 (127.0.0.1): HTTP 500 after 3 attempts"
        in back.err
    )
    shown = "".join(r.out + r.err for r in results)
    for url in (team.url, hanging.url, failing.url):
        assert url not in shown
    assert "SECRET" not in shown and "xoxb" not in shown
