"""`DistilStatus`: what a validator knows about one miner, asked over the axon.

Miners do not serve models (the chain holds the commitment, the hub the weights), so the
network layer carries what the live system served from a bespoke HTTP API: a miner (or
anyone registered) asks each validator about a hotkey and gets back the commitment the
validator saw, its check result, its KL and rank, and the current king and round seed.

Every string field is bounded (`LIMITS`): a request naming a longer or non-alphanumeric
hotkey is refused (400, see `template.axon.limit_requests`), an answer is escaped and cut
to fit by `fill`, and a miner's dendrite refuses an answer that does not fit.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import bittensor as bt
from pydantic import Field

from template.chain import MAX_COMMITMENT_BYTES
from template.text import printable

HOTKEY_CHARS = 48  # an ss58 address

LIMITS = {
    "hotkey": HOTKEY_CHARS, "commitment": MAX_COMMITMENT_BYTES, "status": 16, "reason": 32, "code": 64,
    "detail": 1000, "king_hotkey": HOTKEY_CHARS, "king_commitment": MAX_COMMITMENT_BYTES, "round_seed": 130,
    "validator_version": 64,
}


def _bounded(name: str):
    return Field(None, max_length=LIMITS[name])


class DistilStatus(bt.Synapse):
    """Request: `hotkey` (empty means the caller's own). Response: the validator's view."""

    # request: an ss58 address or nothing; anything else is refused before the handler runs
    hotkey: str = Field("", max_length=HOTKEY_CHARS, pattern=r"^[0-9A-Za-z]*$")

    # response: the asked hotkey
    commitment: Optional[str] = _bounded("commitment")
    commit_block: Optional[int] = None
    status: Optional[str] = _bounded("status")  # "king" | "evaluated" | "pending" | "disqualified" | "unknown"
    reason: Optional[str] = _bounded("reason")  # COPY | REMOVED | INVALID | KL_TOO_HIGH
    code: Optional[str] = _bounded("code")
    detail: Optional[str] = _bounded("detail")
    kl: Optional[float] = None
    rank: Optional[int] = None

    # response: the validator and the subnet
    king_hotkey: Optional[str] = _bounded("king_hotkey")
    king_commitment: Optional[str] = _bounded("king_commitment")
    king_kl: Optional[float] = None
    round_seed_block: Optional[int] = None
    round_seed: Optional[str] = _bounded("round_seed")
    scoring_version: Optional[int] = None
    validator_version: Optional[str] = _bounded("validator_version")

    RESPONSE_FIELDS: ClassVar[tuple[str, ...]] = (
        "commitment", "commit_block", "status", "reason", "code", "detail", "kl", "rank",
        "king_hotkey", "king_commitment", "king_kl", "round_seed_block", "round_seed",
        "scoring_version", "validator_version",
    )

    def deserialize(self) -> dict:
        return {"hotkey": self.hotkey, **{name: getattr(self, name) for name in self.RESPONSE_FIELDS}}

    def fill(self, info: dict) -> "DistilStatus":
        """Copy the response fields present in `info` onto this synapse, strings escaped and cut to their bounds."""
        for name in self.RESPONSE_FIELDS:
            if name in info:
                value = info[name]
                if isinstance(value, str):
                    value = printable(value, LIMITS[name])
                setattr(self, name, value)
        return self
