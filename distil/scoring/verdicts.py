"""The state changes every epoch step shares: events, disqualification, pending notes, crowning.

Pure functions over `ValidatorState` (each returns a new state); `distil.scoring.epoch`
re-exports them, so `epoch.disqualify` & co. keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from distil.state import DISQUALIFIED, EVALUATED, INVALID, KING, MinerRecord, ValidatorState

EVAL_FAILED_REPEATEDLY = "EVAL_FAILED_REPEATEDLY"


@dataclass(frozen=True)
class Event:
    """Something the epoch did, for the log and W&B: `kind` is a short stable word."""

    kind: str
    hotkey: str | None
    detail: str


def _disqualify(record: MinerRecord, reason: str, code: str, detail: str) -> MinerRecord:
    return replace(record, status=DISQUALIFIED, reason=reason, code=code, detail=detail)


def disqualify(state: ValidatorState, hotkey: str, reason: str, code: str, detail: str) -> tuple[ValidatorState, list[Event]]:
    state = state.copy()
    state.miners[hotkey] = _disqualify(state.miners[hotkey], reason, code, detail)
    events = [Event("disqualified", hotkey, f"{reason} ({code}): {detail}" if code != reason else f"{reason}: {detail}")]
    if state.king == hotkey:
        state.king = None
        events.append(Event("king_lost", hotkey, f"the king was disqualified: {reason}"))
    if state.legacy_king == hotkey:
        state.legacy_king = None
    return state, events


def note_pending(state: ValidatorState, hotkey: str, code: str, detail: str) -> ValidatorState:
    """Transient trouble or not public yet: the miner stays pending, with the reason shown."""
    state = state.copy()
    state.miners[hotkey] = replace(state.miners[hotkey], code=code, detail=detail)
    return state


def crown(state: ValidatorState, hotkey: str) -> ValidatorState:
    """`hotkey` becomes king (in place on `state`); a previous king is evaluated again."""
    for hk, record in state.miners.items():
        if record.status == KING and hk != hotkey:
            state.miners[hk] = replace(record, status=EVALUATED)
    state.miners[hotkey] = replace(state.miners[hotkey], status=KING)
    state.king = hotkey
    return state


def eval_strike(state: ValidatorState, hotkey: str, code: str, detail: str,
                max_strikes: int) -> tuple[ValidatorState, list[Event]]:
    """An evaluation failure that was the model's own (the round scored another model): one
    strike, the error on its record; at `max_strikes`, INVALID `EVAL_FAILED_REPEATEDLY` with the
    last error. Not the king's crown yet: a king keeps it (and its weights) until its last strike."""
    state = state.copy()
    record = state.miners[hotkey]
    strikes = record.eval_strikes + 1
    state.miners[hotkey] = replace(record, eval_strikes=strikes, code=code,
                                   detail=f"evaluation failed ({strikes}/{max_strikes}): {detail}")
    events = [Event("eval_strike", hotkey, f"{code} while the round scored others ({strikes}/{max_strikes}): {detail}")]
    if strikes >= max(1, int(max_strikes)):
        state, more = disqualify(state, hotkey, INVALID, EVAL_FAILED_REPEATEDLY,
                                 f"evaluation failed {strikes} times while other models were scored; last: {code}: {detail}")
        events.extend(more)
    return state, events
