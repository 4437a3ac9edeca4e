"""Flip planning as data: which slot, which gates, and the exact JSON Patch (pure, no I/O).

The patch is a compare-and-swap on its own: it ``test``s the object's resourceVersion and the flag's
current value before replacing it, so it applies to exactly the state the gates were checked on
or not at all (the API server answers 422 for a failed ``test``). The audit annotations travel in
the same patch, so the flag and its record can never disagree.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gx10slots.config import SLOT_NAMES, Config
from gx10slots.errors import Refused
from gx10slots.flags import kind_of
from gx10slots.kube.cas import annotation_ops, resource_version_test
from gx10slots.kube.values import rfc3339
from gx10slots.servednames import identity_name, is_identity
from gx10slots.slots import (
    ACTION,
    ACTIVE,
    CHANGED_AT,
    CHANGED_BY,
    FUTURE_SMOKE_TOLERANCE_S,
    PREVIOUS,
    PREVIOUS_REVISION,
    REASON,
    RUN_ID,
    RUN_STATE,
    SWITCHING,
    FlagState,
    SlotState,
    other_slot,
)

Mode = Literal["flip", "flip-back", "revert", "auto-revert"]
MAX_REASON_CHARS = 256
# Clocks of the machine that smoked and of this one differ a little; more is a broken clock.
FUTURE_TOLERANCE_S = FUTURE_SMOKE_TOLERANCE_S


@dataclass(frozen=True)
class FlipPlan:
    mode: Mode
    source: str | None  # the slot production leaves (None when the flag named no slot)
    target: str
    target_model: str | None
    source_model: str | None
    target_served_name: str | None
    patch: list[dict[str, Any]]
    gates: list[str] = field(default_factory=list)  # what was checked, for the record and --dry-run
    run: str = ""  # the run's id: on the flag (gx10slots.io/run) and its history entry's id
    target_served_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "from": self.source,
            "to": self.target,
            "model": self.target_model,
            "from_model": self.source_model,
            "gates": self.gates,
            "patch": self.patch,
        }


def clean_reason(reason: str | None) -> str:
    """A reason safe to store in an annotation and a history entry: one line, bounded, and no
    control or format characters (an escape sequence in a stored reason would reach the
    terminal of everyone who runs `slots history`)."""
    printable = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in (reason or ""))
    text = " ".join(printable.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def flag_patch(
    flag_obj: Mapping[str, Any],
    config: Config,
    *,
    source: str | None,
    target: str,
    by: str,
    reason: str,
    at: datetime,
    action: str | None = None,
    previous_revision: str = "",
    run: str = "",
) -> list[dict[str, Any]]:
    if target not in SLOT_NAMES:
        raise ValueError(f"refusing to write {target!r}: not a slot name")
    annotations = {
        ACTIVE: target,
        PREVIOUS: source or "",
        # The revision that served from the previous slot: flip-back trusts exactly that one.
        PREVIOUS_REVISION: previous_revision,
        CHANGED_AT: rfc3339(at),
        CHANGED_BY: by,
        REASON: reason,
    }
    if action:
        annotations[ACTION] = action
    if run:
        # In the same patch as the flag: a run stopped after this write is found by the flag
        # object alone (gx10slots/flip/unfinished.py).
        annotations[RUN_ID] = run
        annotations[RUN_STATE] = SWITCHING
    return [
        resource_version_test(flag_obj),
        *kind_of(config).value_ops(flag_obj, config, target),
        *annotation_ops(flag_obj, annotations),
    ]


def check_target_ready(target: SlotState) -> None:
    if not target.exists:
        raise Refused(f"slot {target.name}: its Deployment does not exist")
    if target.replicas < 1:
        raise Refused(
            f"slot {target.name} is parked (0 replicas): production would have no backend",
            hint=f"deploy into it first (slots deploy MODEL --slot {target.name})",
        )
    if not target.generation_observed:
        raise Refused(
            f"slot {target.name}: the Deployment controller has not observed its latest "
            "generation yet (a change is still rolling out)"
        )
    if target.available < 1:
        raise Refused(
            f"slot {target.name} is not ready ({target.ready}/{target.replicas} ready, "
            f"{target.available} available)"
        )


def check_smoke_fresh(target: SlotState, max_age_s: float, now: datetime) -> str:
    record = target.smoke
    if record is None:
        raise Refused(
            f"slot {target.name}: no smoke result recorded for its current revision "
            f"{target.revision}",
            hint=f"run `slots smoke {target.name}` first (or --force in an emergency)",
        )
    if not record.passed:
        raise Refused(
            f"slot {target.name}: the last smoke for revision {target.revision} failed",
            hint=f"see the report {record.report}" if record.report else None,
        )
    age = record.age_s(now)
    if age is not None and age < -FUTURE_TOLERANCE_S:
        raise Refused(
            f"slot {target.name}: the smoke result is dated in the future ({record.at}); a "
            "clock is wrong, so its freshness cannot be judged",
            hint=f"check the clocks, then run `slots smoke {target.name}` again",
        )
    if age is None or age > max_age_s:
        raise Refused(
            f"slot {target.name}: the passing smoke result is stale "
            f"({'unknown age' if age is None else f'{age / 60:.0f} min old'}, "
            f"max {max_age_s / 60:.0f} min)",
            hint=f"run `slots smoke {target.name}` again",
        )
    return f"smoke passed {age:.0f} s ago for revision {target.revision}"


def check_names_kept(source: SlotState, target: SlotState) -> str:
    """Every client-facing name production serves now is served by ``target`` too; ``Refused``
    naming the requests that would start failing otherwise."""
    missing = [
        n for n in source.served_names if not is_identity(n) and n not in target.served_names
    ]
    if missing:
        asked = " or ".join(f'model "{n}"' for n in missing)
        raise Refused(
            f"slot {target.name} does not serve {', '.join(missing)}, which production serves "
            f"now: after the flip, clients asking for {asked} would get 404 (slot "
            f"{target.name} serves {', '.join(target.served_names) or 'nothing known'})",
            hint="deploy with an engine and manifest that can serve several names (vLLM "
            "--served-model-name $(SERVED_MODEL_NAME) ...: docs/manifests), or pass --rename "
            "once every client uses the new name",
        )
    return f"slot {target.name} serves every name production serves now"


def distinguishing_names(target: SlotState, other: SlotState | None) -> list[str]:
    """Names only ``target`` serves: a request naming one can only be answered by it. Its
    identity name first."""
    theirs = set(other.served_names) if other is not None and other.exists else set()
    names = [n for n in target.served_names if n not in theirs]
    return sorted(names, key=lambda n: n != target.identity)


def plan_flip(
    mode: Mode,
    slots: Mapping[str, SlotState],
    flag: FlagState,
    flag_obj: Mapping[str, Any],
    config: Config,
    *,
    force: bool,
    by: str,
    reason: str,
    now: datetime,
    expected_source: str | None = None,
    run: str = "",
    rename: bool = False,
) -> FlipPlan:
    """Decide the target and check every gate that needs no network; raises ``Refused``.

    ``expected_source`` pins the slot production must still be on (reverts and the guard): if
    someone else flipped meanwhile, we refuse rather than fight them.
    """
    if expected_source is not None and flag.active != expected_source:
        raise Refused(
            f"production is no longer on {expected_source} (the flag names "
            f"{flag.value or 'nothing'}): someone else changed it; not touching it"
        )
    gates: list[str] = []
    if mode == "flip":
        if flag.active is None:
            raise Refused(
                f"the flag names {flag.value or 'nothing'!r}, not a slot: cannot tell which slot "
                "is the standby",
                hint="fix the flag object by hand, or flip-back to the recorded previous slot",
            )
        target = other_slot(flag.active)
    elif mode == "flip-back":
        if flag.previous is None:
            raise Refused(
                "no previous slot is recorded on the flag object: nothing to flip back to",
                hint="use `slots flip` to switch to the standby",
            )
        target = flag.previous
    else:
        if flag.active is None:
            raise Refused("the flag names no slot: nothing to revert")
        target = other_slot(flag.active)
    if flag.active == target:
        raise Refused(f"slot {target} is already the active slot")

    blocker = kind_of(config).flux_blocker(flag_obj, config)
    if blocker:
        raise Refused(blocker)
    gates.append("flag not reverted by Flux")

    target_slot = slots[target]
    check_target_ready(target_slot)
    gates.append(f"slot {target} ready ({target_slot.available} available)")
    if mode == "flip" and not force:
        gates.append(check_smoke_fresh(target_slot, config.smoke.max_age_s, now))
    elif mode == "flip-back":
        served = flag.annotations.get(PREVIOUS_REVISION) or None
        if served is not None and served == target_slot.revision:
            gates.append(f"slot {target} still runs revision {served}, which served before")
        elif not force:
            # The previous slot changed since it served (a deploy into it, or a flip that was
            # reverted): it has not earned the trust flip-back relies on, so it needs a smoke.
            try:
                gates.append(check_smoke_fresh(target_slot, config.smoke.max_age_s, now))
            except Refused as exc:
                raise Refused(
                    f"slot {target} no longer runs the revision that served production "
                    f"({served or 'not recorded'}; now {target_slot.revision}): " + exc.message,
                    hint=exc.hint,
                ) from exc

    source_slot = slots.get(flag.active) if flag.active else None
    if mode == "flip" and source_slot is not None and source_slot.exists:
        if rename:
            gates.append("--rename: names production serves now may stop working")
        else:
            gates.append(check_names_kept(source_slot, target_slot))
    if (
        mode == "flip"
        and not kind_of(config).shows_routing
        and not distinguishing_names(target_slot, source_slot)
    ):
        if not force:
            raise Refused(
                f"slot {target} serves no name of its own (not even its identity name "
                f"{identity_name(target)}): through a {kind_of(config).object_kind} flag's "
                "router nothing could prove that production reaches it rather than the old slot",
                hint="wire the identity name (docs/concepts.md, 'Telling the slots apart'); "
                "--force switches without that proof",
            )
        gates.append(f"--force: slot {target} cannot be told apart through the router")
    # Only a verified flip makes the slot it leaves a trusted fallback; a revert leaves a slot
    # that just failed.
    served_revision = (
        source_slot.revision or "" if source_slot and mode in ("flip", "flip-back") else ""
    )
    patch = flag_patch(
        flag_obj,
        config,
        source=flag.active,
        target=target,
        by=by,
        reason=reason,
        at=now,
        action=mode,
        previous_revision=served_revision,
        run=run,
    )
    return FlipPlan(
        mode=mode,
        source=flag.active,
        target=target,
        target_model=target_slot.model,
        source_model=source_slot.model if source_slot else None,
        target_served_name=target_slot.served_name,
        patch=patch,
        gates=gates,
        run=run,
        target_served_names=target_slot.served_names,
    )
