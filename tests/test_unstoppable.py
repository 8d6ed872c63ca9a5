"""A validator nobody can stop (issue 22), end to end on the mock chain with the real scorer:
each student in its own worker, evaluation strikes for challengers and the king, deadlines
on the pre-checks.

Failures that no real model can bring past the checks any more (a GPT-2 whose positions end
too soon is ARCH_CONTEXT now) are injected in the scoring worker itself
(`tests/faulty_workers.py`): a model directory named `...-raises` fails when scored, exactly
as such a model would, in its own worker.
"""

import json
import shutil
import time

import pytest

from distil import demo, tiny
from distil.checks.loading import weight_files
from distil.scoring.epoch import EVAL_FAILED_REPEATEDLY
from distil.scoring.prechecks import CHECK_FAILED_REPEATEDLY
from distil.state import DISQUALIFIED, INVALID, KING, PENDING, load_state
from distil.validator.scorer import EngineScorer
from faulty_workers import TARGET
from test_validator import hotkey, make_validator, scenario_with


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    demo.build(root)
    return root


def variant(source, path, flip: int):
    """A copy of `source` whose weights differ in one low mantissa bit (other hashes, the
    same function: these models fail before anyone could compare them)."""
    shutil.copytree(source, path)
    weights = weight_files(path)[0]
    data = bytearray(weights.read_bytes())
    data[-2 - 2 * flip] ^= 1
    weights.write_bytes(bytes(data))
    return path


def real_scorer(v):
    """The validator's own EngineScorer, with the faulty worker function in front of the real one."""
    teacher_dir, teacher_name = v.teacher.directory()
    v.scorer = EngineScorer(v.store, v.spec, teacher_dir, teacher_name, v.prompt_source, deadlines=v.deadlines,
                            score_target=TARGET)
    return v


def test_eight_challengers_that_fail_when_scored_cannot_hold_the_seats(world, tmp_path):
    """8 challengers (two per coldkey over four coldkeys) fail when scored, every round; an
    honest better model committed after them is scored in the next round (its first win) and
    crowned in the one after (its second)."""
    # all before block 50: the first round (seed block 100) may score every one of them
    miners = [{"hotkey": hotkey("good"), "model": str(world / "miners" / "good"), "commit_block": 40}]
    for i in range(8):
        path = variant(world / "miners" / "fair", tmp_path / "models" / f"c{i}-raises", i)
        miners.append({"hotkey": hotkey(f"fail{i}"), "model": str(path), "repo": f"mock/fail{i}",
                       "commit_block": 41 + i, "coldkey": f"5Coldkey{i // 2}"})
    miners.append({"hotkey": hotkey("better"), "model": str(world / "miners" / "better"), "commit_block": 49})
    v = real_scorer(make_validator(world, tmp_path / "state", scenario=scenario_with(world, tmp_path, miners, 140)))
    failing = [hotkey(f"fail{i}") for i in range(8)]
    started = time.monotonic()
    crowned_at = None
    for epoch in range(1, 5):
        v.run(epochs=1)
        state = load_state(tmp_path / "state")
        if epoch == 1:  # good and seven of the eight took the seats; those failed alone (good was scored)
            assert state.king == hotkey("good")
            assert [state.miners[hk].eval_strikes for hk in failing] == [1] * 7 + [0]
            assert all(state.miners[hk].status == PENDING for hk in failing)
            assert state.miners[hotkey("better")].kl is None  # no seat this round
        if epoch == 2:  # models with strikes queue behind the never-scored one: better is scored, wins once
            assert state.contender is not None and state.contender["hotkey"] == hotkey("better")
        if state.king == hotkey("better"):
            crowned_at = epoch
            break
    print(f"crowned in epoch {crowned_at}, {time.monotonic() - started:.1f}s")
    assert crowned_at == 3  # confirmed on the next round's prompts
    assert state.miners[hotkey("better")].status == KING
    assert all(state.miners[hk].kl is None for hk in failing)


