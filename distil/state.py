"""The validator's state: versioned JSON, written atomically, with backups.

Shape (version 1)::

    {"version": 1, "scoring_version": 1, "king": HOTKEY | null, "last_epoch_block": INT | null,
     "miners": {HOTKEY: {"uid": 3, "commitment": "ns/name@sha", "commit_block": 10,
                         "status": "king" | "evaluated" | "pending" | "disqualified",
                         "reason": null | "COPY" | "REMOVED" | "INVALID" | "KL_TOO_HIGH",
                         "code": ..., "detail": ..., "kl": {...} | null, "content_hash": ...,
                         "checked": bool, "seen_public": bool,
                         "strikes": INT, "last_check_block": INT | null,
                         "coldkey": SS58 | null, "eval_strikes": INT,
                         "commit_block_hash": "0x…" | null, ...}},
     "hash_owners": {HASH: {"hotkey": ..., "commit_block": ..., "commitment": ..., "block_hash": "0x…" | null}},
     "last_round": {"seed_block": ..., "seed": ..., "models": [HOTKEY, ...], ...} | null,
     "legacy_king": HOTKEY | null,   (the previous scoring version's king, weighted until a round crowns a king)
     "checks_version": INT,          (the pre-checks' version the records were checked under)
     "owner_rule_block": INT | null, (commitments before this block need no distil.json: they predate the rule)
     "contender": {...} | null}      (spec v3's model under confirmation: distil.state_schema.Contender)

Writes go to a temporary file that is fsynced and renamed over `state.json`, so a
validator killed at any moment leaves either the old or the new state, never half of one.
The previous states are kept as `state.json.1` (newest) … `state.json.N`, rotated by
renames too (the copy that becomes `.1` is written whole under a temporary name first): a
full disk leaves every file as it was. Every field is
validated against one declared schema (`distil.state_schema`: types, ranges, the king
invariants) on load and before each save; a state file that does not parse, fails the
schema, or comes from a newer version of this code, is an error that names the file and
the field, and is left untouched (nothing is repaired silently).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from distil import CHECKS_VERSION, SCORING_VERSION
from distil.state_schema import validate_state

STATE_VERSION = 1
STATE_FILE = "state.json"
BACKUPS = 5

KING = "king"
EVALUATED = "evaluated"
PENDING = "pending"
DISQUALIFIED = "disqualified"
STATUSES = (KING, EVALUATED, PENDING, DISQUALIFIED)

COPY = "COPY"
REMOVED = "REMOVED"
INVALID = "INVALID"
KL_TOO_HIGH = "KL_TOO_HIGH"
REASONS = (COPY, REMOVED, INVALID, KL_TOO_HIGH)


class StateError(Exception):
    """A state file that cannot be used; it is kept as it is."""


@dataclass
class MinerRecord:
    """What the validator knows about one hotkey's (single) commitment."""

    uid: int
    commitment: str
    commit_block: int
    status: str = PENDING
    reason: str | None = None
    code: str | None = None
    detail: str | None = None
    kl: dict | None = None  # {"mean", "se", "median", "p99", "top1", "seed_block"}
    content_hash: str | None = None
    files_hash: str | None = None
    params: int | None = None
    checked: bool = False  # pre-checks passed: ready for (or done with) evaluation
    seen_public: bool = False
    first_seen_block: int | None = None
    strikes: int = 0  # pre-check attempts that failed for a reason specific to this repo
    last_check_block: int | None = None  # the last pre-check attempt that reached no verdict
    coldkey: str | None = None  # the hotkey's owner on chain (per-coldkey challenger cap)
    eval_strikes: int = 0  # evaluation failures (load, score, probe, deadline, worker death) that were its own
    # The hash of the block holding the commitment: the same-block draw of every copy rule
    # (distil.precedence). Read from the chain once (distil.scoring.ownership.note_block_hashes).
    commit_block_hash: str | None = None

    @property
    def evaluated(self) -> bool:
        return self.kl is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "MinerRecord":
        """A record from already validated JSON (see `ValidatorState.from_json`)."""
        return cls(**data)


