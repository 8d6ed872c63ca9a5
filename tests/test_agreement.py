"""Validators agree (issue 12 §4): two mock validators, in separate processes, each on its own
mock chain built from the same scenario, one with OMP_NUM_THREADS=1 and one with 2, the
second killed mid-round and restarted, reach the same king after every epoch, set the
same weights, and score every model with the same per-prompt KL (within 1e-6 relative).

Tiny models, three miners of the demo world, 3 prompts of 12 new tokens.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT
from distil import demo
from template.mock_chain import InMemoryChain

EPOCHS = 3  # blocks 100 (fair and good), 150 (better wins once: the contender), 200 (better confirmed)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    root = tmp_path_factory.mktemp("agreement-world")
    demo.build(root)
    data = json.loads((root / "scenario.json").read_text())
    data["miners"] = [m for m in data["miners"] if m["repo"] in ("demo/fair", "demo/good", "demo/better")]
    path = root / "scenario-3.json"
    path.write_text(json.dumps(data))
    return path


def command(scenario, directory, epochs):
    return [
        sys.executable, str(ROOT / "neurons" / "validator.py"), "--mock", "--mock.scenario", str(scenario),
        "--mock.chain_state", str(directory / "chain.json"),
        "--wallet.name", "validator", "--wallet.hotkey", "v", "--neuron.full_path", str(directory / "state"),
        "--neuron.axon_off", "--wandb.off", "--eval.prompts_file", str(scenario.parent / "prompts.jsonl"),
        "--eval.n_prompts", "3", "--eval.max_new_tokens", "12", "--checks.max_params", "100000000",
        "--neuron.epochs", str(epochs),
    ]


def env(threads):
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}


def weights_by_block(directory):
    chain = InMemoryChain(path=str(directory / "chain.json"))
    hotkeys = {n.uid: n.hotkey for n in chain.metagraph().neurons}
    out = {}
    for w in chain.weight_sets:  # a restarted epoch may set weights again: the last set of a block counts
        out[w.block] = {hotkeys[uid]: weight for uid, weight in zip(w.uids, w.weights)}
    return out


def rounds(directory):
    return {json.loads(p.read_text())["seed_block"]: json.loads(p.read_text())
            for p in sorted((directory / "state" / "rounds").glob("round-*.json"))}


@pytest.mark.slow
def test_two_validators_with_other_thread_counts_and_a_restart_agree(scenario, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    steady = subprocess.Popen(command(scenario, one, EPOCHS), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env(1), cwd=ROOT)
    interrupted = subprocess.Popen(command(scenario, two, EPOCHS), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True, env=env(2), cwd=ROOT)
    killed = False
    deadline = time.monotonic() + 300
    for line in interrupted.stdout:
        if line.startswith("epoch 150:"):  # too late: the second round is over
            break
        if line.startswith("epoch 100:"):  # the first epoch is saved; the second round starts next
            time.sleep(2.0)  # into the second epoch's pre-checks or round
            interrupted.send_signal(signal.SIGKILL)
            killed = True
            break
        assert time.monotonic() < deadline, "the validator never finished its first epoch"
    interrupted.wait(timeout=60)
    assert killed, "the run ended before it could be killed"
    done = json.loads((two / "state" / "state.json").read_text())["last_epoch_block"]  # 100, or 150 if it got that far
    restart = subprocess.run(command(scenario, two, (200 - done) // 50), capture_output=True, text=True, env=env(2),
                             cwd=ROOT, timeout=400)
    assert restart.returncode == 0, restart.stdout[-2000:] + restart.stderr[-2000:]
    out, _ = steady.communicate(timeout=400)
    assert steady.returncode == 0, out[-3000:]

    # the same king after every epoch, and the same weights
    a, b = weights_by_block(one), weights_by_block(two)
    assert sorted(a) == sorted(b) == [100, 150, 200]
    assert a == b
    kings = [max(a[block], key=a[block].get) for block in sorted(a)]
    assert kings == [demo.demo_hotkey("good"), demo.demo_hotkey("good"), demo.demo_hotkey("better")]
    # the same rounds: the same prompts and continuations, per-prompt KL within 1e-6 relative, the same probes
    ra, rb = rounds(one), rounds(two)
    assert sorted(ra) == sorted(rb) == [100, 150, 200]
    for block in ra:
        assert ra[block]["prompts"] == rb[block]["prompts"] and ra[block]["king"] == rb[block]["king"]
        ma = {m["key"]: m for m in ra[block]["models"]}
        mb = {m["key"]: m for m in rb[block]["models"]}
        assert sorted(ma) == sorted(mb)
        for key in ma:
            np.testing.assert_allclose(mb[key]["per_prompt_kl"], ma[key]["per_prompt_kl"], rtol=1e-6, atol=0, err_msg=key)
            assert ma[key].get("probe") == mb[key].get("probe")
    state_a = json.loads((one / "state" / "state.json").read_text())
    state_b = json.loads((two / "state" / "state.json").read_text())
    assert state_a["king"] == state_b["king"] == demo.demo_hotkey("better") and state_a["contender"] is None
    assert state_a["last_epoch_block"] == state_b["last_epoch_block"] == 200


def test_a_score_changing_override_is_named_at_start_up_and_runtime_fields_are_not():
    from distil.eval.spec import EvalSpec, warn_score_changing_overrides

    said = []
    assert warn_score_changing_overrides(EvalSpec(device="cuda:0", student_timeout_s=5, prompt_cache_dir="/x"), said.append) == []
    assert warn_score_changing_overrides(EvalSpec(device="cuda", dtype="bfloat16"), said.append) == []  # auto resolves to it
    changed = warn_score_changing_overrides(EvalSpec(device="cuda", dtype="float32", n_prompts=8, generation_batch_size=4),
                                            said.append)
    assert changed == ["n_prompts: 120 → 8", "generation_batch_size: 16 → 4", "dtype: 'bfloat16' → 'float32'"]
    assert len(said) == 1 and "n_prompts: 120 → 8" in said[0] and "docs/validators.md" in said[0]
