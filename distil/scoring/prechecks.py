"""The pre-check queue and its strikes, as pure functions over `ValidatorState` (DESIGN.md §9).

Two rules keep a commitment whose check keeps failing from blocking the others:

* **Never-checked first.** Each epoch's budget (`--checks.max_per_epoch`) goes to the
  commitments never attempted before, earliest commit first; retries come after them,
  least recently tried first. Twenty crashing repos committed before an honest one can
  delay it by one epoch, not forever.
* **Strikes.** A pre-check that ends without a verdict (TRANSIENT) is a *strike* against
  the repo only when the failure is specific to it: in the same epoch the hub answered
  another repo (for hub codes) or the checker reached a verdict on another repo (for
  checker codes). An outage that every repo sees adds no strike, and "not public yet"
  (UNAVAILABLE, inside the grace period) is never one: transient trouble alone never
  disqualifies. After `max_strikes` strikes (`--checks.max_strikes`, default 6) the
  commitment is INVALID with code `CHECK_FAILED_REPEATEDLY` and its last error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from distil.checks.codes import transient_scope
from distil.state import DISQUALIFIED, INVALID, ValidatorState

CHECK_FAILED_REPEATEDLY = "CHECK_FAILED_REPEATEDLY"
DEFAULT_MAX_STRIKES = 6
# Seconds of pre-checks per epoch: sixteen checks each just under its deadline must not hold
# the round for hours; what is left waits for the next epoch in the queue's order.
DEFAULT_EPOCH_BUDGET_S = 1800.0

# attempt outcomes
VERDICT = "verdict"  # passed, INVALID, COPY or REMOVED: the repo leaves the queue
UNAVAILABLE = "unavailable"  # not public (yet): the hub answered; never a strike
TRANSIENT = "transient"  # no verdict: hub trouble, or the checker failed



def _scope(code: str | None) -> str:
    """Whose trouble a TRANSIENT code is (`distil.checks.codes.transient_scope`): "hub", "local"
    (our own disk or memory: never the repo's fault) or "repo" (also for codes outside the table)."""
    try:
        return transient_scope(code) or "repo"
    except KeyError:
        return "repo"


@dataclass(frozen=True)
class Attempt:
    """One pre-check this epoch: its outcome class and, for a failure, the check code."""

    hotkey: str
    outcome: str  # VERDICT | UNAVAILABLE | TRANSIENT
    code: str | None = None


def precheck_queue(state: ValidatorState, limit: int) -> list[str]:
    """This epoch's pre-checks: never-attempted commitments (the king first, then earliest
    commit), then retries.

    A record is waiting while it is not disqualified and not checked under the current
    checks version: new commitments, and after a checks-version change every record checked
    before, the king included (`migrate_checks_version`). Retries are ordered least recently
    tried first (then earliest commit), so that more retries than the budget take turns
    instead of the same ones every epoch.
    """
    waiting = [hk for hk, m in state.miners.items() if m.status != DISQUALIFIED and not m.checked]
    fresh = sorted((hk for hk in waiting if state.miners[hk].last_check_block is None),
                   key=lambda hk: (hk != state.king, state.miners[hk].commit_block, hk))
    retries = sorted((hk for hk in waiting if state.miners[hk].last_check_block is not None),
                     key=lambda hk: (state.miners[hk].last_check_block, state.miners[hk].commit_block, hk))
    return (fresh + retries)[: max(0, int(limit))]


def note_attempt(state: ValidatorState, hotkey: str, code: str, detail: str, block: int) -> ValidatorState:
    """A pre-check without a verdict: the miner stays pending, with the reason shown, as a retry."""
    state = state.copy()
    state.miners[hotkey] = replace(state.miners[hotkey], code=code, detail=detail, last_check_block=int(block))
    return state


def repo_specific_failures(attempts: Sequence[Attempt], hub_answered: Iterable[str] = ()) -> frozenset[str]:
    """Hotkeys whose TRANSIENT pre-check this epoch counts as a strike.

    `hub_answered`: hotkeys whose integrity check the hub answered this epoch (OK or
    REMOVED). A hub-code failure counts when the hub answered another repo (another
    pre-check reached a verdict or UNAVAILABLE, or an integrity check got an answer); any
    checker code (CHECKER_ERROR) counts when the checker reached a verdict on another repo;
    our own disk or memory failing (LOCAL_IO_ERROR, CHECKER_OUT_OF_MEMORY) never counts. A
    failure every checked repo shares is an outage, not a strike.
    """
    answered = set(hub_answered)
    for a in attempts:
        if a.outcome in (VERDICT, UNAVAILABLE):
            answered.add(a.hotkey)
    verdicts = {a.hotkey for a in attempts if a.outcome == VERDICT}
    specific = set()
    for a in attempts:
        scope = _scope(a.code)
        if a.outcome != TRANSIENT or scope == "local":
            continue
        evidence = answered if scope == "hub" else verdicts
        if evidence - {a.hotkey}:
            specific.add(a.hotkey)
    return frozenset(specific)


def add_strikes(state: ValidatorState, hotkeys: Iterable[str], max_strikes: int) -> tuple[ValidatorState, list]:
    """One strike each; at `max_strikes`, INVALID `CHECK_FAILED_REPEATEDLY` with the last error."""
    from distil.scoring.verdicts import Event, disqualify

    state = state.copy()
    events: list[Event] = []
    for hotkey in sorted(hotkeys):
        record = state.miners.get(hotkey)
        if record is None or record.status == DISQUALIFIED or record.checked:
            continue
        strikes = record.strikes + 1
        state.miners[hotkey] = replace(record, strikes=strikes)
        events.append(Event("strike", hotkey, f"pre-check failed for this repo alone ({strikes}/{max_strikes}): {record.code}"))
        if strikes >= max(1, int(max_strikes)):
            last = f"{record.code}: {record.detail}" if record.detail else str(record.code)
            state, more = disqualify(
                state, hotkey, INVALID, CHECK_FAILED_REPEATEDLY,
                f"the pre-check failed {strikes} times in a row with errors specific to this repo; last: {last}",
            )
            events.extend(more)
    return state, events


def migrate_checks_version(state: ValidatorState, checks_version: int) -> tuple[ValidatorState, list]:
    """Records checked under another pre-checks version meet the new checks: every checked
    record that is not disqualified (the king included) goes back to the front of the queue,
    unchecked, with its pre-check strikes reset. Its standing (king, KL) stays until the
    new checks give a verdict; one that fails them is disqualified like any other."""
    from distil.scoring.verdicts import Event

    if state.checks_version == checks_version:
        return state, []
    state = state.copy()
    again = sorted(hk for hk, m in state.miners.items() if m.checked and m.status != DISQUALIFIED)
    for hotkey in again:
        state.miners[hotkey] = replace(state.miners[hotkey], checked=False, strikes=0, last_check_block=None)
    events = [Event("checks_version", None, f"records were checked under pre-checks v{state.checks_version}; "
                                            f"{len(again)} checked again under v{checks_version}")]
    state.checks_version = checks_version
    return state, events
