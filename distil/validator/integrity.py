"""An epoch's integrity step: the king and every model a round would score must still
resolve publicly at their pinned revisions (docs/rounds.md, step 3).

A model that is gone is disqualified `REMOVED`. One whose check could not run (a hub
outage: TRANSIENT) sits this epoch out, and the round is planned again without it, which
may bring a later challenger in, checked in turn. If the king's check could not run there
is no round and no weight setting this epoch (`king_ok` False).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loguru import logger

from distil.checks import REMOVED, TRANSIENT, check_integrity
from distil.commitment import parse_commitment
from distil.hub import ModelStore
from distil.scoring import epoch as ep
from distil.scoring.coldkeys import MAX_PER_COLDKEY
from distil.state import ValidatorState


@dataclass
class IntegrityResult:
    """`unreachable`: models that sit this epoch out; `answered`: models whose check got an
    answer (evidence that the hub is up, for the pre-check strikes)."""

    state: ValidatorState
    king_ok: bool = True
    unreachable: frozenset[str] = frozenset()
    answered: frozenset[str] = frozenset()
    events: list[ep.Event] = field(default_factory=list)


def check_round_integrity(state: ValidatorState, store: ModelStore, seed_block: int, max_challengers: int, rematch: int,
                          max_per_coldkey: int = MAX_PER_COLDKEY,
                          commit_delay: int = ep.DEFAULT_COMMIT_DELAY) -> IntegrityResult:
    """Check the models of the round seeded by `seed_block` (`plan_round`'s plan, with the same
    eligibility), planning again without each one whose check could not run."""
    unreachable: set[str] = set()
    answered: set[str] = set()
    checked: set[str] = set()
    events: list[ep.Event] = []
    king_ok = True
    while True:
        plan = ep.plan_round(state, seed_block, max_challengers, rematch, exclude=frozenset(unreachable),
                             max_per_coldkey=max_per_coldkey, commit_delay=commit_delay)
        todo = [hk for hk in plan.models if hk not in checked]
        if not todo:
            break
        for hotkey in todo:
            checked.add(hotkey)
            result = check_integrity(store, parse_commitment(state.miners[hotkey].commitment))
            if result.status != TRANSIENT:
                answered.add(hotkey)
            if result.status == REMOVED:
                state, new = ep.disqualify(state, hotkey, REMOVED, "REMOVED", result.detail)
                events.extend(new)
            elif result.status == TRANSIENT:
                unreachable.add(hotkey)
                if hotkey == state.king:
                    king_ok = False
                logger.warning(f"integrity of {hotkey} could not be checked: {result.detail}")
    return IntegrityResult(state, king_ok, frozenset(unreachable), frozenset(answered), events)
