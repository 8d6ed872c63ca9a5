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
from pathlib import Path
from typing import Sequence

from loguru import logger

from template.args import ArgumentParser
from template.chain import BittensorChain, ChainClient, MetagraphSnapshot, NotRegisteredError
from template.mock_chain import InMemoryChain
from template.config import add_chain_args, add_neuron_args, check_config, parse_config
from template.log import setup_logging_from_config
from template.wallet import load_wallet


def make_chain(config, existing_file: bool = False) -> ChainClient:
    """The in-memory chain with `--mock`, else the real one named by `--subtensor.*`.

    `existing_file`: a `--mock.chain_state` file must exist already (a neuron that only reads
    the chain, or writes as a registered hotkey, never creates one: nobody is registered in
    an empty chain, and creating it would leave a stray file and its lock behind)."""
    if config.mock:
        path = config.mock_chain_state
        if existing_file and path and not Path(path).is_file():
            raise NotRegisteredError(
                f"--mock.chain_state {path}: no such chain file. Register the hotkey first: `{register_command(config)}`")
        return InMemoryChain(netuid=int(config.netuid), path=path)
    return BittensorChain(config=config, netuid=int(config.netuid))


def register_command(config) -> str:
    """The command that registers this wallet's hotkey: `btcli` on a real chain, the mock chain's
    own `register` with `--mock` (btcli knows nothing of a mock chain file)."""
    wallet = f"--wallet.name {config.wallet.name} --wallet.hotkey {config.wallet.hotkey}"
    if config.mock:
        chain = config.get("mock_chain_state")
        command = f"python -m template.mock_chain register --mock.chain_state {chain or 'FILE'} --netuid {config.netuid} {wallet}"
        return command if chain else f"{command}`, then pass `--mock.chain_state FILE"
    network = config.subtensor.network
    return f"btcli subnets register --netuid {config.netuid} {wallet}" + (
        f" --subtensor.network {network}" if network and network != "finney" else "")


class BaseNeuron(ABC):
    neuron_type = "BaseNeuron"
    neuron_name = "neuron"
    # Whether this neuron keeps files under --neuron.full_path (state, logs): only then is
    # the directory created. A one-shot neuron (the miner) leaves no empty folders behind.
    keeps_state = True

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        add_chain_args(parser)
        add_neuron_args(parser, cls.neuron_name)

    @classmethod
    def build_parser(cls, description: str | None = None) -> argparse.ArgumentParser:
        # allow_abbrev=False: a mistyped or shortened flag is an error, never another flag
        parser = ArgumentParser(description=description or cls.__doc__)
        cls.add_args(parser)
        return parser

    @classmethod
    def config_from_argv(cls, argv: Sequence[str] | None = None):
        return parse_config(cls.build_parser(), argv)

    def __init__(self, config, chain: ChainClient | None = None, wallet=None, setup_logs: bool = True):
        self.config = check_config(config, create=self.keeps_state)
        if setup_logs:
            setup_logging_from_config(self.config)
        self.wallet = wallet if wallet is not None else load_wallet(self.config)
        self.chain = chain if chain is not None else make_chain(self.config, existing_file=not self.keeps_state)
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
                f"registered on netuid {self.config.netuid}{' of the mock chain' if self.config.mock else ''}. "
                f"Register it first: `{register_command(self.config)}`"
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