def test_a_king_that_fails_every_round_loses_its_crown_at_its_last_strike(world, tmp_path):
    """The king fails when scored, every round, while its challenger is scored: a strike each
    round, the king keeps its weights meanwhile, and at the third it is INVALID; the round
    after has no king and crowns the challenger."""
    king = variant(world / "miners" / "good", tmp_path / "models" / "king-raises", 0)
    miners = [{"hotkey": hotkey("king"), "model": str(king), "repo": "mock/king", "commit_block": 40},
              {"hotkey": hotkey("fair"), "model": str(world / "miners" / "fair"), "commit_block": 41}]
    scenario = scenario_with(world, tmp_path, miners, 140)
    v = make_validator(world, tmp_path / "state", "--eval.max_strikes", "3", scenario=scenario)
    # the king was crowned in an earlier round (it scored then); it fails from now on
    from distil.scoring.epoch import reconcile, mark_checked
    from distil.state import save_state

    state, _ = reconcile(v.state, {n.hotkey: n.uid for n in v.metagraph.neurons}, v.chain_commitments(), 140)
    state, _ = mark_checked(state, hotkey("king"), None, None, 1)
    state.miners[hotkey("king")].status, state.king = KING, hotkey("king")
    state.miners[hotkey("king")].kl = {"mean": 0.1, "se": 0.0, "median": 0.1, "p99": 0.1, "top1": 0.5, "seed_block": 0}
    save_state(state, tmp_path / "state")
    v.load_state()
    real_scorer(v)
    weights = []
    v.set_weights = lambda uids, w: weights.append(dict(zip(uids, w))) or True
    for strike in (1, 2, 3):
        v.run(epochs=1)
        state = load_state(tmp_path / "state")
        assert state.miners[hotkey("king")].eval_strikes == strike
        assert state.miners[hotkey("fair")].kl is None  # its score only said the fault was the king's
    assert state.king is None and state.miners[hotkey("king")].code == EVAL_FAILED_REPEATEDLY
    king_uid = state.miners[hotkey("king")].uid
    assert [w[king_uid] for w in weights] == [1.0, 1.0]  # weighted until its last strike
    v.run(epochs=1)
    assert load_state(tmp_path / "state").king == hotkey("fair")


def deep_student(path, layers: int):
    """An honest-looking tiny student with `layers` layers: its meta build takes seconds."""
    config = tiny.student_config("qwen3", hidden_size=16, num_hidden_layers=layers, intermediate_size=32,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    tiny.save_model(path, config)
    return path


def broken(world, path):
    """A repo the checks refuse at once (config.json's vocabulary): a verdict on another repo."""
    shutil.copytree(world / "miners" / "fair", path)
    config = json.loads((path / "config.json").read_text())
    config["vocab_size"] = 1000
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_a_slow_step_ends_at_its_deadline_and_the_model_is_invalid_at_the_strike_limit(world, tmp_path):
    """With every pre-check step given 1 s, a student whose meta build takes longer is stopped
    there (CHECK_TIMEOUT naming the step), a strike each epoch in which the checker judged
    another repo, and INVALID CHECK_FAILED_REPEATEDLY at the limit."""
    slow = deep_student(tmp_path / "models" / "deep", 400)
    miners = [{"hotkey": hotkey("slow"), "model": str(slow), "repo": "mock/deep", "commit_block": 90},
              {"hotkey": hotkey("b1"), "model": str(broken(world, tmp_path / "models" / "b1")), "commit_block": 91},
              {"hotkey": hotkey("b2"), "model": str(broken(world, tmp_path / "models" / "b2")), "commit_block": 150}]
    v = make_validator(world, tmp_path / "state", "--checks.deadline_floor_s", "1", "--checks.deadline_multiple", "0.001",
                       "--checks.max_strikes", "2", scenario=scenario_with(world, tmp_path, miners, 100))
    started = time.monotonic()
    v.run(epochs=1)
    record = load_state(tmp_path / "state").miners[hotkey("slow")]
    assert (record.status, record.code, record.strikes) == (PENDING, "CHECK_TIMEOUT", 1)
    assert "architecture check" in record.detail and "deadline of 1s" in record.detail
    v.run(epochs=1)  # b2 is committed at block 150: judged in the second epoch, the evidence again
    record = load_state(tmp_path / "state").miners[hotkey("slow")]
    print(f"two epochs with the slow model in {time.monotonic() - started:.1f}s")
    assert (record.status, record.reason, record.code) == (DISQUALIFIED, INVALID, CHECK_FAILED_REPEATEDLY)
    assert "CHECK_TIMEOUT" in record.detail
