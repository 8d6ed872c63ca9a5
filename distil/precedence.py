"""Which of two commitments came first: the one tie rule for every kind of copy (spec v3).

The earlier commit block owns a model, whether the copy is byte for byte (a hash claim,
`distil.checks.hashing.DuplicateRegistry`) or functional (`distil.scoring.rules.
functional_copies`). Two commitments in the **same block** are ordered by a draw::

    draw(block_hash, hotkey) = sha256("distil-tie|1|" + block_hash (lower-case hex, no 0x) + "|" + hotkey)

lower draw first. The chain does not expose the order of extrinsics within a block, so
something else must decide, and it must be something the committer can neither predict nor
grind: the hash of the block that holds the commitment is unknown until that block exists,
after the commitment was sent. The ss58 order of the hotkeys (spec v2's rule) could be
ground: a thief generates hotkeys until one sorts before the victim's, then copies the
victim's commitment into the same block.

A commitment whose block hash is not known (`None`: records from before spec v3, or a
caller without a chain) keeps spec v2's rule, the hotkey's ss58 order, after every drawn
commitment of its block. The validator records every commitment's block hash, so its
decisions always draw.
"""

from __future__ import annotations

import hashlib

TIE_LABEL = "distil-tie|1|"


def tie_draw(block_hash: str, hotkey: str) -> str:
    """The same-block draw of `hotkey`'s commitment in the block whose hash is `block_hash`."""
    digest = block_hash.strip().lower()
    digest = digest[2:] if digest.startswith("0x") else digest
    return hashlib.sha256(f"{TIE_LABEL}{digest}|{hotkey}".encode()).hexdigest()


def precedence(commit_block: int, block_hash: str | None, hotkey: str) -> tuple[int, int, str]:
    """Sort key of a commitment: earlier block first; in one block, the lower draw first
    (commitments without a known block hash after those with one, by hotkey)."""
    if block_hash:
        return (int(commit_block), 0, tie_draw(block_hash, hotkey))
    return (int(commit_block), 1, hotkey)
