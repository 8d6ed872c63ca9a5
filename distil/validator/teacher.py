"""The teacher a validator scores against, pinned once, and the snapshots it keeps.

A hub teacher is pinned at `--eval.teacher_revision` (or the repo's current revision,
resolved once and logged) and downloaded once; a directory is used as it is. The teacher
and the current king are needed every round, so their snapshots are kept out of the
bounded cache's eviction; a dethroned king is released.
"""

from __future__ import annotations

import os

from loguru import logger

from distil.commitment import Commitment, parse_commitment
from distil.hub import ModelStore
from distil.state import ValidatorState
from template.base.validator import one_line


class PinnedTeacher:
    def __init__(self, name: str, revision: str | None, store: ModelStore):
        self.name = name  # a directory or a hub repo
        self.revision = revision
        self.store = store
        self._commitment: Commitment | None = None
        self._pinned_king: Commitment | None = None

    def commitment(self) -> Commitment | None:
        """The teacher's repo at its pinned revision (resolved once, then logged); None for a directory."""
        if os.path.isdir(self.name):
            return None
        if self._commitment is None:
            revision = self.revision or self.store.resolve_revision(self.name)
            self._commitment = Commitment(self.name, revision)
            logger.info(f"teacher pinned at {self._commitment}")
        return self._commitment

    def directory(self) -> tuple[str, str]:
        """(a local directory with the teacher, its name for the round file), downloaded once."""
        commitment = self.commitment()
        if commitment is None:
            return self.name, self.name
        logger.info(f"teacher {commitment}: downloading (once; kept out of cache eviction)")
        return str(self.store.download(commitment)), str(commitment)

    def protect_snapshots(self, state: ValidatorState) -> None:
        """Keep the teacher and `state`'s king out of cache eviction.

        A cache nicety: if the hub cannot resolve the teacher now, the epoch goes on (the
        king's weights must not wait for it).
        """
        try:
            self._protect(state)
        except Exception as e:
            logger.warning(f"could not pin the teacher and king snapshots this epoch: {type(e).__name__}: {one_line(e)}")

    def _protect(self, state: ValidatorState) -> None:
        teacher = self.commitment()
        if teacher is not None:
            self.store.pin(teacher)
        king = state.miners.get(state.king) if state.king else None
        current = parse_commitment(king.commitment) if king is not None else None
        if self._pinned_king is not None and self._pinned_king != current:
            self.store.unpin(self._pinned_king)  # a dethroned king may be evicted again
        if current is not None:
            self.store.pin(current)
        self._pinned_king = current
