"""The argument parser every program uses (argparse's, with a usage error on one line), and
`one_line`, how every program and log puts an error on one line.

argparse answers a bad flag or number with its whole usage block and then the error; in a
terminal or a log the error is the last of many lines. Here it is one line that names the
argument and says where the usage is:

    distil-train: error: argument --max-steps: invalid int value: 'abc' (distil-train --help for usage)

with exit status 2, as argparse's. Flags are never abbreviated (`--dry` is not `--dry-run`).
Standard library only: `distil-check --help` must not import bittensor or torch.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Where a neuron keeps its state by default (the subnet template's layout).
NEURONS_ROOT = "~/.bittensor/miners"


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` whose usage errors are one line (exit 2); subcommands inherit it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help for usage)\n")


def default_device() -> str:
    """The torch device every program uses when none is given: "cuda" when torch sees a CUDA
    device, else "cpu" (the validator's `--neuron.device`, `distil-eval`'s and `distil-train`'s
    `--device` agree, so the same command scores alike on the same machine)."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # torch is a dependency, but parsing flags must not need it
        return "cpu"


def one_line(e: BaseException | str, limit: int = 300) -> str:
    """An exception's message (or a text) on one line, cut to `limit` characters."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def default_full_path(wallet_name: str, hotkey: str, netuid: int, neuron_name: str, root: str | None = None) -> str:
    """A neuron's default `--neuron.full_path`: `<root>/<wallet>/<hotkey>/netuid<netuid>/<neuron name>`,
    `root` being `--logging.logging_dir` when given, else bittensor's default for it
    (`BT_LOGGING_LOGGING_DIR`, else ~/.bittensor/miners); absolute, `~` expanded."""
    base = Path(os.path.expanduser(root or os.environ.get("BT_LOGGING_LOGGING_DIR") or NEURONS_ROOT))
    return str((base / str(wallet_name) / str(hotkey) / f"netuid{netuid}" / str(neuron_name)).absolute())
