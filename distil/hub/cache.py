"""A bounded local cache of model snapshots: which revisions to evict, and evicting them.

`plan_evictions` is the pure decision (least recently used first, never a kept entry);
`evict_hf_cache` applies it to a huggingface_hub cache directory with the hub's own
`scan_cache_dir` / `delete_revisions`, so blobs shared with a kept revision stay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Sequence


@dataclass(frozen=True)
class CacheEntry:
    """One cached snapshot: `key` identifies it (`repo@revision`), `size` in bytes,
    `last_used` a timestamp (bigger is more recent)."""

    key: str
    size: int
    last_used: float


def plan_evictions(
    entries: Sequence[CacheEntry], max_bytes: int, keep: Collection[str] = (), incoming: int = 0
) -> list[str]:
    """Keys to evict, least recently used first, so that the cache plus `incoming` bytes
    fits in `max_bytes`. Kept keys are never evicted; if the kept entries alone exceed
    the budget the plan evicts everything else and the cache stays over budget.

    Ties on `last_used` are broken by key, so the plan is deterministic.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    total = sum(e.size for e in entries) + incoming
    plan = []
    for entry in sorted(entries, key=lambda e: (e.last_used, e.key)):
        if total <= max_bytes:
            break
        if entry.key in keep:
            continue
        plan.append(entry.key)
        total -= entry.size
    return plan


def touch_snapshot(path: str | Path) -> None:
    """Mark a snapshot as just used (its directory's mtime is the LRU clock)."""
    try:
        os.utime(path)
    except OSError:
        pass


def hf_cache_entries(cache_dir: str | Path):
    """(entries, {key: commit hash}, scan) for the model snapshots in a huggingface_hub cache."""
    from huggingface_hub import scan_cache_dir

    scan = scan_cache_dir(cache_dir)
    entries, hashes = [], {}
    for repo in scan.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            key = f"{repo.repo_id}@{revision.commit_hash}"
            try:
                last_used = os.stat(revision.snapshot_path).st_mtime
            except OSError:
                last_used = 0.0
            entries.append(CacheEntry(key, revision.size_on_disk, last_used))
            hashes[key] = revision.commit_hash
    return entries, hashes, scan


def evict_hf_cache(cache_dir: str | Path, max_bytes: int, keep: Collection[str] = (), incoming: int = 0) -> list[str]:
    """Delete least recently used snapshots from a huggingface_hub cache; returns their keys."""
    if not Path(cache_dir).is_dir():
        return []
    entries, hashes, scan = hf_cache_entries(cache_dir)
    plan = plan_evictions(entries, max_bytes, keep=keep, incoming=incoming)
    if plan:
        scan.delete_revisions(*(hashes[k] for k in plan)).execute()
    return plan
