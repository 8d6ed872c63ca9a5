"""Who takes the crown after a scored round (scoring spec v2): the dethrone rule, then the probe.

`crown_candidates` is pure: the models that *would* be crowned, best first (with a king:
the challengers that pass the dethrone rule against it; without one: every valid model).
`crown_first_sound` walks that list and asks `probe(hotkey)` about each until one passes
the degeneration guard (docs/scoring.md, "Degeneration guard"):

* passed: crowned, the walk stops (so in the usual round one model is probed);
* DEGENERATE: disqualified (INVALID, code `DEGENERATE`, the statistics in the detail),
  the next candidate is probed;
* invalid (the probe failed for the model's own reason, e.g. it no longer loads):
  disqualified INVALID `EVAL_PROBE`, the next candidate is probed;
* transient (it could not be probed: its worker failed, ran past its deadline or died, or a
  download failed): the candidate takes an evaluation strike (unless the failure is ours:
  our disk, our stop) and goes back to pending with its KL cleared; so do the candidates
  below it (no strike), and the walk stops. A worse model is never crowned in the round
  where a better one could not be probed, and none of them keeps a KL that would stop it
  being scored again: they all meet the king again on fresh prompts. A model that always
  fails its probe reaches its strike limit (INVALID `EVAL_FAILED_REPEATEDLY`) instead of
  protecting the king for ever.

With no candidate left the king keeps its seat (or the hill stays empty). `probe=None`
crowns the first candidate unprobed (scorers that do not generate, e.g. test stubs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Protocol, Sequence

from distil.scoring.rules import dethrones, rank_key
from distil.scoring.verdicts import Event, crown, disqualify, eval_strike
from distil.state import DISQUALIFIED, INVALID, PENDING, ValidatorState

PASSED = "passed"
DEGENERATE = "degenerate"
PROBE_INVALID = "invalid"
PROBE_TRANSIENT = "transient"
DEGENERATE_CODE = "DEGENERATE"


@dataclass(frozen=True)
class ProbeVerdict:
    """What the guard needs from a probe: `outcome` (passed | degenerate | invalid |
    transient), `detail` (the statistics, or the failure), a one-line `summary`, and for a
    transient failure its `code` and whether it was `ours` (never the model's strike)."""

    outcome: str
    detail: str
    summary: str = ""
    code: str = "EVAL_PROBE"
    ours: bool = False

    def __post_init__(self):
        if self.outcome not in (PASSED, DEGENERATE, PROBE_INVALID, PROBE_TRANSIENT):
            raise ValueError(f"unknown probe outcome {self.outcome!r}")


Probe = Callable[[str], ProbeVerdict]


class _Scored(Protocol):
    kl_mean: float
    per_prompt_kl: Sequence[float]


def crown_candidates(valid: Mapping[str, _Scored], king: str | None, commit_block: Mapping[str, int],
                     epsilon: float, alpha: float) -> tuple[list[str], dict[str, str]]:
    """(candidates best first, dethrone decision per challenger). Pure.

    With a king (which must be in `valid`): the challengers that pass the dethrone rule
    against it. Without one: every valid model. Best = lowest KL, then earliest commit.
    """
    def best_first(hotkeys):
        return sorted(hotkeys, key=lambda hk: rank_key(valid[hk].kl_mean, commit_block[hk], hk))

    if king is None:
        return best_first(valid), {}
    decisions: dict[str, str] = {}
    qualifying = []
    for hotkey in sorted(valid):
        if hotkey == king:
            continue
        decision = dethrones(valid[hotkey].kl_mean, valid[hotkey].per_prompt_kl,
                             valid[king].kl_mean, valid[king].per_prompt_kl, epsilon, alpha)
        decisions[hotkey] = decision.reason
        if decision.dethrones:
            qualifying.append(hotkey)
    return best_first(qualifying), decisions


def first_sound(state: ValidatorState, candidates: Sequence[str], probe: Probe | None,
                max_strikes: int = 3) -> tuple[ValidatorState, list[Event], dict[str, str], str | None]:
    """Probe the candidates best first until one passes; (state, events, {hotkey: outcome}, the
    one that passed or None). The walk of the module docstring; `max_strikes`: the evaluation
    strike limit (a probe that could not run is a strike). `probe=None` passes the first."""
    state = state.copy()
    events: list[Event] = []
    outcomes: dict[str, str] = {}
    for position, hotkey in enumerate(candidates):
        verdict = probe(hotkey) if probe is not None else None
        if verdict is not None:
            outcomes[hotkey] = verdict.outcome
            events.append(Event("probe", hotkey, verdict.summary or verdict.outcome))
        if verdict is None or verdict.outcome == PASSED:
            return state, events, outcomes, hotkey
        if verdict.outcome == DEGENERATE:
            state, more = disqualify(state, hotkey, INVALID, DEGENERATE_CODE, verdict.detail)
            events.extend(more)
        elif verdict.outcome == PROBE_INVALID:
            state, more = disqualify(state, hotkey, INVALID, "EVAL_PROBE", verdict.detail)
            events.extend(more)
        else:  # it could not be probed: no worse model is crowned in its place, nor keeps a KL
            state, more = _probe_failed(state, hotkey, verdict, candidates[position + 1:], max_strikes)
            events.extend(more)
            break
    return state, events, outcomes, None


def crown_first_sound(state: ValidatorState, candidates: Sequence[str], probe: Probe | None,
                      why: Mapping[str, str], max_strikes: int = 3) -> tuple[ValidatorState, list[Event], dict[str, str]]:
    """Probe the candidates best first and crown the first that passes; (state, events, {hotkey: outcome}).

    `why[hotkey]`: the reason it would be crowned (for the `new_king` event); `max_strikes`:
    the evaluation strike limit (a transient probe failure is one).
    """
    state, events, outcomes, sound = first_sound(state, candidates, probe, max_strikes)
    if sound is not None:
        state = crown(state, sound)
        events.append(Event("new_king", sound, why[sound]))
    elif state.king is not None:
        events.append(Event("king_holds", state.king, "no challenger that beat it was crowned (degeneration probe)"))
    return state, events, outcomes


def _unscored(state: ValidatorState, hotkey: str, code: str, detail: str) -> None:
    """Back to pending with the KL cleared (in place): scored again on fresh prompts."""
    state.miners[hotkey] = replace(state.miners[hotkey], status=PENDING, kl=None, code=code, detail=detail)


def _probe_failed(state: ValidatorState, hotkey: str, verdict: ProbeVerdict, below: Sequence[str],
                  max_strikes: int) -> tuple[ValidatorState, list[Event]]:
    events: list[Event] = []
    if verdict.ours:
        events.append(Event("retry_later", hotkey, f"probe could not run (ours): {verdict.detail}"))
    else:
        state, more = eval_strike(state, hotkey, verdict.code, f"the degeneration probe failed: {verdict.detail}",
                                  max_strikes)
        events.extend(more)
    if state.miners[hotkey].status != DISQUALIFIED:
        _unscored(state, hotkey, verdict.code, f"the degeneration probe could not run ({verdict.detail}); "
                                               "scored again in a later round")
    for other in below:
        _unscored(state, other, "PROBE_ABOVE_FAILED",
                  f"a better candidate ({hotkey}) could not be probed this round; scored again in a later round")
        events.append(Event("retry_later", other, f"{hotkey}, ranked above it, could not be probed"))
    return state, events
