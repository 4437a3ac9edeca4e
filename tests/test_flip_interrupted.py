"""A stop after a flip finished says production is on the new slot: the steps after the run is
done (asking the fallback's engine to keep its model loaded) are no "production untouched"."""

from __future__ import annotations

from typing import Any

import pytest

from gx10slots.app import App, GlobalOptions
from gx10slots.config import parse_config
from gx10slots.errors import Interrupted
from gx10slots.flip import run as run_mod
from gx10slots.flip.rules import FlipPlan
from gx10slots.flip.run import Switched, flip
from tests.helpers.config import valid

PLAN = FlipPlan(
    mode="flip",
    source="blue",
    target="green",
    target_model="new-model",
    source_model="old-model",
    target_served_name="new-model",
    patch=[],
)


class _Lock:
    holder = "alice@gx10:42"
    command = "slots deploy new-model --flip"

    def check(self) -> None:
        pass


def test_a_stop_while_the_fallback_is_asked_to_keep_its_model_says_production_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = App(GlobalOptions())
    app.__dict__["config"] = parse_config(valid())  # the cached property, without a file
    monkeypatch.setattr("gx10slots.flip.unfinished.settle_unfinished", lambda *a, **kw: None)
    monkeypatch.setattr(
        run_mod, "switch", lambda *a, **kw: Switched(PLAN, {"metadata": {"name": "f"}}, "T")
    )
    monkeypatch.setattr(run_mod, "verify", lambda *a: (True, "answered as green"))
    monkeypatch.setattr(run_mod, "record_flip", lambda *a, **kw: [])
    monkeypatch.setattr(run_mod, "mark_done", lambda *a, **kw: None)

    def stopped(app: App, slot: str) -> str | None:
        raise Interrupted("terminated by SIGTERM")  # arrives while the engine is asked

    monkeypatch.setattr(run_mod, "keep_loaded", stopped)
    lock: Any = _Lock()
    with pytest.raises(Interrupted) as caught:
        flip(app, "flip", force=False, reason=None, dry_run=False, lock=lock)
    # Reported as it is, so `deploy --flip` passes it on instead of "production untouched".
    assert caught.value.reported
    assert "production is on green" in caught.value.message, caught.value.message


def test_a_stop_while_deploy_flip_gives_back_its_lease_says_production_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from collections.abc import Iterator
    from contextlib import contextmanager

    from gx10slots.deploy import run as deploy_mod
    from gx10slots.deploy.result import Deployed
    from gx10slots.flip.result import FlipResult

    app = App(GlobalOptions())
    app.__dict__["config"] = parse_config(valid())

    @contextmanager
    def hold(app: App, **kw: Any) -> Iterator[Any]:
        yield _Lock()
        raise Interrupted("terminated by SIGTERM")  # arrives while the lease is given back

    flipped = FlipResult.of(PLAN, "flip", detail="answered as green")
    done = Deployed("green", "new-model", "new-model", "rev-2", True, flip=flipped)
    monkeypatch.setattr(deploy_mod, "hold", hold)
    monkeypatch.setattr(deploy_mod, "probe_access", lambda app: (None, None))
    monkeypatch.setattr("gx10slots.ops.smoke.check_report_dir", lambda where: None)
    monkeypatch.setattr(deploy_mod, "_deploy_locked", lambda *a: done)
    request = deploy_mod.DeployRequest(model="new-model", flip=True)
    with pytest.raises(Interrupted) as caught:
        deploy_mod.deploy(app, request)
    message = caught.value.message
    assert "production untouched" not in message, message
    assert "production is on green" in message, message
