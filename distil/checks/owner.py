"""The ownership file (spec v3): a repo names, at its pinned revision, the hotkey that commits it.

`distil.json` at the repo's root holds one JSON object::

    {"hotkey": "<ss58 address of the hotkey that commits this repo@revision>"}

Only `hotkey` is read. A commitment whose repo has no such file at the pinned revision
(`OWNER_MISSING`) or names another hotkey (`OWNER_MISMATCH`) is INVALID, whatever its
block: copying someone's `repo@revision` string onto the chain, earlier or in the same
block, gains nothing. Identical weights uploaded again to another repo, with a file
naming the new committer, pass here and are judged as copies by the hash claims
(`distil.precedence`).

Commitments made before the rule (spec v2) are exempt: the validator passes the reason
(`owner_exempt` of `check_commitment`), see `distil.scoring.ownership`.
"""

from __future__ import annotations

import json
from pathlib import Path

from distil.checks.files import OWNER_FILE
from distil.checks.result import CheckFailure

HOTKEY_KEY = "hotkey"
MAX_HOTKEY_CHARS = 128  # an ss58 address is 47-48 characters; anything longer names no hotkey


def owner_file_text(hotkey: str) -> str:
    """The file's exact contents for `hotkey` (what `miner.py --write-owner` and `distil-train --hotkey` write)."""
    hotkey = validate_hotkey(hotkey)
    return json.dumps({HOTKEY_KEY: hotkey}) + "\n"


def validate_hotkey(hotkey: str) -> str:
    """`hotkey` if it can be named in the file (a non-empty string without whitespace); ValueError otherwise."""
    if not isinstance(hotkey, str) or not hotkey or any(c.isspace() for c in hotkey) or len(hotkey) > MAX_HOTKEY_CHARS:
        raise ValueError(f"{hotkey!r} is not a hotkey address (an ss58 string such as 5F...)")
    return hotkey


def write_owner_file(directory: str | Path, hotkey: str) -> Path:
    """Write `directory/distil.json` naming `hotkey` (replacing any earlier one); returns its path."""
    path = Path(directory) / OWNER_FILE
    text = owner_file_text(hotkey)
    tmp = path.with_name(f".{OWNER_FILE}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def named_hotkey(value: dict) -> str:
    """The hotkey a parsed `distil.json` names; OWNER_MISSING when it names none."""
    hotkey = value.get(HOTKEY_KEY)
    if not isinstance(hotkey, str):
        raise CheckFailure(
            "OWNER_MISSING",
            f"{OWNER_FILE} names no hotkey: it must be {{\"{HOTKEY_KEY}\": \"<your hotkey's ss58 address>\"}}, "
            f"got the keys {sorted(value)[:8]}",
        )
    try:
        return validate_hotkey(hotkey)
    except ValueError:
        raise CheckFailure("OWNER_MISSING", f"{OWNER_FILE}'s \"{HOTKEY_KEY}\" is {hotkey[:80]!r}, not a hotkey address") from None


def check_owner(named: str, hotkey: str) -> None:
    """OWNER_MISMATCH unless the file names the committing `hotkey`."""
    if named != hotkey:
        raise CheckFailure(
            "OWNER_MISMATCH",
            f"{OWNER_FILE} names the hotkey {named}, but {hotkey} committed this repo@revision: a commitment "
            "counts only from the hotkey its repo names",
        )
