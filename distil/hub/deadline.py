"""An overall deadline on every HTTP request huggingface_hub makes for us.

httpx's `timeout` bounds each socket read, not a request: a hub, a CDN or a proxy that
sends one byte every two seconds keeps a `timeout=30` request alive for ever. Here every
socket operation of a request (connect, write, each read of the headers and of the body)
waits at most until the request's deadline, and one past it fails at once with a timeout,
which the store reports as the hub's transient trouble for that repo.

A caller gives a request its deadline in the `X-Distil-Deadline` header (a
`time.monotonic()` value; the header never leaves the process). A header, not a
thread-local of the caller, because `snapshot_download` fetches files from its own worker
threads with the headers it was given. The transport moves the deadline from the header to
a thread-local while it sends the request and reads the response's headers, and again
around each read of the body, in whichever thread reads it; the network streams consult it.

`install()` makes huggingface_hub's shared client use these transports (its own settings
otherwise: redirects followed, no per-read timeout of its own, its request hook, the
environment's proxies). Requests without the header are not limited.
"""

from __future__ import annotations

import threading
import time

import httpx2

DEADLINE_HEADER = "X-Distil-Deadline"

_local = threading.local()


class DeadlinePassed(TimeoutError):
    """A network operation started after its request's deadline. Not one of httpx's own
    timeouts, so huggingface_hub does not retry it (its backoff would outlast the deadline)."""


def _remaining(timeout: float | None) -> float | None:
    """The socket timeout for one operation: `timeout`, cut to the time left before this
    thread's deadline (a read blocked until then fails as httpx's read timeout); DeadlinePassed
    when there is none left."""
    deadline = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed("the request's overall deadline has passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """A network stream whose every operation ends by the thread's deadline."""

    def __init__(self, stream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _remaining(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _remaining(timeout)))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _DeadlineBackend:
    """httpcore's network backend, its streams bounded by the thread's deadline."""

    def __init__(self, backend):
        self._backend = backend

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _DeadlineStream(self._backend.connect_tcp(host, port, _remaining(timeout), local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _DeadlineStream(self._backend.connect_unix_socket(path, _remaining(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _DeadlineBody:
    """A response body read under the request's deadline, in whichever thread reads it."""

    def __init__(self, stream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def __iter__(self):
        chunks = iter(self._stream)
        while True:
            previous, _local.deadline = getattr(_local, "deadline", None), self._deadline
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                _local.deadline = previous
            yield chunk

    def close(self) -> None:
        self._stream.close()


class _DeadlineTransport(httpx2.BaseTransport):
    """An httpx2 transport that gives each request the deadline of its header (removed before
    it is sent) while it is sent and its headers read; its body keeps it (`_DeadlineBody`)."""

    def __init__(self, inner):
        self._inner = inner

    def handle_request(self, request):
        value = request.headers.get(DEADLINE_HEADER)
        if value is None:
            return self._inner.handle_request(request)
        deadline = float(value)
        # Sent without the header; the caller's request keeps it for the redirects httpx builds from it.
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() != DEADLINE_HEADER.lower()]
        request = httpx2.Request(request.method, request.url, headers=headers, stream=request.stream,
                                 extensions=request.extensions)
        previous, _local.deadline = getattr(_local, "deadline", None), deadline
        try:
            response = self._inner.handle_request(request)
        finally:
            _local.deadline = previous
        body = getattr(response.stream, "_httpcore_stream", None)
        if body is not None:  # httpx2's ResponseStream over httpcore's body
            response.stream = type(response.stream)(_DeadlineBody(body, deadline))
        return response

    def close(self) -> None:
        self._inner.close()

    def __enter__(self):
        self._inner.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._inner.__exit__(*exc)


def _bounded(transport):
    """`transport` with deadlines: its connection pool's network backend wrapped (httpx2's
    HTTPTransport keeps its httpcore pool in `_pool`; the versions are pinned and
    tests/test_hub_store.py fails if that changes), its requests given their header's deadline."""
    if transport is None or isinstance(transport, _DeadlineTransport):
        return transport
    pool = getattr(transport, "_pool", None)
    if not isinstance(transport, httpx2.HTTPTransport) or not hasattr(pool, "_network_backend"):
        raise RuntimeError(f"cannot put deadlines on {type(transport).__name__}: httpx2's transport changed")
    if not isinstance(pool._network_backend, _DeadlineBackend):
        pool._network_backend = _DeadlineBackend(pool._network_backend)
    return _DeadlineTransport(transport)


def client_factory():
    """huggingface_hub's default client, every transport (proxies included) deadline-bound."""
    from huggingface_hub.utils._http import default_client_factory

    client = default_client_factory()
    client._transport = _bounded(client._transport)
    client._mounts = {pattern: _bounded(t) for pattern, t in client._mounts.items()}
    return client


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Make huggingface_hub's shared client deadline-aware (once per process)."""
    global _installed
    with _install_lock:
        if not _installed:
            from huggingface_hub import set_client_factory

            set_client_factory(client_factory)
            _installed = True


def deadline_headers(deadline: float) -> dict[str, str]:
    """The header that gives a request the `time.monotonic()` deadline `deadline`."""
    return {DEADLINE_HEADER: repr(float(deadline))}
