"""The fault matrix as data: mutating command x fault point x fault, and the CI quick subset.

Pure data, no I/O: ``docs/reliability.md`` describes the same table, and
``test_docs.py`` keeps the two in step.

Fault points (the request the sandbox API server makes misbehave, once):

    before   the write that comes before the flag write: the Lease update that takes the lock
             (deploy: the standby Deployment update). It is applied, and its answer is replaced
             by the fault: the harder case, where the tool must not walk away from a write it
             made without knowing.
    during   the flag write itself (park: the scale patch); the fault answers instead, nothing
             is applied.
    after    the flag write is applied, and its answer is replaced by the fault (a lost or
             misleading answer to a write that happened).
    verify   the first read of the verification through production (the production Service's
             Endpoints). park has no verification phase: no cell.
    record   the history write (ConfigMap gx10slots-history) that records the operation.

Faults: 409 Conflict, 500 InternalError, 429 with Retry-After, a hang past the tool's timeout,
a dropped connection, and SIGKILL or SIGTERM of the tool while that request hangs.

State faults (issue 19), a second table: what the cluster holds rather than how one request
misbehaves.

    history  the history ConfigMap holds no entry for the last flip, which finished: ``missing``
             (deleted), ``garbled`` (``entries: "this is not json"``), ``overflowed`` (200 newer
             entries pushed it out). The flag's annotations are those of that finished run.
    verify   ``moved``: someone else patches the flag back to the slot production left (the
             selector only, as ``kubectl patch`` would) while the verification's first read is
             held. park has no verification phase: no cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COMMANDS = ("deploy", "flip", "flip-back", "park")
POINTS = ("before", "during", "after", "verify", "record")
FAULTS = ("409", "500", "429", "hang", "drop", "sigkill", "sigterm")
SIGNAL_FAULTS = ("sigkill", "sigterm")

# How long a `hang` fault holds the request: past the tool's (shortened) timeout of TOOL_TIMEOUT_S.
TOOL_TIMEOUT_S = 1.0
HANG_S = 3.0
# A request held for a signal case: long enough that the signal always comes first.
SIGNAL_HANG_S = 60.0


@dataclass(frozen=True)
class Target:
    """The request a case's fault hits."""

    verb: str
    resource: str
    name: str
    when: str  # "before": instead of the request; "after": the request is applied, then the fault

    def describe(self) -> str:
        applied = "applied, then the fault" if self.when == "after" else "not applied"
        return f"{self.verb} {self.resource}/{self.name} ({applied})"


@dataclass(frozen=True)
class Case:
    command: str
    point: str
    fault: str

    @property
    def id(self) -> str:
        return f"{self.command}:{self.point}:{self.fault}"

    @property
    def slug(self) -> str:
        return f"{self.command}-{self.point}-{self.fault}"

    @property
    def signal(self) -> bool:
        return self.fault in SIGNAL_FAULTS

    @property
    def target(self) -> Target:
        found = target(self.command, self.point)
        assert found is not None, f"{self.id} is not a cell of the matrix"
        return found

    def rule(self) -> dict[str, Any]:
        """The fault rule for the sandbox's control API (POST /_sandbox/faults)."""
        if self.fault == "moved":
            # The verification's first list of the production EndpointSlices, held: the flag is
            # moved meanwhile.
            return {
                "action": "hang",
                "verb": "list",
                "resource": "endpointslices",
                "when": "before",
                "count": 1,
                "seconds": HANG_S,
            }
        t = self.target
        table: dict[str, tuple[str, dict[str, Any]]] = {
            "409": ("conflict", {}),
            "500": ("error", {}),
            "429": ("throttle", {"seconds": 1}),
            "hang": ("hang", {"seconds": HANG_S}),
            "drop": ("drop", {}),
            "sigkill": ("hang", {"seconds": SIGNAL_HANG_S}),
            "sigterm": ("hang", {"seconds": SIGNAL_HANG_S}),
        }
        action, extra = table[self.fault]
        return {
            "action": action,
            "verb": t.verb,
            "resource": t.resource,
            "name": t.name or None,
            "namespace": "gx10",
            "when": t.when,
            "count": 1,
            **extra,
        }


