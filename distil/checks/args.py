"""Command-line flags for the pre-checks (`--checks.*`), for the validator to add to its parser,
and the one judgement every program makes of a model argument (`source_problem`).

    add_check_args(parser)
    limits = limits_from_config(config)          # CheckLimits
    grace = config.checks.public_grace_blocks    # for publication_verdict
    problem = source_problem("./my-student", "--student")   # None, or one line naming what is wrong
"""

from __future__ import annotations

import argparse
import os
import re

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


# A revision after '@': a commit sha, a branch or a tag (the hub's own characters).
_REVISION = re.compile(r"^[\w.\-/]{1,255}$")


def looks_like_path(source: str) -> bool:
    """A model argument no hub repo id can be: `/abs`, `./rel`, `../rel`, `~/x`, `.`, `..`, or a
    relative path with more than one '/' (a repo id is `namespace/name`)."""
    return source in (".", "..") or source.startswith(("/", "./", "../", "~")) or source.partition("@")[0].count("/") > 1


def source_problem(source: str, flag: str, required: tuple[str, ...] = ("config.json",)) -> str | None:
    """Why `source` cannot be the model `flag` names (one line), or None: an existing,
    readable directory holding the `required` files, or a well-formed `namespace/name[@revision]`.
    Nothing is read but the directory's listing; no hub is asked."""
    if not source.strip():
        return f"{flag}: empty; give a model directory or namespace/name[@revision]"
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        if not os.access(path, os.R_OK | os.X_OK):
            return f"{flag} {source}: cannot read the directory (permission denied)"
        missing = [name for name in required if not os.path.isfile(os.path.join(path, name))]
        return f"{flag} {source}: directory has no {', '.join(missing)}" if missing else None
    if os.path.exists(path):
        return f"{flag} {source}: not a directory (give the model's directory, not a file in it)"
    if looks_like_path(source):
        return f"{flag} {source}: no such directory"
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo, at, revision = source.partition("@")
    if at and not _REVISION.match(revision):
        return f"{flag} {source}: malformed revision {revision!r} after '@'"
    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        return f"{flag} {source}: neither a local directory nor a hub repo id ({str(e).splitlines()[0]})"
    if "/" not in repo:
        return f"{flag} {source}: neither a local directory nor a hub repo id (namespace/name)"
    return None
