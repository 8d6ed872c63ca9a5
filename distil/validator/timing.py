"""Where an epoch's time goes: the seconds the pre-check spends downloading snapshots.

Logged per epoch (W&B `timings/precheck_download_s`, the round JSON's `timings`) next
to the round's own figures (`round_s`, `download_s`, `download_wait_s`), so the
next overlap — pre-checking new commitments while the round runs — can be judged from
real epochs.
"""

from __future__ import annotations

import time

from distil.hub.store import ModelStore


class TimedDownloads:
    """A view of `store` whose `download` calls add their seconds to `self.seconds`;
    every other attribute is the store's own."""

    def __init__(self, store: ModelStore):
        self._store = store
        self.seconds = 0.0

    def download(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self._store.download(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started

    def __getattr__(self, name):
        return getattr(self._store, name)
