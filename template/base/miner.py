"""BaseMinerNeuron: a neuron whose work is writing its commitment and reading it back."""

from __future__ import annotations

from loguru import logger

from template.base.neuron import BaseNeuron
from template.chain import ChainError, CommitmentRecord


class CommitmentMismatch(ChainError):
    """The chain holds something other than what was just written."""


class BaseMinerNeuron(BaseNeuron):
    neuron_type = "MinerNeuron"
    neuron_name = "miner"
    keeps_state = False  # one-shot: a commitment or a status query, nothing kept on disk

    def current_commitment(self) -> CommitmentRecord | None:
        return self.chain.commitment_of(self.hotkey)

    def write_commitment(self, data: str) -> CommitmentRecord:
        """Write `data` on chain, then read it back and check the chain holds exactly it."""
        logger.info(f"writing commitment {data!r} for {self.hotkey} on netuid {self.config.netuid}")
        self.chain.set_commitment(self.wallet, data)
        record = self.current_commitment()
        if record is None or record.data != data:
            raise CommitmentMismatch(
                f"the chain holds {record.data if record else None!r} for {self.hotkey}, not {data!r}"
            )
        logger.info(f"commitment confirmed at block {record.block}")
        return record