def target(command: str, point: str) -> Target | None:
    """The request ``point`` means for ``command``; None where the command has no such phase."""
    if command == "park":
        main = ("patch", "deployments", "gx10-green")
    else:
        main = ("patch", "services", "gx10-model")
    if point == "before":
        if command == "deploy":
            return Target("update", "deployments", "gx10-green", "after")
        return Target("update", "leases", "gx10slots-lock", "after")
    if point == "during":
        return Target(*main, "before")
    if point == "after":
        return Target(*main, "after")
    if point == "verify":
        # Verification lists the production Service's EndpointSlices (a list: no object name).
        return None if command == "park" else Target("list", "endpointslices", "", "before")
    if point == "record":
        return Target("update", "configmaps", "gx10slots-history", "before")
    raise ValueError(f"unknown fault point {point!r}")


HISTORY_FAULTS = ("missing", "garbled", "overflowed")
MOVED = "moved"
STATE_FAULTS = (*HISTORY_FAULTS, MOVED)
# How docs/reliability.md's state-fault table heads each fault's column.
STATE_HEADINGS = {
    "missing": "history missing",
    "garbled": "history garbled",
    "overflowed": "history overflowed",
    MOVED: "flag moved during verification",
}
# The action annotation the finished run left on the flag, per command's starting point: a run
# of the same command, the one a history-based check would mistake for its own interrupted run.
EARLIER_ACTION = {"flip": "flip", "flip-back": "flip-back", "deploy": "flip", "park": "flip"}


def is_state_case(case: Case) -> bool:
    return case.fault in STATE_FAULTS


def state_cases() -> list[Case]:
    """Every command x state fault (park: no ``moved``, it has no verification)."""
    return [
        Case(command, "verify" if fault == MOVED else "history", fault)
        for command in COMMANDS
        for fault in STATE_FAULTS
        if not (command == "park" and fault == MOVED)
    ]


QUICK_STATE: tuple[tuple[str, str, str], ...] = (
    ("flip", "history", "missing"),
    ("flip-back", "history", "garbled"),
    ("deploy", "history", "overflowed"),
    ("flip", "verify", MOVED),
)


def quick_state_cases() -> list[Case]:
    return [Case(*cell) for cell in QUICK_STATE]


def all_cases() -> list[Case]:
    return [
        Case(command, point, fault)
        for command in COMMANDS
        for point in POINTS
        if target(command, point) is not None
        for fault in FAULTS
    ]


# The CI subset: every command, every point of each command, every fault at least twice, chosen
# so that the cases most likely to break an invariant (a write applied whose answer was lost, a
# kill while the lease is held, a signal during verification) are among them.
QUICK: tuple[tuple[str, str, str], ...] = (
    ("flip", "before", "sigkill"),
    ("flip", "during", "429"),
    ("flip", "after", "500"),
    ("flip", "verify", "sigterm"),
    ("flip", "record", "409"),
    ("flip-back", "before", "500"),
    ("flip-back", "during", "drop"),
    ("flip-back", "after", "sigkill"),
    ("flip-back", "verify", "hang"),
    ("flip-back", "record", "sigterm"),
    ("deploy", "before", "hang"),
    ("deploy", "during", "sigterm"),
    ("deploy", "after", "drop"),
    ("deploy", "verify", "409"),
    ("deploy", "record", "500"),
    ("park", "before", "drop"),
    ("park", "during", "sigkill"),
    ("park", "after", "hang"),
    ("park", "record", "429"),
)


def quick_cases() -> list[Case]:
    return [Case(*cell) for cell in QUICK]
