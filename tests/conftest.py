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
