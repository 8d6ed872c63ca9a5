"""The state changes every epoch step shares: events, disqualification, pending notes, crowning.

Pure functions over `ValidatorState` (each returns a new state); `distil.scoring.epoch`
re-exports them, so `epoch.disqualify` & co. keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from distil.state import DISQUALIFIED, EVALUATED, KING, MinerRecord, ValidatorState


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
