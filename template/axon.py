"""Axon guards: bound every request before it is read, admit registered hotkeys only, rate-limit each caller.

bittensor's Axon reads a request's whole body into memory (`Axon.verify_body_integrity`:
`await request.body()`, then `json.loads`) after its blacklist ran, so a registered caller
could send a body of any size, and a burst under the rate limit could add those up.
`limit_requests` puts `RequestGate` in front of everything the Axon does, as the outermost
ASGI middleware of its FastAPI app:

- a body declared (`Content-Length`) or found, while it streams in, to be larger than
  `max_body_bytes` is refused with 413 before more than that is read; a body that does
  not arrive within `body_timeout_s` is refused with 408;
- at most `max_in_flight` requests are read or answered at once (503 past that), and at
  most `max_in_flight_per_caller` from one caller (429): the caller is the hotkey the
  request names in its `bt_header_dendrite_hotkey` header (not yet verified at this
  point: the limit is on what a name can hold, the total on what everyone can), or its
  address when it names none;
- a request whose fields break its synapse's bounds (`distil.protocol.DistilStatus`:
  a hotkey is at most 48 characters) is refused with 400 naming the field, never echoing
  it.

uvicorn (h11) already bounds the request line and headers (16 KiB) and stops reading a
connection's socket once 64 KiB of its body wait unread, so the memory a request can take
is bounded by these limits, whatever the client sends.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
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


# -- bounded requests ----------------------------------------------------------------------

CALLER_HEADER = b"bt_header_dendrite_hotkey"


@dataclass(frozen=True)
class RequestLimits:
    """What one axon admits. The defaults fit a status endpoint: small requests, cheap answers."""

    max_body_bytes: int = 4096
    max_in_flight: int = 32
    max_in_flight_per_caller: int = 2
    body_timeout_s: float = 10.0


class RequestGate:
    """The limits and the requests in flight now (touched only from the server's event loop)."""

    def __init__(self, limits: RequestLimits = RequestLimits()):
        self.limits = limits
        self.by_caller: dict[str, int] = defaultdict(int)
        self.total = 0
        self.refused: dict[int, int] = defaultdict(int)  # status code -> count, for logs and tests

    def admit(self, caller: str) -> tuple[int, str] | None:
        """None and the request counted in, or (status, reason) to refuse it."""
        if self.total >= self.limits.max_in_flight:
            return 503, f"busy: {self.total} requests in flight (at most {self.limits.max_in_flight})"
        if self.by_caller[caller] >= self.limits.max_in_flight_per_caller:
            return 429, (f"too many requests in flight from this caller "
                         f"(at most {self.limits.max_in_flight_per_caller})")
        self.total += 1
        self.by_caller[caller] += 1
        return None

    def release(self, caller: str) -> None:
        self.total -= 1
        self.by_caller[caller] -= 1
        if not self.by_caller[caller]:
            del self.by_caller[caller]


class _BodyTooLarge(Exception):
    pass


class BoundedRequests:
    """ASGI middleware: the request's limits are checked, and its body read (bounded), before the app sees it."""

    def __init__(self, app, gate: RequestGate):
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.gate.limits
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limits.max_body_bytes):
            await self._refuse(send, 413, f"request body of {declared[:20].decode('latin-1')} bytes "
                                          f"(at most {limits.max_body_bytes})")
            return
        client = scope.get("client") or ("?", 0)
        caller = headers.get(CALLER_HEADER, b"").decode("latin-1")[:64] or f"address {client[0]}"
        refusal = self.gate.admit(caller)
        if refusal is not None:
            await self._refuse(send, *refusal)
            return
        try:
            try:
                body = await asyncio.wait_for(self._read_body(receive, limits.max_body_bytes), limits.body_timeout_s)
            except _BodyTooLarge:
                await self._refuse(send, 413, f"request body over {limits.max_body_bytes} bytes")
                return
            except asyncio.TimeoutError:
                await self._refuse(send, 408, f"request body not received within {limits.body_timeout_s:g}s")
                return
            if body is None:  # the client went away
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            self.gate.release(caller)

    @staticmethod
    async def _read_body(receive, limit: int) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, send, status: int, reason: str) -> None:
        self.gate.refused[status] += 1
        logger.debug(f"axon refused a request before reading it: {status} {reason}")
        body = json.dumps({"message": reason}).encode()
        # Connection: close, so uvicorn drops the connection instead of reading (and discarding) the rest
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive):
    """A `receive` that gives the app the body already read, then whatever the client does next."""
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def limit_requests(axon, limits: RequestLimits = RequestLimits()) -> RequestGate:
    """Put a `RequestGate` in front of `axon` (before `axon.start()`), and answer a request whose
    fields break its synapse's bounds with 400 naming the field. Returns the gate."""
    from pydantic import ValidationError
    from starlette.responses import JSONResponse

    gate = RequestGate(limits)
    axon.app.add_middleware(BoundedRequests, gate=gate)  # added last: the outermost layer

    async def out_of_bounds(request, exc: ValidationError):
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        return JSONResponse({"message": f"request out of bounds ({fields})"[:500]}, status_code=400)

    axon.app.add_exception_handler(ValidationError, out_of_bounds)
    return gate
