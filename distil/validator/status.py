"""What a validator answers over `DistilStatus`: its view of one hotkey, from its state."""

from __future__ import annotations

from distil import SCORING_VERSION, __version__
from distil.metrics.report import leaderboard_rows
from distil.state import ValidatorState


def rank_of(state: ValidatorState, hotkey: str) -> int | None:
    """The model's place among the models scored in the same round as its KL (the leaderboard's
    `rank`: the king first, then by KL). KLs of different rounds come from different prompts
    and are never ranked together; the rank is a guide for miners, never an input to the
    dethrone rule."""
    return next((row["rank"] for row in leaderboard_rows(state) if row["hotkey"] == hotkey), None)


def status_for(state: ValidatorState, hotkey: str) -> dict:
    record = state.miners.get(hotkey)
    king = state.miners.get(state.king) if state.king else None
    last = state.last_round or {}
    answer = {
        "king_hotkey": state.king,
        "king_commitment": king.commitment if king else None,
        "king_kl": king.kl["mean"] if king and king.kl else None,
        "round_seed_block": last.get("seed_block"),
        "round_seed": last.get("seed"),
        "scoring_version": SCORING_VERSION,
        "validator_version": __version__,
    }
    if record is None:
        return {**answer, "status": "unknown", "detail": "no commitment from this hotkey seen by this validator"}
    return {
        **answer,
        "commitment": record.commitment,
        "commit_block": record.commit_block,
        "status": record.status,
        "reason": record.reason,
        "code": record.code,
        "detail": record.detail,
        "kl": record.kl["mean"] if record.kl else None,
        "rank": rank_of(state, hotkey),
    }
