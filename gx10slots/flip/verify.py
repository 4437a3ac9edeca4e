"""Verification after a flag write: production reaches the target slot, proved by what the
cluster shows (the flag kind's ``routes_to``) and by answers through production that only the
target can give. Read-only: switching back is the caller's decision.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from gx10slots import console
from gx10slots.app import App
from gx10slots.errors import (
    Interrupted,
    SlotsError,
)
from gx10slots.flags import kind_of
from gx10slots.flip.rules import clean_reason, distinguishing_names
from gx10slots.ops.engine import probe_access, production_endpoint, quick_probe
from gx10slots.ops.read import read_flag_object
from gx10slots.servednames import identity_name
from gx10slots.slots import (
    CHANGED_BY,
    SlotState,
    flag_state,
    other_slot,
)

VERIFY_PROBE_TIMEOUT_S = 10.0


# Verification: production must reach the target slot's *pods*, not merely a model with the
# target's name (both slots usually serve the same names). The evidence, re-read every round:
# - the flag still names the target (someone else may have moved it: then stand down at once);
# - the target can still serve (not scaled to 0, a ready pod): if not, fail at once;
# - Service flag: the production Service's EndpointSlices (discovery.k8s.io/v1; core/v1
#   Endpoints are deprecated) list ready endpoints, all of them the target's pods;
# - answers through production that only the target can give: /v1/models on several fresh
#   connections (kube-proxy balances per connection) lists the target's identity name
#   (gx10slots/<slot>, see servednames.py) and never the other slot's, then a known-answer request
#   naming that identity. A router that did not switch shows the old identity (or a 404).
# Consecutive 5xx through production, or a target that answers as itself but fails its known
# answer round after round, is decisive too: the window is only for routers that are slow.
VERIFY_CONNECTIONS = 3
DECISIVE_FAILURES = 3
# ...and for at least this long: a gateway that answers 503 while it reconfigures for a second or
# two is a slow router, not a failing target.
DECISIVE_AFTER_S = 3.0
VERIFY_ROUND_S = 0.2
MODELS_BODY_CAP = 1024 * 1024  # a /v1/models answer is read no further (hostile peers)
STOOD_DOWN = "someone else moved the flag"


def _slot_states(app: App, slot: str) -> tuple[SlotState, SlotState]:
    from gx10slots.ops.read import read_deployment
    from gx10slots.slots import slot_state

    config = app.config
    other = other_slot(slot)
    return (
        slot_state(slot, read_deployment(app, slot), config, None),
        slot_state(other, read_deployment(app, other), config, None),
    )


def _flag_moved(app: App, slot: str) -> str | None:
    """Why the flag no longer names ``slot`` (someone else moved it), or None."""
    try:
        obj = read_flag_object(app)
    except Interrupted:
        raise
    except SlotsError:
        return None  # unreadable this round: the other evidence decides, the next round re-reads
    value = flag_state(obj, app.config).value
    if value == slot:
        return None
    annotations = obj.get("metadata", {}).get("annotations") or {}
    who = annotations.get(CHANGED_BY)
    by = f" (last written by {clean_reason(who)[:80]})" if who else ""
    return (
        f"{STOOD_DOWN} to {clean_reason(str(value))[:40] or 'nothing'} during verification{by}: "
        "standing down"
    )


def _target_gone(target: SlotState) -> str | None:
    if not target.exists:
        return f"slot {target.name}'s Deployment is gone"
    if target.replicas < 1:
        return f"slot {target.name} was scaled to 0 after the switch"
    if target.generation_observed and target.available < 1:
        return f"slot {target.name} has no available pod ({target.ready}/{target.replicas} ready)"
    return None


@dataclass(frozen=True)
class _Answers:
    target: int
    other: int
    unknown: int
    server_errors: int
    detail: str


def _who_answers(
    app: App, endpoint: str, mine: str | None, theirs: str | None, timeout_s: float
) -> _Answers:
    """Ask production's /v1/models on fresh connections; which slot's identity does each list?"""
    import httpx

    from gx10slots.smoke import wire
    from gx10slots.smoke._http import request_bounded

    key, transport = probe_access(app)
    # Connection: close: every request on a fresh connection (kube-proxy balances per connection).
    headers = {"Connection": "close", **({"Authorization": f"Bearer {key}"} if key else {})}
    counts = {"target": 0, "other": 0, "unknown": 0, "5xx": 0}
    last = ""
    with httpx.Client(
        transport=transport, timeout=timeout_s, trust_env=False, headers=headers
    ) as client:
        for _ in range(VERIFY_CONNECTIONS):
            try:
                # Bounded in time too: a production trickling its answer must not hold the flip.
                answer = request_bounded(
                    client,
                    "GET",
                    endpoint.rstrip("/") + "/v1/models",
                    timeout_s=timeout_s,
                    cap=MODELS_BODY_CAP,
                )
                if not answer.complete:
                    raise ValueError("an over-long /v1/models answer")
                status, body = answer.status, answer.body
                if status >= 500:
                    counts["5xx"] += 1
                    last = f"HTTP {status}"
                    continue
                if status != 200:
                    counts["unknown"] += 1
                    last = f"HTTP {status}"
                    continue
                ids = wire.served_ids(wire.parse_models(json.loads(body)))
            except Interrupted:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of a foreign peer is evidence
                counts["unknown"] += 1
                last = type(exc).__name__
                continue
            if mine is not None and mine in ids:
                counts["target"] += 1
            elif theirs is not None and theirs in ids:
                counts["other"] += 1
                last = f"answered as {theirs}"
            else:
                counts["unknown"] += 1
                last = "answered without an identity"
    return _Answers(counts["target"], counts["other"], counts["unknown"], counts["5xx"], last)


def verify(app: App, slot: str, served_name: str | None, window_s: float) -> tuple[bool, str]:
    """Production reaches ``slot``'s pods: see the evidence listed above. Returns at the first
    decisive failure, else when the evidence holds, else when the window ends."""
    kind = kind_of(app.config)
    deadline = time.monotonic() + window_s
    endpoint = production_endpoint(app)
    detail = "not checked"
    server_errors = 0  # rounds in a row where every answer through production was a 5xx
    failed_answers = 0  # rounds in a row where the target answered as itself, then failed
    failing_since: float | None = None  # when the current run of failed rounds began
    identity_note = ""
    while True:
        moved = _flag_moved(app, slot)
        if moved is not None:
            return False, moved
        states: tuple[SlotState, SlotState] | None = None
        try:
            states = _slot_states(app, slot)
        except Interrupted:
            raise
        except SlotsError as exc:
            detail = f"cannot read the slots: {exc.message}"
        if states is not None:
            target, other = states
            gone = _target_gone(target)
            if gone is not None:
                return False, gone
            mine = distinguishing_names(target, other)
            theirs = distinguishing_names(other, target)
            ok = True
            routing = kind.routes_to(app, slot)
            if routing is not None:
                ok, detail = routing
            if ok and mine:
                answers = _who_answers(
                    app, endpoint, mine[0], theirs[0] if theirs else None, VERIFY_PROBE_TIMEOUT_S
                )
                all_5xx = answers.server_errors == VERIFY_CONNECTIONS
                server_errors = server_errors + 1 if all_5xx else 0
                ok = answers.target == VERIFY_CONNECTIONS
                if not ok:
                    failed_answers = 0
                detail = (
                    f"{answers.target}/{VERIFY_CONNECTIONS} answers through production came from "
                    f"{slot} ({answers.other} from {other.name}, {answers.server_errors} 5xx"
                    + (f"; last: {answers.detail}" if answers.detail else "")
                    + ")"
                    + (f"; {detail}" if routing is not None else "")
                )
            elif ok and theirs:
                # The target has no name of its own, the slot production left has: production
                # must no longer answer as that slot.
                answers = _who_answers(app, endpoint, None, theirs[0], VERIFY_PROBE_TIMEOUT_S)
                ok = answers.other == 0 and answers.server_errors == 0
                detail = (
                    f"{answers.other}/{VERIFY_CONNECTIONS} answers through production came from "
                    f"{other.name} ({answers.server_errors} 5xx"
                    + (f"; last: {answers.detail}" if answers.detail else "")
                    + ")"
                    + (f"; {detail}" if routing is not None else "")
                )
                identity_note = (
                    f"; slot {slot} serves no name of its own, so answers were attributed by "
                    f"the absence of {other.name}'s identity ({theirs[0]})"
                )
            elif ok:
                identity_note = (
                    f"; answers cannot be attributed: slot {slot} serves no name of its own "
                    f"(wire {identity_name(slot)}: docs/concepts.md)"
                )
                if routing is None:
                    identity_note = "; NOT verified that the router follows" + identity_note
            if ok:
                verdict = quick_probe(
                    app,
                    endpoint,
                    mine[0] if mine else (served_name or ""),
                    timeout_s=VERIFY_PROBE_TIMEOUT_S,
                    # With an identity, production must list exactly the target's names.
                    served_names=target.served_names if mine else (),
                )
                # The round took seconds: someone may have moved the flag meanwhile, and a
                # lagging router would still answer from the target. Never "verified" then.
                moved = _flag_moved(app, slot) if verdict.passed else None
                if moved is not None:
                    return False, moved
                if verdict.passed and mine:
                    return True, f"{detail}; known answer to {mine[0]}: {verdict.detail}"
                if verdict.passed:
                    console.progress("warning: " + identity_note.lstrip("; "))
                    base = f"{detail}; " if routing is not None else ""
                    return True, base + verdict.detail + identity_note
                detail = f"slot {slot} answered but failed: {verdict.detail}"
                # It answered as itself and failed its known answer: the target is failing.
                failed_answers += 1
            streak = max(server_errors, failed_answers)
            if streak == 0:
                failing_since = None
            elif failing_since is None:
                failing_since = time.monotonic()
            if (
                streak >= DECISIVE_FAILURES
                and failing_since is not None
                and time.monotonic() - failing_since >= DECISIVE_AFTER_S
            ):
                return False, f"{detail} ({streak} times in a row: not waiting out the window)"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, detail
        # Routers follow a flag change asynchronously: look again shortly.
        time.sleep(min(VERIFY_ROUND_S, remaining))