@dataclass
class ValidatorState:
    king: str | None = None
    miners: dict[str, MinerRecord] = field(default_factory=dict)
    hash_owners: dict[str, dict] = field(default_factory=dict)
    last_round: dict | None = None
    last_epoch_block: int | None = None
    scoring_version: int = SCORING_VERSION
    version: int = STATE_VERSION
    # The king of an earlier scoring version: keeps the weights until a round under this
    # version crowns a king (distil.scoring.epoch.migrate_scoring_version).
    legacy_king: str | None = None
    # The pre-checks' version the records were checked under (distil.CHECKS_VERSION).
    checks_version: int = CHECKS_VERSION
    # Spec v3's model under confirmation (win twice): `Contender.to_dict()`, or None.
    contender: dict | None = None
    # Spec v3's ownership rule (distil.json names the committing hotkey) holds for commitments
    # made at this block or later; earlier ones predate it and keep their rule. 0 for a
    # state begun under the rule; None for a state written before it, set at its first
    # epoch to the chain's next block (distil.scoring.ownership.adopt_owner_rule).
    owner_rule_block: int | None = 0
    # Spec v3's functional copies across rounds: this validator's private fingerprint inputs
    # (`FingerprintInputs.to_dict()`, set by its first round that computes fingerprints), and
    # every scored commitment's fingerprint, keyed by the commitment: {"hotkey", "commitment",
    # "commit_block", "block_hash", "fingerprint"} (distil.scoring.epoch.judge_fingerprints).
    fingerprint_inputs: dict | None = None
    fingerprints: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "scoring_version": self.scoring_version,
            "king": self.king,
            "last_epoch_block": self.last_epoch_block,
            "miners": {hk: m.to_json() for hk, m in sorted(self.miners.items())},
            "hash_owners": dict(sorted(self.hash_owners.items())),
            "last_round": self.last_round,
            "legacy_king": self.legacy_king,
            "checks_version": self.checks_version,
            "contender": self.contender,
            "owner_rule_block": self.owner_rule_block,
            "fingerprint_inputs": self.fingerprint_inputs,
            "fingerprints": dict(sorted(self.fingerprints.items())),
        }

    @classmethod
    def from_json(cls, data: Any) -> "ValidatorState":
        """Validate `data` against the declared schema, then build the state; StateError names the field."""
        if not isinstance(data, dict):
            raise StateError("state is not a JSON object")
        version = data.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise StateError("state has no integer 'version'")
        if version > STATE_VERSION:
            raise StateError(
                f"state version {version} is newer than this validator understands ({STATE_VERSION}); "
                "upgrade the validator"
            )
        try:
            validate_state(data)
        except ValueError as e:
            raise StateError(f"invalid field {e}") from None
        return cls._build(data)

    @classmethod
    def _build(cls, data: dict[str, Any]) -> "ValidatorState":
        return cls(
            king=data.get("king"),
            miners={hk: MinerRecord.from_json(m) for hk, m in data.get("miners", {}).items()},
            hash_owners=dict(data.get("hash_owners", {})),
            last_round=data.get("last_round"),
            last_epoch_block=data.get("last_epoch_block"),
            scoring_version=data.get("scoring_version", SCORING_VERSION),
            version=data["version"],
            legacy_king=data.get("legacy_king"),
            checks_version=data.get("checks_version", 1),  # states from before it was recorded: v1
            contender=data.get("contender"),
            owner_rule_block=data.get("owner_rule_block"),  # states from before the rule: None (set at adoption)
            fingerprint_inputs=data.get("fingerprint_inputs"),
            fingerprints={k: dict(v) for k, v in data.get("fingerprints", {}).items()},
        )

    def copy(self) -> "ValidatorState":
        """A deep copy (not re-validated: the epoch's steps may pass through intermediate states)."""
        return ValidatorState._build(json.loads(json.dumps(self.to_json())))


def state_path(directory: str | Path) -> Path:
    return Path(directory) / STATE_FILE


def load_state(directory: str | Path) -> ValidatorState:
    """The saved state, or a fresh one when there is none. Raises StateError, never overwrites."""
    path = state_path(directory)
    if not path.exists():
        return ValidatorState()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StateError(
            f"cannot read {path}: {e}. The file is kept as it is; restore a backup "
            f"({path.name}.1 …) or move it away to start fresh."
        ) from None
    try:
        state = ValidatorState.from_json(data)
    except StateError as e:
        raise StateError(
            f"{path}: {e}. The file is kept as it is: fix that field, restore a backup ({path.name}.1 …), "
            f"or see every problem with `distil-state check --state-dir {path.parent}`."
        ) from None
    return state


def _write_durably(path: Path, data: bytes) -> None:
    """`data` in a new file at `path` (truncated first), flushed to the disk (fsync)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(state: ValidatorState, directory: str | Path, backups: int = BACKUPS) -> Path:
    """Write atomically, and rotate backups, by renames only: every file is written whole to
    a temporary name (fsync) before a rename makes it visible, so a full disk, a crash or a
    kill at any instant leaves `state.json` and each `state.json.N` complete (old or new),
    never half-written. An OSError (ENOSPC...) leaves every visible file as it was."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = state_path(directory)
    data = state.to_json()
    try:
        validate_state(data)  # never write a state the next start would refuse
    except ValueError as e:
        raise StateError(f"refusing to save an invalid state: {e}") from None
    text = json.dumps(data, indent=1, sort_keys=False, allow_nan=False).encode()
    tmp = directory / f".{STATE_FILE}.tmp"
    backup_tmp = directory / f".{STATE_FILE}.1.tmp"
    try:
        # Everything that needs disk space is written before anything visible changes.
        _write_durably(tmp, text)
        rotate = path.exists() and backups > 0
        if rotate:
            _write_durably(backup_tmp, path.read_bytes())  # the current state, whole, before it becomes .1
    except BaseException:
        for leftover in (tmp, backup_tmp):
            try:
                leftover.unlink()
            except OSError:
                pass
        raise
    if rotate:
        for i in range(backups - 1, 0, -1):
            older = directory / f"{STATE_FILE}.{i}"
            if older.exists():
                os.replace(older, directory / f"{STATE_FILE}.{i + 1}")
        os.replace(backup_tmp, directory / f"{STATE_FILE}.1")
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


# -- operator requests --------------------------------------------------------------------
# `distil-state requeue` does not edit state.json under a running validator (its next save
# would undo the edit): it drops a request in `<state dir>/requests/`, which the validator
# applies at the start of its next epoch.

REQUESTS_DIR = "requests"


def request_requeue(directory: str | Path, hotkey: str) -> Path:
    requests = Path(directory) / REQUESTS_DIR
    requests.mkdir(parents=True, exist_ok=True)
    path = requests / f"requeue-{hotkey}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"action": "requeue", "hotkey": hotkey}))
    os.replace(tmp, path)
    return path


def pending_requests(directory: str | Path) -> list[tuple[Path, dict]]:
    requests = Path(directory) / REQUESTS_DIR
    if not requests.is_dir():
        return []
    out = []
    for path in sorted(requests.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("action") == "requeue" and isinstance(data.get("hotkey"), str):
            out.append((path, data))
    return out
