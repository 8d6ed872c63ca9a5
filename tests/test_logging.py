"""Secrets never reach a log line; wallet paths do."""

import io
import os
import subprocess
import sys

import pytest
from loguru import logger

from conftest import ROOT, free_port
from template.log import log_file_for, redact, setup_logging, setup_logging_from_config
from template.wallet import mock_hotkey


def test_redact_masks_tokens_and_credentials(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    text = (
        "token=hf_abcdefghijklmnopqrstuvwxyz0123 password: hunter22 "
        "Authorization: Bearer sk-live-xyz wandb key 0123456789abcdef0123456789abcdef01234567 "
        "wallet at /root/.bittensor/wallets/w/hotkeys/h revision " + "ab" * 20
    )
    out = redact(text)
    for secret in ("hf_abcdefghijklmnopqrstuvwxyz0123", "hunter22", "sk-live-xyz", "0123456789abcdef0123456789abcdef01234567"):
        assert secret not in out
    assert "/root/.bittensor/wallets/w/hotkeys/h" in out
    assert "ab" * 20 in out  # commit shas are not secrets


def test_loguru_records_are_redacted():
    setup_logging()
    sink = io.StringIO()
    handler = logger.add(sink, format="{message}")
    try:
        logger.info("downloading with hf_ZZZZZZZZZZZZZZZZZZZZZZZZ1")
    finally:
        logger.remove(handler)
    assert "hf_ZZZZ" not in sink.getvalue() and "***" in sink.getvalue()


# A validator-like process: our logging, a real Axon with the registered-only blacklist,
# and a request from a hotkey that is not registered, which bittensor logs as an error.
AXON_REFUSES_A_STRANGER = """
import socket, sys, time
from typing import Tuple
import bittensor as bt
import bittensor.utils.networking as networking
networking.get_external_ip = lambda: "127.0.0.1"
from distil.protocol import DistilStatus
from template.axon import registered_only_blacklist
from template.log import setup_logging
from template.wallet import MockWallet

setup_logging(debug=sys.argv[2] == "debug")
port = int(sys.argv[1])
axon = bt.Axon(wallet=MockWallet("validator", "v"), port=port, ip="127.0.0.1", external_ip="127.0.0.1")
guard = registered_only_blacklist(lambda hotkey: False)

def status(synapse: DistilStatus) -> DistilStatus:
    return synapse

def blacklist(synapse: DistilStatus) -> Tuple[bool, str]:
    return guard(synapse)

axon.attach(forward_fn=status, blacklist_fn=blacklist)
axon.start()
for _ in range(200):
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            break
    time.sleep(0.05)
dendrite = bt.Dendrite(wallet=MockWallet("stranger", "s").hotkey)
response = dendrite.query(axon.info(), DistilStatus(hotkey="x"), timeout=30, deserialize=False)
axon.stop()
sys.stderr.write(f"answered {response.dendrite.status_code}\\n")
"""


@pytest.mark.parametrize("level", ["info", "debug"])
def test_bittensor_logs_go_to_stderr_without_colour(level):
    """bittensor writes its logs (the axon's refusals) on stdout with colour codes; ours on stderr, plain."""
    result = subprocess.run(
        [sys.executable, "-c", AXON_REFUSES_A_STRANGER, str(free_port()), level],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=180,
    )
    assert "answered 403" in result.stderr, result.stderr
    assert result.stdout == ""
    assert "\x1b[" not in result.stderr  # not a terminal: no colour
    refusal = "hotkey " + mock_hotkey("stranger", "s") + " is not registered on this subnet"
    if level == "debug":  # the refusal and bittensor's own record of it, both at DEBUG
        assert f"| DEBUG   | template.axon | axon refused a DistilStatus request: {refusal}" in result.stderr
        assert "| DEBUG   | bittensor | BlacklistedException#" in result.stderr
    else:  # a refused stranger is routine, not an error
        assert refusal not in result.stderr and "ERROR" not in result.stderr


def neuron_config(*args):
    from template.base import BaseMinerNeuron
    from template.config import check_config, parse_config

    return check_config(parse_config(BaseMinerNeuron.build_parser(), list(args)))


def test_logging_dir_holds_the_log_file(tmp_path):
    config = neuron_config("--logging.logging_dir", str(tmp_path / "logs"), "--neuron.full_path", str(tmp_path / "state"))
    assert log_file_for(config) == str(tmp_path / "logs" / "distil.log")
    setup_logging_from_config(config)
    try:
        logger.debug("a debug line for the file")
        logger.info("an info line for the file")
    finally:
        logger.remove()
    text = (tmp_path / "logs" / "distil.log").read_text()
    assert "an info line for the file" in text and "a debug line for the file" in text
    assert "\x1b[" not in text
    record = neuron_config("--logging.record_log", "--neuron.full_path", str(tmp_path / "state"))
    assert log_file_for(record) == str(tmp_path / "state" / "logs" / "distil.log")
    assert log_file_for(neuron_config("--neuron.full_path", str(tmp_path / "state"))) is None


def test_logging_debug_shows_debug_lines(tmp_path):
    """A mock miner's commit with --logging.debug says at DEBUG what the chain did; without it, no DEBUG."""
    from distil.checks.owner import write_owner_file
    from template.mock_chain import InMemoryChain

    chain_file = tmp_path / "chain.json"
    InMemoryChain(start_block=7, path=chain_file).register(mock_hotkey("me", "m1"))
    outputs = {}
    for flags, hotkey in ((["--logging.debug"], "m1"), ([], "m2")):
        InMemoryChain(path=chain_file).register(mock_hotkey("me", hotkey))
        (tmp_path / "models" / "ns" / hotkey).mkdir(parents=True)  # a repo naming the committer (spec v3)
        write_owner_file(tmp_path / "models" / "ns" / hotkey, mock_hotkey("me", hotkey))
        result = subprocess.run(
            [sys.executable, str(ROOT / "neurons" / "miner.py"), "--mock", "--mock.chain_state", str(chain_file),
             "--wallet.name", "me", "--wallet.hotkey", hotkey, "--neuron.full_path", str(tmp_path / hotkey),
             "--mock.models_dir", str(tmp_path / "models"), "--model-repo", f"ns/{hotkey}", "--skip-checks", "--yes",
             *flags],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        outputs[hotkey] = result.stderr
    assert f"| DEBUG   | template.mock_chain | mock chain: {mock_hotkey('me', 'm1')} committed" in outputs["m1"]
    assert "| DEBUG   |" not in outputs["m2"]
