"""Command-line flags for the pre-checks (`--checks.*`), for the validator to add to its parser.

    add_check_args(parser)
    limits = limits_from_config(config)          # CheckLimits
    grace = config.checks.public_grace_blocks    # for publication_verdict
"""

from __future__ import annotations

import argparse

from distil import MAX_PARAMS, TEACHER_REPO, VOCAB_SIZE
from distil.checks.publication import DEFAULT_PUBLIC_GRACE_BLOCKS
from distil.checks.result import CheckLimits


def add_check_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pre-checks")
    group.add_argument(
        "--checks.public_grace_blocks",
        type=int,
        default=DEFAULT_PUBLIC_GRACE_BLOCKS,
        help="blocks after its commit block a not-yet-public repo stays pending before it is INVALID "
        "(default: %(default)s, one day)",
    )
    group.add_argument("--checks.max_params", type=int, default=MAX_PARAMS, help="parameter cap (default: %(default)s)")
    group.add_argument("--checks.vocab_size", type=int, default=VOCAB_SIZE, help="required vocab size (default: %(default)s)")
    group.add_argument(
        "--checks.teacher", default=TEACHER_REPO, help="tokenizer reference: a directory or a repo (default: %(default)s)"
    )
    group.add_argument("--checks.cache_dir", default=None, help="model download cache (default: huggingface_hub's)")
    group.add_argument(
        "--checks.max_cache_gb", type=float, default=None, help="evict least recently used snapshots above this size"
    )


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def limits_from_config(config) -> CheckLimits:
    """CheckLimits from a parsed config (a nested `bt.Config` or an argparse Namespace)."""
    if isinstance(config, argparse.Namespace):
        return CheckLimits(max_params=getattr(config, "checks.max_params"), vocab_size=getattr(config, "checks.vocab_size"))
    return CheckLimits(max_params=_get(config, "checks.max_params"), vocab_size=_get(config, "checks.vocab_size"))
