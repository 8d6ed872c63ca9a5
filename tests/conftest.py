import os
import socket
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Tests never reach the network: no hub, no W&B servers, no telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@pytest.fixture
def no_external_ip(monkeypatch):
    """bittensor's Axon and Dendrite look up the external IP on the internet; not here."""
    import bittensor.utils.networking as networking

    monkeypatch.setattr(networking, "get_external_ip", lambda: "127.0.0.1")
    return "127.0.0.1"


# -- model fixtures for the pre-check tests (built once per session) ---------------------


@pytest.fixture(scope="session")
def valid_model(tmp_path_factory):
    """A valid tiny student directory (bf16, 248,320 vocab, tiny tokenizer). Do not modify it."""
    from model_builders import build_valid

    return build_valid(tmp_path_factory.mktemp("valid-model") / "valid")


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory):
    """The teacher's tokenizer for tests: the tiny byte-level tokenizer."""
    from distil import tiny

    path = tmp_path_factory.mktemp("teacher-tokenizer")
    tiny.save_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def teacher_reference(teacher_dir):
    from distil.checks import load_reference

    return load_reference(teacher_dir)


# -- raw HTTP to a real axon: what a hostile client sends, byte by byte -----------------------


def signed_status_headers(dendrite, axon_info) -> dict:
    """The headers a real Dendrite signs for a DistilStatus request to `axon_info` (fresh nonce).

    DistilStatus hashes no body field into the signature, so any body can follow them: what a
    registered hotkey could stream at a validator."""
    from distil.protocol import DistilStatus

    synapse = dendrite.preprocess_synapse_for_request(axon_info, DistilStatus(), timeout=12.0)
    return synapse.to_headers()


def raw_request(port: int, headers: dict, body_bytes: int = 0, chunked: bool = False, declared: int | None = None,
                hold: bool = False):
    """POST /DistilStatus with `headers` and a body of `body_bytes` bytes (`{"hotkey": "AAA…"}`), streamed
    in 64 KiB pieces, chunked or with a Content-Length (`declared`, default the true size), from a buffer
    that is never larger than one piece. Returns (status or None, response bytes); with `hold`, sends the
    headers and a first piece only and returns the open socket instead (a request in flight)."""
    prefix, suffix = b'{"hotkey": "', b'"}'
    filler = max(0, body_bytes - len(prefix) - len(suffix))
    lines = ["POST /DistilStatus HTTP/1.1", "host: 127.0.0.1", "content-type: application/json", "connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append("transfer-encoding: chunked" if chunked else f"content-length: {declared if declared is not None else body_bytes}")
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    piece = b"A" * 65536

    def send(data: bytes) -> None:
        sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if hold:
            send(prefix + b"A" * 16)
            return sock
        if body_bytes:
            send(prefix)
            while filler > 0:
                send(piece[: min(filler, len(piece))])
                filler -= len(piece)
            send(suffix)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered and closed while we were still sending
        pass
    response = b""
    try:
        while chunk := sock.recv(65536):
            response += chunk
    except OSError:
        pass
    finally:
        sock.close()
    status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else None
    return status, response
