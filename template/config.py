"""Command-line configuration for neurons, the bittensor way, with the traps removed.

Flags follow bittensor conventions (`--netuid`, `--wallet.name`, `--wallet.hotkey`,
`--subtensor.network`, `--logging.debug`, `--neuron.*`, `--wandb.*`, `--mock`) and the
result is a `bt.Config`, so `bt.Wallet(config=...)` and `bt.Subtensor(config=...)` read
it as usual.

Two traps of bittensor 10.5 are avoided by parsing with argparse ourselves and building
the `bt.Config` from the result:

* `bt.Config(parser)` ignores the command line unless `BT_NO_PARSE_CLI_ARGS=0` is set
  before it is built, and reads `sys.argv` when it is given an empty argument list;
* it parses with `parse_known_args`, so a mistyped flag is silently ignored.

Here an unknown flag is an error that names it, and `config.is_set("neuron.full_path")`
says whether a flag was given explicitly (the template's `check_config` rewrote an
explicit `--neuron.full_path`; ours keeps it).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

import bittensor as bt

from template.args import default_device, default_full_path

DEFAULT_NETUID = 97


def add_alias(parser: argparse.ArgumentParser, *flags: str, dest: str, help: str | None = None, **kwargs) -> None:
    """Another spelling for an existing flag; it never overrides the flag's default."""
    parser.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, help=help or f"alias of --{dest}", **kwargs)


_LOGGING_HELP = {
    "logging.debug": "log DEBUG lines on stderr too (the log file always has them)",
    "logging.trace": "log TRACE lines too, bittensor's included (very verbose)",
    "logging.info": "log at INFO (the default)",
    "logging.record_log": "also write the log to <neuron.full_path>/logs/distil.log",
    "logging.logging_dir": "write the log to DIR/distil.log (given on the command line); also the root of the "
    "default --neuron.full_path (default: %(default)s)",
}


def add_chain_args(parser: argparse.ArgumentParser, netuid: int = DEFAULT_NETUID) -> None:
    """Wallet, subtensor, logging, `--netuid` and `--mock`, plus the live subnet's spellings."""
    bt.Wallet.add_args(parser)
    bt.Subtensor.add_args(parser)
    bt.logging.add_args(parser)
    for action in parser._actions:
        if action.dest == "subtensor._mock":  # the SDK's broken MockSubtensor; ours is --mock
            action.help = argparse.SUPPRESS
        elif action.dest in _LOGGING_HELP:  # the SDK's help describes its own logger, not ours
            action.help = _LOGGING_HELP[action.dest]
            if action.dest == "logging.logging_dir":
                action.metavar = "DIR"
    parser.add_argument("--netuid", type=int, default=netuid, help="subnet netuid (default: %(default)s)")
    parser.add_argument(
        "--mock",
        action="store_true",
        help="use the in-memory chain and a local model store instead of the real chain and hub",
    )
    # `--mock` is a bool, so its options live under flat names (`config.mock_chain_state`):
    # a nested `config.mock.*` would make `config.mock` a non-empty, always-truthy dict.
    parser.add_argument(
        "--mock.chain_state",
        dest="mock_chain_state",
        type=str,
        default=None,
        help="with --mock: JSON file holding the in-memory chain, shared between processes",
    )
    # The live subnet's miner used these spellings; keep its users' habits working.
    add_alias(parser, "--network", dest="subtensor.network")
    add_alias(parser, "--wallet-name", dest="wallet.name")
    add_alias(parser, "--hotkey-name", dest="wallet.hotkey")


def add_neuron_args(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--neuron.name", type=str, default=name, help="name of this neuron, used in paths")
    parser.add_argument(
        "--neuron.full_path",
        type=str,
        default=None,
        help="directory for this neuron's state and logs (default: "
        "~/.bittensor/miners/<wallet>/<hotkey>/netuid<netuid>/<neuron.name>); used as given",
    )
    parser.add_argument("--neuron.device", type=str, default=None, help="torch device (default: cuda if available, else cpu)")


def add_wandb_args(parser: argparse.ArgumentParser, project: str = "distil") -> None:
    parser.add_argument("--wandb.off", action="store_true", help="do not log to Weights & Biases")
    parser.add_argument("--wandb.offline", action="store_true", help="log to Weights & Biases in offline mode")
    parser.add_argument("--wandb.project", type=str, default=project, help="W&B project (default: %(default)s)")
    parser.add_argument("--wandb.entity", type=str, default=None, help="W&B entity (team or user)")


def namespace_to_config(namespace: argparse.Namespace, explicit: set[str]) -> bt.Config:
    """Nest dotted argparse destinations (`wallet.name`) into a `bt.Config`."""
    config = bt.Config()  # no parser: defaults only, never reads sys.argv
    for key, value in vars(namespace).items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = bt.Config()
                child.clear()
                node[part] = child
            node = child
        node[parts[-1]] = value
    object.__setattr__(config, "_explicit", frozenset(explicit))
    return config


def explicit_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations the user actually set on the command line."""
    probe = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._StoreConstAction)):
            kwargs["action"] = "store_const"
            kwargs["const"] = action.const
        else:
            kwargs["nargs"] = action.nargs
        probe.add_argument(*action.option_strings, **kwargs)
    known, _ = probe.parse_known_args(list(argv))
    return set(vars(known))


def parse_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> bt.Config:
    """Parse `argv` (default: `sys.argv[1:]`) strictly into a `bt.Config`."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    namespace = parser.parse_args(argv)  # unknown flags: argparse prints them and exits 2
    return namespace_to_config(namespace, explicit_flags(parser, argv))


def is_set(config: bt.Config, key: str) -> bool:
    return key in getattr(config, "_explicit", frozenset())


def check_config(config: bt.Config, create: bool = True) -> bt.Config:
    """Fill in derived settings. An explicit `--neuron.full_path` is used exactly as given;
    the directory is created only with `create` (a neuron that keeps state or logs there)."""
    if not config.neuron.full_path:
        config.neuron.full_path = default_full_path(config.wallet.name, config.wallet.hotkey, config.netuid,
                                                    config.neuron.name, config.logging.logging_dir)
    config.neuron.full_path = str(Path(os.path.expanduser(config.neuron.full_path)).absolute())
    if create:
        if Path(config.neuron.full_path).exists() and not Path(config.neuron.full_path).is_dir():
            raise ValueError(f"--neuron.full_path {config.neuron.full_path}: a file, not a directory")
        Path(config.neuron.full_path).mkdir(parents=True, exist_ok=True)
    if not config.neuron.device:
        config.neuron.device = default_device()
    return config

