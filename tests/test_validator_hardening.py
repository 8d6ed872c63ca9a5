"""The validator keeps working and keeps setting weights whatever a repo, a round or a file does
(issue 9 §2, §3, §5): the in-memory chain, the local model store, tiny demo models.

* §2 — commitments whose check keeps failing neither starve a later honest one nor stay
  in the queue forever; an outage every repo sees adds no strike.
* §3 — a round that fails keeps the king's weights and is retried; a prompt source that
  could never serve a round is refused at start-up.
* §5 — a state file with a wrong field stops the validator at once with the field named.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from loguru import logger

from conftest import ROOT
from distil import demo
from distil.scoring.prechecks import CHECK_FAILED_REPEATEDLY
from distil.state import INVALID, KING, PENDING, load_state, save_state
from test_validator import CountingScorer, argv, hotkey, make_validator, scenario_with

sys.path.insert(0, str(ROOT / "neurons"))
import validator as validator_script  # noqa: E402
from distil.validator import precheck as precheck_step  # noqa: E402

BAD = 20  # commitments that keep failing, all committed before the honest better model


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    demo.build(root)
    return root


def deep_config_repo(world, path: Path, i: int) -> Path:
    """A copy of a demo student (weights hard-linked) whose config.json is a 100,000-deep list."""
    path.mkdir(parents=True)
    source = world / "miners" / "fair"
    for f in source.iterdir():
        if f.name != "config.json":
            os.link(f, path / f.name)
    (path / "config.json").write_text(f'{{"id": {i}, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return path


def bad_then_honest(world, tmp_path, bad_dirs):
    """The king (`good`, block 20), BAD failing commitments (blocks 21…), then `better` (block 90): the
    first round (seed block 100) may score commitments before block 50, the second all of them."""
    miners = [{"hotkey": hotkey("good"), "model": str(world / "miners" / "good"), "commit_block": 20}]
    for i, path in enumerate(bad_dirs):
        miners.append({"hotkey": hotkey(f"bad{i:02d}"), "model": str(path), "repo": f"mock/bad{i:02d}", "commit_block": 21 + i})
    miners.append({"hotkey": hotkey("better"), "model": str(world / "miners" / "better"), "commit_block": 90})
    return scenario_with(world, tmp_path, miners, start_block=140)


def bad_hotkeys():
    return [hotkey(f"bad{i:02d}") for i in range(BAD)]


# -- §2: the queue ---------------------------------------------------------------------------


@pytest.mark.parametrize("crash", ["deep config", "checker raises"])
def test_twenty_crashing_commitments_do_not_starve_an_honest_better_model(world, tmp_path, monkeypatch, crash):
    bad = [deep_config_repo(world, tmp_path / "bad" / f"{i:02d}", i) for i in range(BAD)]
    if crash == "checker raises":
        real = precheck_step.check_commitment

        def check(store, commitment, *args, **kwargs):
            if commitment.repo.startswith("mock/bad"):
                raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
            return real(store, commitment, *args, **kwargs)

        monkeypatch.setattr(precheck_step, "check_commitment", check)
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("better"): 0.05})
    v = make_validator(world, tmp_path / "state", scenario=bad_then_honest(world, tmp_path, bad), scorer=scorer)
    assert v.run(epochs=3) == 3  # better wins in round 200 and again in round 250
    state = load_state(tmp_path / "state")
    assert state.king == hotkey("better"), [(hk[:8], m.status, m.code) for hk, m in state.miners.items()]
    assert scorer.rounds[-1] == [hotkey("good"), hotkey("better")]
    # the crashing repos are either judged (INVALID) or waiting as retries: none was crowned or scored
    for hk in bad_hotkeys():
        record = state.miners[hk]
        assert record.status in (PENDING, "disqualified") and not record.checked and record.kl is None


def test_repos_failing_for_themselves_alone_are_retried_then_check_failed_repeatedly(world, tmp_path):
    flaky = [world / "miners" / "fair"] * BAD  # served as 20 repos the hub answers with a 503, and only those
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("better"): 0.05})
    v = make_validator(world, tmp_path / "state", "--checks.max_strikes", "3",
                       scenario=bad_then_honest(world, tmp_path, flaky), scorer=scorer)
    for i in range(BAD):
        v.store.fail_transient(f"mock/bad{i:02d}", times=10**6)
    assert v.run(epochs=3) == 3
    state = load_state(tmp_path / "state")
    assert state.king == hotkey("better")  # checked in the second epoch, crowned when it won twice
    assert all((state.miners[hk].status, state.miners[hk].code) in ((PENDING, "HUB_TRANSIENT"), ("disqualified", CHECK_FAILED_REPEATEDLY))
               for hk in bad_hotkeys())
    # 16 checks per epoch shared by 20 retries: three strikes each within a few more epochs
    assert v.run(epochs=2) == 2
    state = load_state(tmp_path / "state")
    for hk in bad_hotkeys():
        record = state.miners[hk]
        assert (record.status, record.reason, record.code) == ("disqualified", INVALID, CHECK_FAILED_REPEATEDLY), record
        assert record.strikes == 3 and "HUB_TRANSIENT" in record.detail and "simulated transient failure" in record.detail
    assert state.king == hotkey("better") and state.miners[hotkey("better")].status == KING


def test_an_outage_every_repo_sees_adds_no_strike(world, tmp_path):
    miners = [
        {"hotkey": hotkey("good"), "model": str(world / "miners" / "good"), "commit_block": 40},
        {"hotkey": hotkey("flaky"), "model": str(world / "miners" / "fair"), "repo": "mock/flaky", "commit_block": 45},
    ]
    scorer = CountingScorer({hotkey("good"): 0.1})
    v = make_validator(world, tmp_path / "state", "--checks.max_strikes", "2",
                       scenario=scenario_with(world, tmp_path, miners, start_block=100), scorer=scorer)
    v.store.fail_transient("mock/flaky", times=10**6)
    assert v.run(epochs=1) == 1
    assert load_state(tmp_path / "state").miners[hotkey("flaky")].strikes == 1  # the hub answered the king
    v.store.fail_transient("mock/good", times=10**6)  # now the hub answers nobody
    assert v.run(epochs=3) == 3
    flaky = load_state(tmp_path / "state").miners[hotkey("flaky")]
    assert (flaky.status, flaky.strikes) == (PENDING, 1)
    v.store._transient.pop("mock/good")  # the hub is back for everyone but the flaky repo
    assert v.run(epochs=1) == 1
    flaky = load_state(tmp_path / "state").miners[hotkey("flaky")]
    assert (flaky.status, flaky.code) == ("disqualified", CHECK_FAILED_REPEATEDLY)


def test_a_check_the_epochs_download_budget_cuts_keeps_its_place_and_nothing_more_is_tried():
    """PRECHECK_BUDGET (the epoch's hub time ran out, issue 22 §5) is no attempt: the record is
    as it was (never checked, no strike, no retry mark), and the commitments after it are
    not started this epoch."""
    from distil.checks import CheckResult
    from distil.state import MinerRecord, ValidatorState

    state = ValidatorState()
    for i in range(3):
        state.miners[f"hk{i}"] = MinerRecord(uid=i, commitment=f"a/m{i}@{'ab' * 20}", commit_block=10 + i)
    tried = []

    def check(commitment, owner_of, hotkey, owner_exempt):
        tried.append(commitment.repo)
        return CheckResult.failure("PRECHECK_BUDGET", "this epoch's budget ran out while downloading its snapshot")

    out = precheck_step.run_prechecks(state, 100, check, budget=16, grace_blocks=7200)
    assert tried == ["a/m0"] and out.out_of_time and out.attempts == [] and out.events == []
    assert out.state.to_json() == state.to_json()


# -- §3: failed rounds and the prompt source ------------------------------------------------


def test_a_failed_round_keeps_the_kings_weights_says_why_once_and_is_retried(world, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text((world / "prompts.jsonl").read_text())
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3, hotkey("better"): 0.05})
    v = make_validator(world, tmp_path / "state", "--eval.prompts_file", str(prompts), scorer=scorer)
    assert v.run(epochs=1) == 1
    king_uid = v.state.miners[hotkey("good")].uid
    # the real round path, whose prompts file lost every usable line after start-up
    prompts.write_text("\n   \n")
    v.scorer = None
    lines = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{level} {message}")
    try:
        assert v.run(epochs=2) == 2
    finally:
        logger.remove(sink)
    failed = [line for line in lines if "failed" in line]
    assert len(failed) == 2, failed  # one line per epoch, and nothing else failed
    assert all("round" in line and "only 0 usable prompts" in line and "\n" not in line.strip() for line in failed)
    assert not any("Traceback" in line for line in lines)
    state = load_state(tmp_path / "state")
    assert state.king == hotkey("good") and state.miners[hotkey("better")].checked and state.miners[hotkey("better")].kl is None
    assert state.last_epoch_block == 200
    assert [dict(zip(w.uids, w.weights))[king_uid] for w in v.chain.weight_sets] == [1.0, 1.0, 1.0]
    # the prompts are back: the pending challenger is scored in the next epoch, and takes the crown
    # when it wins again in the one after
    v.scorer = scorer
    assert v.run(epochs=1) == 1
    assert load_state(tmp_path / "state").contender["hotkey"] == hotkey("better")
    assert v.run(epochs=1) == 1
    assert load_state(tmp_path / "state").king == hotkey("better")


def _disk_full_under(monkeypatch, directory: Path) -> None:
    """fsync of a file under `directory` fails with ENOSPC, as the kernel reports a full disk
    (delayed allocation); nothing else changes."""
    import errno

    real = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(str(directory)) and not os.path.isdir(target):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_keeps_the_new_kings_weights_says_so_once_and_leaves_the_files_whole(world, tmp_path, monkeypatch):
    """save_state fails (ENOSPC) in both of the epoch's saves: the king the epoch ends with
    (a challenger that took the crown) still gets the weights, one error line says why, and
    state.json and its backup stay whole, as last saved; once the disk has room the state
    goes on from memory."""
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3, hotkey("better"): 0.05})
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, scorer=scorer)
    assert v.run(epochs=2) == 2  # better wins round 150: the contender
    assert load_state(state_dir).king == hotkey("good") and load_state(state_dir).contender["hotkey"] == hotkey("better")
    files = {p.name: p.read_bytes() for p in state_dir.iterdir() if p.name.startswith("state.json")}
    lines = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{level} {message}")
    try:
        with monkeypatch.context() as m:
            _disk_full_under(m, state_dir)
            assert v.run(epochs=1) == 1
    finally:
        logger.remove(sink)
    assert v.state.king == hotkey("better")
    better_uid = v.state.miners[hotkey("better")].uid
    assert dict(zip(v.chain.weight_sets[-1].uids, v.chain.weight_sets[-1].weights))[better_uid] == 1.0
    errors = [line for line in lines if line.startswith("ERROR")]
    assert len(errors) == 1 and "could not save the state" in errors[0] and "No space left on device" in errors[0], errors
    assert not any("Traceback" in line or "epoch" in line and "failed" in line for line in lines)
    assert {p.name: p.read_bytes() for p in state_dir.iterdir() if p.name.startswith(("state.json", ".state"))} == files
    assert v.run(epochs=1) == 1  # room again: the state in memory is saved
    assert load_state(state_dir).king == hotkey("better")


@pytest.mark.parametrize(
    "content, message",
    [
        (b'{"text": "one"}\n{"text": "two"}\n\n{"text": "   "}\n', "only 2 usable prompts, 4 requested"),
        (b'{"text": "caf\xe9"}\n', "not UTF-8 text"),
        (b'[1, 2, 3]\n', "expected a JSON object"),
        (b'{"text": 5}\n', "'text' must be a string"),
        (b'{"text": "a"\n', "not JSON"),
        (b'{"prompt": "a"}\n', "neither 'text' nor 'input_ids'"),
    ],
)
def test_a_prompts_file_that_cannot_serve_a_round_is_refused_at_start_up(world, tmp_path, capsys, content, message):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(content)
    args = argv(world, tmp_path / "state", "--eval.prompts_file", str(prompts), "--neuron.epochs", "1")
    assert validator_script.main(args) == 2  # a bad argument: exit 2 (docs/cli.md)
    err = capsys.readouterr().err
    assert f"--eval.prompts_file {prompts}" in err and message in err
    assert not (tmp_path / "state" / "state.json").exists()  # refused before the first epoch


def run_validator(args, timeout=120, **env):
    return subprocess.run(
        [sys.executable, str(ROOT / "neurons" / "validator.py"), *args],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
    )


def test_mock_without_a_prompts_file_and_no_dataset_stops_at_start_up_naming_the_flag(world, tmp_path):
    args = argv(world, tmp_path / "state", "--neuron.epochs", "2")
    i = args.index("--eval.prompts_file")
    del args[i: i + 2]
    done = run_validator(args, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]  # it cannot start: not a verdict
    err = done.stderr.strip().splitlines()
    assert "cannot reach the prompt dataset" in err[-1] and "--eval.prompts_file" in err[-1]
    assert "on the hub at http://127.0.0.1:9" in err[-1]  # which host it tried
    assert "epoch starting" not in done.stdout + done.stderr


# -- §5: a bad state.json stops the validator at once ----------------------------------------


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("last_epoch_block", "200", "last_epoch_block: Input should be a valid integer (got '200')"),
        ("king_kl_mean", "low", "kl.mean: Input should be a valid number"),
        ("miners", None, "miners: Input should be a valid dictionary"),
        ("king", None, "king is null but miner(s)"),
    ],
)
def test_a_validator_with_a_bad_state_file_exits_2_naming_the_field(world, tmp_path, field, value, named):
    # a good state from a real epoch, then one field broken as the hostile review did
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3})
    v = make_validator(world, tmp_path / "state", scorer=scorer)
    assert v.run(epochs=1) == 1
    save_state(v.state, tmp_path / "state")
    path = tmp_path / "state" / "state.json"
    data = json.loads(path.read_text())
    if field == "king_kl_mean":
        data["miners"][data["king"]]["kl"]["mean"] = value
    else:
        data[field] = value
    path.write_text(json.dumps(data))
    done = run_validator(argv(world, tmp_path / "state", "--neuron.epochs", "2"), timeout=90)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(path) in last and named in last
    assert "epoch" not in done.stdout
    assert json.loads(path.read_text()) == data  # left as it was


@pytest.mark.parametrize("flag, value", [("--eval.max_per_coldkey", "0"), ("--eval.max_challengers", "0"), ("--eval.rematch", "-1"),
                                         ("--eval.confirm_alpha", "1.5")])
def test_a_round_size_that_could_never_work_is_refused_at_start(world, tmp_path, capsys, flag, value):
    """--eval.max_per_coldkey 0 used to start, then fail every epoch (no round, no weights for the king)."""
    code = validator_script.main(argv(world, tmp_path / "state", "--neuron.epochs", "1", flag, value))
    assert code == 2
    assert f"{flag} must be" in capsys.readouterr().err
