"""What a validator run leaves for its user (issue 11 §6, §12, §13): a W&B run summary that
describes the last epoch, the round files under `<full_path>/rounds/`, and a stdout
summary that names models by uid and repo, lists the pending ones and says each verdict once.
"""

import json
import subprocess
import sys

from conftest import ROOT
from distil import demo
from distil.state_cli import main as distil_state
from test_validator import CountingScorer, hotkey, make_validator, scenario_with

import pytest


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    demo.build(root)
    return root


class TimedScorer(CountingScorer):
    """A round reports its GPU phases, as the engine does."""

    def score(self, models, seed_block, seed):
        scores = super().score(models, seed_block, seed)
        scores.timings["gpu_round_s"] = 1.5
        return scores


KLS = {hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 5.0, hotkey("better"): 0.05}


def test_wandb_summary_describes_the_last_epoch(world, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    v = make_validator(world, tmp_path / "state", wandb="--wandb.offline", scorer=TimedScorer(KLS))
    try:
        assert v.run(epochs=3) == 3  # rounds at 100 and 150, nothing new at 200
        summary = v.metrics.run.summary
        keys = set(summary.keys())
        assert summary["epoch_block"] == 200
        assert summary["king"] == hotkey("better")
        assert summary["n_models"] == 3 and summary["n_disqualified"] == 4  # better, good, fair; copy, resharded, hostile, random
        assert "timings/epoch_s" in keys
        assert "timings/gpu_round_s" not in keys  # the round's phase is not shown beside an epoch without a round
    finally:
        v.metrics.finish()


def test_round_files_are_kept_and_pruned(world, tmp_path):
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, "--neuron.keep_rounds", "1", scorer=CountingScorer(KLS))
    assert v.run(epochs=1) == 1
    assert [p.name for p in (state_dir / "rounds").iterdir()] == ["round-100.json"]
    assert json.loads((state_dir / "rounds" / "round-100.json").read_text())["seed_block"] == 100
    assert v.run(epochs=2) == 2
    assert [p.name for p in (state_dir / "rounds").iterdir()] == ["round-150.json"]  # the newest one only


def test_stdout_summary_names_models_by_uid_and_repo_and_lists_the_pending(world, tmp_path, capsys):
    miners = [
        {"hotkey": hotkey("good"), "model": str(world / "miners" / "good"), "repo": "demo/good", "commit_block": 40},
        {"hotkey": hotkey("random"), "model": str(world / "miners" / "random"), "repo": "demo/random", "commit_block": 41},
        {"hotkey": hotkey("fair"), "model": str(world / "miners" / "fair"), "repo": "demo/hidden", "commit_block": 42},
    ]
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, scenario=scenario_with(world, tmp_path, miners, start_block=100), scorer=CountingScorer(KLS))
    v.store.set_unavailable("demo/hidden", "private")
    capsys.readouterr()
    assert v.run(epochs=1) == 1
    out = capsys.readouterr().out
    uid = {hk: m.uid for hk, m in v.state.miners.items()}
    head = out.splitlines()[0]
    assert head.startswith(f"epoch 100: king uid {uid[hotkey('good')]} demo/good (KL 0.100000)"), out
    assert f"challengers: uid {uid[hotkey('good')]} demo/good, uid {uid[hotkey('random')]} demo/random" in head, out
    assert f"pending: uid {uid[hotkey('fair')]} demo/hidden (NOT_PUBLIC" in out, out
    assert f"disqualified: uid {uid[hotkey('random')]} demo/random: KL_TOO_HIGH: KL 5.000000 is above the limit" in out, out
    assert "KL_TOO_HIGH (KL_TOO_HIGH)" not in out
    assert not any(hk in out for hk in uid)  # no 48-character hotkey anywhere in the summary
    # distil-state show keeps the measured KL of a model disqualified for it
    assert distil_state(["show", "--state-dir", str(state_dir)]) == 0
    shown = capsys.readouterr().out
    (row,) = [line for line in shown.splitlines() if line.rstrip().endswith(hotkey("random"))]
    assert "KL_TOO_HIGH" in row and "5.000000" in row, shown


def test_distil_check_prints_the_failure_once(world):
    done = subprocess.run(
        [sys.executable, "-m", "distil.checks.cli", str(world / "miners" / "hostile"), "--teacher", str(world / "teacher"),
         "--max-params", "100000000"], capture_output=True, text=True, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 1
    assert done.stdout.count("the repo holds code") == 2  # the step's line and the result line
    assert "REMOTE_CODE" not in done.stderr, done.stderr
