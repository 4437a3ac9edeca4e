"""Production's fallback and its protection: pure rules over the flag, the clock and the guard.

After every flip (``flip``, ``flip-back``, ``deploy --flip``, the guard's ``auto-revert``) the slot
that served before is production's *fallback*: the one place `slots flip-back` can send
production in about a second. A deploy into it or a park of it would take that away, so both are
refused while it is protected:

- for ``flip.protect_fallback_for`` (default 1h) after the flip, counted from the flag's
  ``gx10slots.io/changed-at`` (written with ``gx10slots.io/previous`` in the same compare-and-swap
  patch, so the two always describe the same flip), and
- for as long as a guard (or the controller) watches production, announced by its Lease
  ``gx10slots-guard``.

Not protected:

- a fallback that no longer runs the revision that served (``gx10slots.io/previous-revision``):
  it was replaced with ``--replace-fallback``, so what the protection kept is gone;
- a parked fallback (0 replicas): ``park --replace-fallback`` already gave up the one-step
  flip-back, and refusing the redeploy that warms it again would protect nothing;
- a slot left by a ``revert`` (the switch-back after a failed post-flip verification). That slot
  was production for the length of one verification window, and it is the slot that failed it:
  it never served, and protecting it would only block the deploy that fixes it;
- a slot left by the guard's ``auto-revert``: it wedged or failed under real traffic, its smoke
  is marked failed and flip-back to it is refused without a fresh one, so there is no one-step
  rollback to keep, and protecting it would only block the deploy that fixes it. (The contract
  lists the automatic revert among the flips that make a fallback; this is the one place we
  depart from it, on purpose.)

Fail safe: a ``changed-at`` that is missing, unreadable or dated in the future leaves the
fallback protected with no known end (``--replace-fallback`` is the way past it), and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from gx10slots.durations import format_duration
from gx10slots.errors import Refused
from gx10slots.kube.lease import (
    HOLDER_PROCESS,
    LEASE_DURATION_S,
    Here,
    holder_gone,
    record_duration_s,
)
from gx10slots.kube.values import parse_micro, parse_rfc3339, rfc3339
from gx10slots.slots import ACTION, CHANGED_AT, PREVIOUS_REVISION, FlagState

# Flag writes that leave behind a slot that failed, not one that served.
FAILED_SLOT_ACTIONS = {
    "revert": "its verification failed, so it never served",
    "auto-revert": "the guard switched production back from it after it failed under real traffic",
}
# Clocks differ a little between the machine that flipped and this one; more is a broken clock.
FUTURE_TOLERANCE_S = 120.0
REPLACE_OPTION = "--replace-fallback"


@dataclass(frozen=True)
class GuardWatch:
    """A guard (or the controller) watching production, as its lease announces it."""

    holder: str
    until: datetime | None  # the end of its window (or of its lease); None when unreadable


@dataclass(frozen=True)
class FallbackProtection:
    slot: str | None  # production's fallback (the flag's previous slot), or None
    protected: bool
    until: datetime | None  # end of the protection; None when none, or no known end
    reasons: tuple[str, ...] = ()  # why it is protected
    note: str | None = None  # why the previous slot is not protected, when that needs saying

    def until_for(self, slot: str) -> str | None:
        """``protected_until`` of ``slot`` for `slots status`: RFC 3339, or None."""
        if slot != self.slot or not self.protected or self.until is None:
            return None
        return rfc3339(self.until)

    def describe(self) -> str:
        end = f"until {rfc3339(self.until)}" if self.until else "with no known end"
        return f"slot {self.slot} is production's fallback, protected {end} (" + (
            "; ".join(self.reasons) + ")"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "protected": self.protected,
            "until": rfc3339(self.until) if self.until else None,
            "reasons": list(self.reasons),
            "note": self.note,
        }


def fallback_protection(
    flag: FlagState,
    now: datetime,
    protect_for_s: float,
    guard: GuardWatch | None,
    *,
    parked: bool = False,
    revision: str | None = None,
) -> FallbackProtection:
    """Whether production's fallback is protected now, until when, and why (pure).

    ``parked``: the fallback has no replicas (someone parked it, with ``--replace-fallback``):
    there is no one-step flip-back left to protect, so a deploy into it is not refused.
    ``revision``: the fallback's current revision. When the flip recorded the revision that
    served (``gx10slots.io/previous-revision``) and the slot runs another one now, it was already
    replaced (``--replace-fallback``): what the protection kept is gone."""
    slot = flag.previous
    if slot is None:
        return FallbackProtection(None, False, None)
    why_failed = FAILED_SLOT_ACTIONS.get(str(flag.annotations.get(ACTION)))
    if why_failed is not None:
        return FallbackProtection(
            slot,
            False,
            None,
            note=f"slot {slot} is not protected: the last flag change switched back; {why_failed}",
        )
    if parked:
        return FallbackProtection(
            slot,
            False,
            None,
            note=f"slot {slot} is parked: there is no warm fallback to protect",
        )
    served = flag.annotations.get(PREVIOUS_REVISION) or None
    if served is not None and revision is not None and served != revision:
        return FallbackProtection(
            slot,
            False,
            None,
            note=(
                f"slot {slot} no longer runs the revision that served ({str(served)[:40]}): "
                "it was replaced, so nothing is left to protect"
            ),
        )
    reasons: list[str] = []
    raw = flag.annotations.get(CHANGED_AT)
    changed = _parse_time(raw)
    until: datetime | None = None
    unknown_end = False
    if protect_for_s <= 0:
        pass  # protected only while a guard watches: the time of the flip does not matter
    elif changed is None:
        unknown_end = True
        shown = "missing" if not raw else f"unreadable ({str(raw)[:40]!r})"
        reasons.append(
            f"the time of the last flip, {CHANGED_AT}, is {shown}: treated as protected (fail safe)"
        )
    elif changed > now + timedelta(seconds=FUTURE_TOLERANCE_S):
        unknown_end = True
        reasons.append(
            f"the last flip is dated in the future ({rfc3339(changed)}): a clock is wrong, so "
            "it is treated as protected (fail safe)"
        )
    elif now < changed + timedelta(seconds=protect_for_s):
        until = changed + timedelta(seconds=protect_for_s)
        reasons.append(
            f"flip.protect_fallback_for ({format_duration(protect_for_s)}) after the flip at "
            f"{rfc3339(changed)}"
        )
    if guard is not None:
        reasons.append(f"{guard.holder} watches production")
        if guard.until is None:
            unknown_end = True
        elif until is None or guard.until > until:
            until = guard.until
    if not reasons:
        return FallbackProtection(slot, False, None)
    return FallbackProtection(slot, True, None if unknown_end else until, tuple(reasons))


def _parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw or len(raw) > 64:
        return None
    try:
        return parse_rfc3339(raw)
    except (ValueError, OverflowError):
        return None


_DOING = {"deploy": "deploying into it", "park": "parking it"}


def check_fallback(
    protection: FallbackProtection,
    slot: str,
    *,
    action: Literal["deploy", "park"],
    replace: bool,
) -> str | None:
    """Refuse a deploy into / park of a protected fallback; with ``replace``, the note to record.
    None when ``slot`` is not a protected fallback."""
    if slot != protection.slot or not protection.protected:
        return None
    if replace:
        return f"replaced production's fallback ({protection.describe()}) with {REPLACE_OPTION}"
    end = f"until {rfc3339(protection.until)}" if protection.until else "(no known end)"
    raise Refused(
        f"slot {slot} is production's fallback, protected {end}: {_DOING[action]} would take "
        f"away the one-step `slots flip-back` ({'; '.join(protection.reasons)})",
        hint=(
            f"wait until then, or pass {REPLACE_OPTION} to {action} anyway (recorded in "
            "history); `slots flip-back` still works meanwhile"
        ),
    )


def guard_watch(
    lease: Mapping[str, Any] | None, now: datetime, where: Here, watch_until_key: str
) -> GuardWatch | None:
    """The guard's lease as a watch: held, not expired, and its holder not provably gone."""
    if not lease:
        return None
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") if isinstance(spec, Mapping) else None
    if not holder or not isinstance(holder, str):
        return None
    metadata = lease.get("metadata") or {}
    annotations = (metadata.get("annotations") or {}) if isinstance(metadata, Mapping) else {}
    if not isinstance(annotations, Mapping):
        annotations = {}
    if holder_gone(holder, annotations.get(HOLDER_PROCESS), where) is not None:
        return None
    shown = holder[:128]
    renewed = parse_micro(spec.get("renewTime"))
    if renewed is None:
        return GuardWatch(shown, None)  # cannot tell whether it is alive: fail safe
    expires = renewed + timedelta(seconds=record_duration_s(spec, LEASE_DURATION_S))
    if expires <= now:
        return None
    window_end = _parse_time(annotations.get(watch_until_key))
    until = max(expires, window_end) if window_end is not None else expires
    return GuardWatch(shown, until)
