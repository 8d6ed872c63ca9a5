"""What a validator answers over `DistilStatus`: its view of one hotkey, from its state."""

from __future__ import annotations

from distil import SCORING_VERSION, __version__
from distil.state import DISQUALIFIED, ValidatorState


def rank_of(state: ValidatorState, hotkey: str) -> int | None:
    """1 for the king, then the other evaluated models by their last KL (lower is better).

    KLs of models scored in different rounds come from different prompts; the rank is a
    guide for miners, never an input to the dethrone rule.
    """
    record = state.miners.get(hotkey)
    if record is None or record.kl is None or record.status == DISQUALIFIED:
        return None
    others = [
        (hk, m)
        for hk, m in state.miners.items()
        if m.kl is not None and m.status != DISQUALIFIED and hk != state.king
    ]
    others.sort(key=lambda kv: (kv[1].kl["mean"], kv[1].commit_block, kv[0]))
    if hotkey == state.king:
        return 1
    offset = 1 if state.king is not None else 0
    for i, (hk, _) in enumerate(others):
        if hk == hotkey:
            return i + 1 + offset
    return None


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
