"""Pre-checks: judge a committed model on CPU, cheaply, fail-closed, before any GPU time.

The validator calls:

* `check_commitment(store, commitment, limits, teacher=..., owner_of=..., hotkey=..., owner_exempt=...) -> CheckResult`
  (`check_ownership` runs its ownership step alone: spec v3's distil.json, `owner.py`)
* `check_integrity(store, commitment) -> IntegrityResult` (OK / REMOVED / TRANSIENT)
* `publication_verdict(commit_block, now_block, grace_blocks, seen_public_before)` for a
  result whose reason is UNAVAILABLE (PENDING / INVALID / REMOVED)
* `DuplicateRegistry` (who owns a hash) and `load_reference` (the teacher's tokenizer).

Codes and reason classes are listed in `codes.py` and docs/checks.md.
"""

from distil.checks.codes import CODES, COPY, INVALID, REASONS, REMOVED, TRANSIENT, UNAVAILABLE, reason_of
from distil.checks.hashing import Claim, DuplicateRegistry, content_hash, files_hash, scan_weights
from distil.checks.integrity import IntegrityResult, check_integrity
from distil.checks.pipeline import STEPS, check_commitment, check_ownership
from distil.checks.publication import DEFAULT_PUBLIC_GRACE_BLOCKS, PENDING, publication_verdict
from distil.checks.result import CheckFailure, CheckLimits, CheckResult, CheckStep
from distil.checks.tokenizer import TokenizerReference, load_reference, reference_from_tokenizer

__all__ = [
    "CODES",
    "COPY",
    "INVALID",
    "REASONS",
    "REMOVED",
    "TRANSIENT",
    "UNAVAILABLE",
    "PENDING",
    "DEFAULT_PUBLIC_GRACE_BLOCKS",
    "Claim",
    "CheckFailure",
    "CheckLimits",
    "CheckResult",
    "CheckStep",
    "DuplicateRegistry",
    "IntegrityResult",
    "STEPS",
    "TokenizerReference",
    "check_commitment",
    "check_ownership",
    "check_integrity",
    "content_hash",
    "files_hash",
    "load_reference",
    "publication_verdict",
    "reason_of",
    "reference_from_tokenizer",
    "scan_weights",
]
