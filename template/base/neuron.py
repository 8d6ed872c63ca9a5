"""BaseNeuron: config, wallet, chain client and registration, in that order.

Ported from the Bittensor subnet template to bittensor 10.5, with its traps fixed:
state is loaded before the first sync (the template synced first and overwrote saved
state on restart), an unregistered hotkey raises `NotRegisteredError` with a message that
says what to do (the template called `exit()` inside library code), and an explicit
`--neuron.full_path` is used as given.
"""

from __future__ import annotations

import argparse
from abc import ABC
from typing import Sequence

from loguru import logger

from template.chain import BittensorChain, ChainClient, MetagraphSnapshot, NotRegisteredError
from template.mock_chain import InMemoryChain
from template.config import add_chain_args, add_neuron_args, check_config, parse_config
from template.log import setup_logging_from_config
from template.wallet import load_wallet


def make_chain(config) -> ChainClient:
    """The in-memory chain with `--mock`, else the real one named by `--subtensor.*`."""
    if config.mock:
        return InMemoryChain(netuid=int(config.netuid), path=config.mock_chain_state)
    return BittensorChain(config=config, netuid=int(config.netuid))


class BaseNeuron(ABC):
    neuron_type = "BaseNeuron"
    neuron_name = "neuron"

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        add_chain_args(parser)
        add_neuron_args(parser, cls.neuron_name)

    @classmethod
    def build_parser(cls, description: str | None = None) -> argparse.ArgumentParser:
        # allow_abbrev=False: a mistyped or shortened flag is an error, never another flag
        parser = argparse.ArgumentParser(description=description or cls.__doc__, allow_abbrev=False)
        cls.add_args(parser)
        return parser

    @classmethod
    def config_from_argv(cls, argv: Sequence[str] | None = None):
        return parse_config(cls.build_parser(), argv)

    def __init__(self, config, chain: ChainClient | None = None, wallet=None, setup_logs: bool = True):
        self.config = check_config(config)
        if setup_logs:
            setup_logging_from_config(self.config)
        self.wallet = wallet if wallet is not None else load_wallet(self.config)
        self.chain = chain if chain is not None else make_chain(self.config)
        self.step = 0
        # Saved state first: a sync must never overwrite what a previous run learned.
        self.load_state()
        self.metagraph: MetagraphSnapshot = self.chain.metagraph()
        self.uid = self.require_registered()
        logger.info(
            f"{self.neuron_type} hotkey {self.wallet.hotkey.ss58_address} uid {self.uid} "
            f"on netuid {self.config.netuid} ({'mock chain' if self.config.mock else self.config.subtensor.network})"
        )

    @property
    def hotkey(self) -> str:
        return self.wallet.hotkey.ss58_address

    @property
    def block(self) -> int:
        return self.chain.block()

    def require_registered(self) -> int:
        uid = self.metagraph.uid_of(self.hotkey)
        if uid is None:
            raise NotRegisteredError(
                f"hotkey {self.hotkey} (wallet {self.config.wallet.name}/{self.config.wallet.hotkey}) is not "
                f"registered on netuid {self.config.netuid}. Register it first: "
                f"`btcli subnets register --netuid {self.config.netuid} --wallet.name {self.config.wallet.name} "
                f"--wallet.hotkey {self.config.wallet.hotkey}`"
            )
        return uid

    def sync(self) -> MetagraphSnapshot:
        """Refresh the metagraph; stop with a clear error if this hotkey was deregistered."""
        self.metagraph = self.chain.metagraph()
        self.uid = self.require_registered()
        return self.metagraph

    def load_state(self) -> None:
        """Subclasses restore saved state here; called before the first sync."""

    def save_state(self) -> None:
        """Subclasses persist state here."""
