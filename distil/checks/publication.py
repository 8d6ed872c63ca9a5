"""What a commitment whose repo is not publicly readable means, as a pure decision.

Miners may commit before publishing, so that nobody can copy their weights before the
commitment lands; a repo that is missing, private or gated (or whose pinned revision is
not pushed yet) when first checked therefore stays *pending* and is re-checked each epoch
until a grace period (`--checks.public_grace_blocks`, one day of 12-second blocks by
default) has passed, then it is INVALID. Once a commitment was seen public, a later
disappearance is REMOVED: the model was there and was taken away.
"""

from __future__ import annotations

PENDING = "PENDING"
INVALID = "INVALID"
REMOVED = "REMOVED"

BLOCK_SECONDS = 12
DEFAULT_PUBLIC_GRACE_BLOCKS = 24 * 60 * 60 // BLOCK_SECONDS  # 7200 blocks, one day


def _block(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer block count, got {value!r}")
    return value


def publication_verdict(
    commit_block: int,
    now_block: int,
    grace_blocks: int = DEFAULT_PUBLIC_GRACE_BLOCKS,
    seen_public_before: bool = False,
) -> str:
    """PENDING, INVALID or REMOVED for a commitment that cannot be read publicly now.

    * seen public before (any earlier check read it at the pinned revision) ⇒ REMOVED;
    * else pending while ``now_block < commit_block + grace_blocks`` (also when the chain
      view lags and ``now_block < commit_block``);
    * else INVALID: it was never published within the grace period.
    """
    commit_block = _block("commit_block", commit_block)
    now_block = _block("now_block", now_block)
    grace_blocks = _block("grace_blocks", grace_blocks)
    if not isinstance(seen_public_before, bool):
        raise ValueError(f"seen_public_before must be a bool, got {seen_public_before!r}")
    if seen_public_before:
        return REMOVED
    if now_block < commit_block + grace_blocks:
        return PENDING
    return INVALID
