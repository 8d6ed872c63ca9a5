"""Axon guards: admit registered hotkeys only, and rate-limit each caller."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from typing import Callable

from loguru import logger


class RateLimiter:
    """At most `max_requests` per caller in any `window_s` seconds (sliding window)."""

    def __init__(self, max_requests: int = 10, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.max_requests = int(max_requests)
        self.window_s = float(window_s)
        self.clock = clock
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, caller: str) -> bool:
        now = self.clock()
        with self._lock:
            seen = self._seen[caller]
            while seen and now - seen[0] >= self.window_s:
                seen.popleft()
            if len(seen) >= self.max_requests:
                return False
            seen.append(now)
            return True


def registered_only_blacklist(
    is_registered: Callable[[str], bool], limiter: RateLimiter | None = None
) -> Callable:
    """A blacklist function for `Axon.attach`: refuse unknown hotkeys and callers over the limit."""

    def verdict(synapse) -> tuple[bool, str]:
        caller = getattr(getattr(synapse, "dendrite", None), "hotkey", None)
        if not caller:
            return True, "request carries no hotkey"
        if not is_registered(caller):
            return True, f"hotkey {caller} is not registered on this subnet"
        if limiter is not None and not limiter.allow(caller):
            return True, f"hotkey {caller} is over the rate limit"
        return False, "registered hotkey"

    def blacklist(synapse) -> tuple[bool, str]:
        refused, reason = verdict(synapse)
        if refused:  # routine (strangers, eager callers): DEBUG, never stdout
            logger.debug(f"axon refused a {type(synapse).__name__} request: {reason}")
        return refused, reason

    return blacklist
