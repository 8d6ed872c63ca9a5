"""Spec v3's ownership, as pure functions over `ValidatorState`: who must carry `distil.json`,
and the commit blocks' hashes every same-block draw needs.

* **The rule's first block.** A commitment made at `state.owner_rule_block` or later must
  carry, at its pinned revision, a `distil.json` naming its hotkey (`distil.checks.owner`);
  one made before it predates the rule and keeps spec v2's (no file needed). A state begun
  under the rule holds 0 (every commitment needs the file). A state written before the
  rule existed holds none: at its first epoch `adopt_owner_rule` records the chain's next
  block, so every commitment that was already on chain when the validator upgraded keeps
  its standing, the king's included, and every later one needs the file. A checks-version
  migration (`migrate_checks_version`) that checks old records again therefore never
  refuses them for lacking the file.
* **Block hashes.** The tie rule (`distil.precedence`) draws from the hash of the block a
  commitment was made in. The validator reads it from the chain once per commit block and
  keeps it on the record (`commit_block_hash`) and on the hash owners (`block_hash`), so
  every later decision is a pure function of the state.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Mapping

from distil.scoring.verdicts import Event
from distil.state import ValidatorState

_HASH = re.compile(r"^(0x)?[0-9a-f]{64}$")


def adopt_owner_rule(state: ValidatorState, next_block: int) -> tuple[ValidatorState, list[Event]]:
    """A state from before the ownership rule (`owner_rule_block` None) starts it at
    `next_block` (the block after the last one the validator has read): commitments made
    earlier keep their rule. Any other state is returned as it is."""
    if state.owner_rule_block is not None:
        return state, []
    state = state.copy()
    state.owner_rule_block = int(next_block)
    return state, [Event("owner_rule", None, f"spec v3's ownership rule (distil.json names the committing hotkey) holds "
                                             f"for commitments from block {next_block}; earlier ones keep their rule")]


def owner_exemption(state: ValidatorState, hotkey: str) -> str | None:
    """Why `hotkey`'s commitment needs no distil.json (it predates the rule), or None: it needs one."""
    record = state.miners[hotkey]
    start = state.owner_rule_block
    if start is None:  # the rule not adopted yet: nothing from before can be refused for it
        return "this validator's state predates the ownership rule"
    if record.commit_block < start:
        return f"committed at block {record.commit_block}, before the ownership rule (block {start})"
    return None


def normalize_block_hash(value: str) -> str:
    """A block hash as the state keeps it (`0x` + 64 lower-case hex); ValueError otherwise."""
    text = str(value).strip().lower()
    if not _HASH.match(text):
        raise ValueError(f"{value!r} is not a block hash (0x and 64 hex characters)")
    return text if text.startswith("0x") else "0x" + text


def blocks_without_hash(state: ValidatorState) -> list[int]:
    """The commit blocks whose hash the state lacks (records and hash owners), sorted."""
    blocks = {m.commit_block for m in state.miners.values() if m.commit_block_hash is None}
    blocks |= {int(o["commit_block"]) for o in state.hash_owners.values() if not o.get("block_hash")}
    return sorted(blocks)


def note_block_hashes(state: ValidatorState, hashes: Mapping[int, str]) -> ValidatorState:
    """Record each commit block's hash (`{block: hash}` from the chain) where the state lacks it."""
    hashes = {int(b): normalize_block_hash(h) for b, h in hashes.items()}
    state = state.copy()
    for hotkey, record in state.miners.items():
        if record.commit_block_hash is None and record.commit_block in hashes:
            state.miners[hotkey] = replace(record, commit_block_hash=hashes[record.commit_block])
    for owner in state.hash_owners.values():
        if not owner.get("block_hash") and int(owner["commit_block"]) in hashes:
            owner["block_hash"] = hashes[int(owner["commit_block"])]
    return state
