"""Scoring spec v3's win-twice rule as a state machine: the contender record and each round's step (pure).

A challenger that passes the first stage against the king (`WinTwice.first_stage`, α =
`alpha / max_challengers`) and then the degeneration probe becomes the **contender**; the
validator keeps one `Contender` record in its state. The next rounds, on their own (fresh)
prompts, score the king, the contender and any new challengers together, even when no new
challenger is ready. In the first of them where both the king and the contender are
scored, the contender takes the crown if it passes again (`WinTwice.confirms`, α =
`confirm_alpha`); otherwise it is dropped and stays an evaluated model with its KL on record.

`step` is what an epoch calls with a round's valid scores, when the round has a king:

* the contender's confirmation: CONFIRMED (crowned now: it passed the probe when it became
  contender, and its weights are integrity-checked every epoch), REJECTED (dropped),
  NOT_SCORED (it could not be scored this round, for a reason of ours: the record is kept
  and the confirmation happens in the next round where it is scored) or VOID (the king it
  beat no longer reigns: dropped);
* the new challengers' first stage, against the king at the end of the round (the
  confirmed contender, or the king): those that pass, best first, are `candidates` for the
  contender's seat, probed in that order (the first that passes the probe becomes the
  contender: `new_contender`). While a NOT_SCORED contender keeps the seat, those that pass
  are `waiting` instead: they stay pending (no KL kept) and are scored again next round.

docs/scoring.md ("Win twice") specifies what the epoch does around it (no-king rounds,
transient failures, the probe); `python -m distil.sim dethrone` measures it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

from distil.scoring.rules import WinTwice, rank_key
from distil.state_schema import Contender  # noqa: F401  (the record's shape lives with the state's)

CONFIRMED = "confirmed"
REJECTED = "rejected"
NOT_SCORED = "not_scored"
VOID = "void"


class Scored(Protocol):
    kl_mean: float
    per_prompt_kl: Sequence[float]


@dataclass(frozen=True)
class Step:
    """What a round with a king decides under win twice (see the module docstring).

    crowned: the contender that confirmed (crown it now) or None; contender: the record to
    keep after the round (the same one when NOT_SCORED, else None until a candidate
    passes the probe); confirmation: CONFIRMED | REJECTED | NOT_SCORED | VOID, or None
    without a contender; candidates / waiting: first-stage passers, best first;
    decisions: hotkey → the reason, for every model tested.
    """

    crowned: str | None
    contender: Contender | None
    confirmation: str | None
    candidates: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    decisions: dict[str, str] = field(default_factory=dict)


def step(contender: Contender | None, king: str, scores: Mapping[str, Scored], commit_blocks: Mapping[str, int],
         seed_block: int, rule: WinTwice = WinTwice()) -> Step:
    """One round of win twice, with a king that was validly scored in it.

    `scores`: every model validly scored this round (failed, KL_TOO_HIGH and copies left
    out), the king included; `commit_blocks`: theirs; `seed_block`: this round's. The
    contender is expected in `scores` unless it could not be scored (NOT_SCORED); the
    epoch drops the record itself when the contender is disqualified or deregistered.
    """
    if king not in scores:
        raise ValueError(f"the king {king} was not scored this round: the round decides nothing (no step)")
    decisions: dict[str, str] = {}
    crowned = kept = None
    confirmation = None
    if contender is not None:
        if contender.king != king:
            confirmation = VOID
            decisions[contender.hotkey] = f"contender dropped: the king it beat ({contender.king}) no longer reigns"
        elif contender.seed_block >= seed_block:
            raise ValueError(f"contender {contender.hotkey} won its first stage in round {contender.seed_block}; "
                             f"round {seed_block} is not a later round's fresh prompts")
        elif contender.hotkey not in scores:
            kept, confirmation = contender, NOT_SCORED
            decisions[contender.hotkey] = "contender not scored this round: confirmed in the next round that scores it"
        else:
            mine, theirs = scores[contender.hotkey], scores[king]
            decision = rule.confirms(mine.kl_mean, mine.per_prompt_kl, theirs.kl_mean, theirs.per_prompt_kl)
            if decision.dethrones:
                crowned, confirmation = contender.hotkey, CONFIRMED
                decisions[contender.hotkey] = f"confirmed on fresh prompts: {decision.reason}"
            else:
                confirmation = REJECTED
                decisions[contender.hotkey] = f"not confirmed on fresh prompts: {decision.reason}"
    reigning = crowned or king
    excluded = {king} | ({contender.hotkey} if contender is not None else set())
    passers = []
    for hotkey in sorted(set(scores) - excluded):
        mine, theirs = scores[hotkey], scores[reigning]
        decision = rule.first_stage(mine.kl_mean, mine.per_prompt_kl, theirs.kl_mean, theirs.per_prompt_kl)
        decisions[hotkey] = ("first stage passed: " if decision.dethrones else "first stage: ") + decision.reason
        if decision.dethrones:
            passers.append(hotkey)
    passers.sort(key=lambda hk: rank_key(scores[hk].kl_mean, commit_blocks[hk], hk))
    if kept is not None:
        for hotkey in passers:
            decisions[hotkey] += "; waits: the contender's confirmation is still open (scored again next round)"
        return Step(None, kept, confirmation, (), tuple(passers), decisions)
    return Step(crowned, None, confirmation, tuple(passers), (), decisions)


def new_contender(hotkey: str, king: str, scores: Mapping[str, Scored], commit_blocks: Mapping[str, int],
                  seed_block: int, rule: WinTwice = WinTwice()) -> Contender:
    """The record for a candidate of `step` that passed the probe; `king` is `step`'s king at the
    end of the round (the crowned contender, or the king)."""
    mine, theirs = scores[hotkey], scores[king]
    decision = rule.first_stage(mine.kl_mean, mine.per_prompt_kl, theirs.kl_mean, theirs.per_prompt_kl)
    if not decision.dethrones:
        raise ValueError(f"{hotkey} did not pass the first stage against {king}: {decision.reason}")
    return Contender(hotkey, int(commit_blocks[hotkey]), king, int(commit_blocks[king]), int(seed_block),
                     float(mine.kl_mean), float(theirs.kl_mean), float(decision.p_value))
