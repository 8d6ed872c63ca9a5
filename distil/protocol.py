"""`DistilStatus`: what a validator knows about one miner, asked over the axon.

Miners do not serve models (the chain holds the commitment, the hub the weights), so the
network layer carries what the live system served from a bespoke HTTP API: a miner (or
anyone registered) asks each validator about a hotkey and gets back the commitment the
validator saw, its check result, its KL and rank, and the current king and round seed.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import bittensor as bt


class DistilStatus(bt.Synapse):
    """Request: `hotkey` (empty means the caller's own). Response: the validator's view."""

    # request
    hotkey: str = ""

    # response: the asked hotkey
    commitment: Optional[str] = None
    commit_block: Optional[int] = None
    status: Optional[str] = None  # "king" | "evaluated" | "pending" | "disqualified" | "unknown"
    reason: Optional[str] = None  # COPY | REMOVED | INVALID | KL_TOO_HIGH
    code: Optional[str] = None
    detail: Optional[str] = None
    kl: Optional[float] = None
    rank: Optional[int] = None

    # response: the validator and the subnet
    king_hotkey: Optional[str] = None
    king_commitment: Optional[str] = None
    king_kl: Optional[float] = None
    round_seed_block: Optional[int] = None
    round_seed: Optional[str] = None
    scoring_version: Optional[int] = None
    validator_version: Optional[str] = None

    RESPONSE_FIELDS: ClassVar[tuple[str, ...]] = (
        "commitment", "commit_block", "status", "reason", "code", "detail", "kl", "rank",
        "king_hotkey", "king_commitment", "king_kl", "round_seed_block", "round_seed",
        "scoring_version", "validator_version",
    )

    def deserialize(self) -> dict:
        return {"hotkey": self.hotkey, **{name: getattr(self, name) for name in self.RESPONSE_FIELDS}}

    def fill(self, info: dict) -> "DistilStatus":
        """Copy the response fields present in `info` onto this synapse."""
        for name in self.RESPONSE_FIELDS:
            if name in info:
                setattr(self, name, info[name])
        return self
