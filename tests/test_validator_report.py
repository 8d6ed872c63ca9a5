"""What a validator run leaves for its user (issue 11 §6, §12, §13): a W&B run summary that
describes the last epoch, the round files under `<full_path>/rounds/`, and a stdout
summary that names models by uid and repo, lists the pending ones and says each verdict once.
"""

import contextlib
import io
import json
import subprocess
import sys

from conftest import ROOT
from distil import demo
from distil.state_cli import main as distil_state
from test_validator import CountingScorer, hotkey, make_validator, scenario_with

import pytest


# What a user keeps in the demo's directory (docs/validators.md, the whole loop), and a file of
# an older build of the demo's own: the build must keep the first and replace the second.
USERS = {"models/me/better/model.safetensors": b"my own model", "loop-chain.json": b'{"block": 7}',
         "loop-validator/state.json": b'{"version": 1}', "miners/mine/config.json": b"{}"}
BUILT: dict[str, tuple[str, str]] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    for name, data in USERS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "teacher").mkdir()
    (root / "teacher" / "stale.safetensors").write_bytes(b"an older build's file")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()) as out:
        assert demo.main(["build", str(root)]) == 0
    BUILT[str(root)] = (out.getvalue(), err.getvalue())  # what the build printed, for the test below
    return root


def test_a_rebuild_replaces_the_demo_and_keeps_everything_else(world):
    out, err = BUILT[str(world)]
    assert out.strip() == str(world / "scenario.json")
    kept = [line for line in err.splitlines() if line.startswith("kept what the demo did not make")]
    assert kept == [f"kept what the demo did not make in {world}: loop-chain.json, loop-validator, miners/mine, models"]
    assert {name: (world / name).read_bytes() for name in USERS} == USERS
    assert not (world / "teacher" / "stale.safetensors").exists() and (world / "teacher" / "config.json").is_file()


class TimedScorer(CountingScorer):
    """A round reports its GPU phases, as the engine does."""

    def score(self, models, seed_block, seed):
        scores = super().score(models, seed_block, seed)
        scores.timings["round_s"] = 1.5
        return scores


KLS = {hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 5.0, hotkey("better"): 0.05}


def test_wandb_summary_describes_the_last_epoch(world, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    v = make_validator(world, tmp_path / "state", wandb="--wandb.offline", scorer=TimedScorer(KLS))
    try:
        assert v.run(epochs=4) == 4  # rounds at 100, 150 (better wins once) and 200 (confirmed), nothing new at 250
        summary = v.metrics.run.summary
        keys = set(summary.keys())
        assert summary["epoch_block"] == 250
        assert summary["king"] == hotkey("better")
        assert summary["n_models"] == 3 and summary["n_disqualified"] == 4  # better, good, fair; copy, resharded, hostile, random
        assert "timings/epoch_s" in keys
        assert "timings/round_s" not in keys  # the round's phase is not shown beside an epoch without a round
    finally:
        v.metrics.finish()


def test_round_files_are_kept_and_pruned(world, tmp_path):
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, "--neuron.keep_rounds", "1", scorer=CountingScorer(KLS))
    assert v.run(epochs=1) == 1
    assert [p.name for p in (state_dir / "rounds").iterdir()] == ["round-100.json"]
    assert json.loads((state_dir / "rounds" / "round-100.json").read_text())["seed_block"] == 100
    assert v.run(epochs=2) == 2  # rounds 150 and 200 (better wins once, then is confirmed)
    assert [p.name for p in (state_dir / "rounds").iterdir()] == ["round-200.json"]  # the newest one only


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


def test_the_leaderboard_ranks_models_only_against_their_own_round(world, tmp_path, capsys):
    """KLs of different rounds come from different prompts (docs/scoring.md): fair, scored only in
    round 100, is never ranked below the models of round 150, in the summary, W&B or --status."""
    from distil.metrics.report import leaderboard_rows
    from distil.validator.status import status_for

    v = make_validator(world, tmp_path / "state", scorer=CountingScorer(KLS))
    assert v.run(epochs=3) == 3  # round 100: good, fair (random too high); 150, 200: better wins twice, dethrones good
    out = capsys.readouterr().out
    uid = {hk: m.uid for hk, m in v.state.miners.items()}
    epoch_200 = out[out.index("epoch 200"):]
    expected = [f"  round 200: #1 uid {uid[hotkey('better')]} king      KL 0.050000  demo/better@",
                f"  round 200: #2 uid {uid[hotkey('good')]} evaluated KL 0.100000  demo/good@",
                f"  round 100: #1 uid {uid[hotkey('fair')]} evaluated KL 0.200000  demo/fair@"]
    board = [line for line in epoch_200.splitlines() if line.startswith("  round ")]
    assert [line[: len(e)] for line, e in zip(board, expected)] == expected and len(board) == 3, epoch_200
    rows = leaderboard_rows(v.state)
    assert [(r["round"], r["rank"], r["hotkey"]) for r in rows] == [
        (200, 1, hotkey("better")), (200, 2, hotkey("good")), (100, 1, hotkey("fair"))]
    assert status_for(v.state, hotkey("fair"))["rank"] == 1  # first of its round, not third of all
    v.stop()
