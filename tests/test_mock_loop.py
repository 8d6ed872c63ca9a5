"""The whole mock loop of docs/miners.md, each step its own process, as a user runs it:
a mock validator runs (paced mock chain, axon on), a miner registers with
`python -m template.mock_chain register`, writes its distil.json with `neurons/miner.py
--write-owner`, commits a local model with `neurons/miner.py --mock --mock.models_dir`, the
validator scores it (a round whose seed block is 50 blocks past the commitment), and
`--status` shows the verdict. Then the validator is stopped as systemd and docker stop it,
with SIGTERM: one log line, its W&B run finished, its state intact, a prompt exit with
status 0.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port
from distil import demo
from distil.state import load_state
from template.wallet import MockWallet
from model_builders import clone
from test_validator import hotkey, scenario_with

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    demo.build(root)
    return root


def test_register_commit_score_status(world, tmp_path):
    models = tmp_path / "models"
    # served as the repo me/better: the better model's files, and (spec v3) a distil.json naming me
    clone(world / "miners" / "better", models / "me" / "better", skip=("distil.json",))
    scenario = scenario_with(world, tmp_path, [{"hotkey": hotkey("good"), "model": str(world / "miners" / "good"), "commit_block": 90}])
    chain, state_dir, port = tmp_path / "chain.json", tmp_path / "validator", free_port()
    validator = subprocess.Popen(
        [sys.executable, "neurons/validator.py", "--mock", "--mock.scenario", str(scenario), "--mock.chain_state", str(chain),
         "--mock.models_dir", str(models), "--mock.block_time", "0.1", "--neuron.epoch_length", "10",
         "--wallet.name", "validator", "--wallet.hotkey", "v", "--neuron.full_path", str(state_dir), "--wandb.offline",
         "--axon.port", str(port), "--axon.ip", "127.0.0.1", "--eval.prompts_file", str(world / "prompts.jsonl"),
         "--eval.n_prompts", "3", "--eval.max_new_tokens", "8", "--checks.max_params", "100000000"],
        stdout=subprocess.PIPE, stderr=open(tmp_path / "validator.log", "w"), text=True, cwd=ROOT,
        env={**ENV, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )
    try:
        lines = iter(validator.stdout)
        deadline = time.monotonic() + 300
        for line in lines:  # the first round crowns the scenario's only model
            if line.startswith("epoch ") and "king uid" in line:
                break
            assert time.monotonic() < deadline
        me = MockWallet("me", "m1").hotkey.ss58_address
        registered = run("-m", "template.mock_chain", "register", "--mock.chain_state", str(chain),
                         "--wallet.name", "me", "--wallet.hotkey", "m1")
        assert registered.returncode == 0, registered.stderr
        owner = run("neurons/miner.py", "--mock", "--wallet.name", "me", "--wallet.hotkey", "m1",
                    "--write-owner", str(models / "me" / "better"))
        assert owner.returncode == 0 and owner.stdout.strip() == str(models / "me" / "better" / "distil.json"), owner.stderr
        committed = run("neurons/miner.py", "--mock", "--mock.chain_state", str(chain), "--mock.models_dir", str(models),
                        "--teacher", str(world / "teacher"), "--wallet.name", "me", "--wallet.hotkey", "m1",
                        "--model-repo", "me/better", "--yes")
        assert committed.returncode == 0, committed.stdout + committed.stderr
        for line in lines:  # the validator pre-checks and scores it; it is better than the king
            if "new_king" in line and "me/better" in line:
                break
            assert "NOT_PUBLIC" not in line, line
            assert time.monotonic() < deadline
        status = run("neurons/miner.py", "--mock", "--mock.chain_state", str(chain), "--wallet.name", "me",
                     "--wallet.hotkey", "m1", "--status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "status=king" in status.stdout, status.stdout
        validator.send_signal(signal.SIGTERM)  # what systemd, docker and `pm2 stop` send
        assert validator.wait(timeout=60) == 0
    finally:
        if validator.poll() is None:
            validator.kill()
    log = (tmp_path / "validator.log").read_text()
    assert "received SIGTERM; stopping" in log and "Traceback" not in log, log[-3000:]
    after = log[log.index("received SIGTERM"):]
    assert re.search(r"W&B run \w+ finished", after), log[-3000:]  # the W&B run is finished on the way out
    assert load_state(state_dir).king == me  # state intact
