"""The validator end to end on the in-memory chain and local model store, with tiny models.

The demo world (`distil.demo.build`) holds a tiny teacher and graded students: `fair`,
`good`, `better` (committed at block 90, so the first round, seeded by block 100, leaves it
for the second: spec v3's commit delay), `copy` (good's files), `resharded` (good's tensors
in two shards), `hostile` (a tokenizer.py) and `random` (an untrained model of another
architecture). Every repo's distil.json names its own committer.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import bittensor as bt
import pytest

from conftest import ROOT, free_port, raw_request, signed_status_headers, wait_for_port
from distil import demo, tiny
from distil.metrics import LEADERBOARD_COLUMNS
from distil.protocol import DistilStatus
from distil.scoring.epoch import FailedModel, ScoredModel
from distil.state import COPY, EVALUATED, INVALID, KING, KL_TOO_HIGH, PENDING, load_state, request_requeue
from distil.validator.scorer import RoundScores
from template.mock_chain import InMemoryChain
from template.config import parse_config
from template.wallet import MockWallet

sys.path.insert(0, str(ROOT / "neurons"))
import validator as validator_script  # noqa: E402

N_PROMPTS, NEW_TOKENS = "4", "8"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    demo.build(root)
    return root


def hotkey(name):
    return demo.demo_hotkey(name)


def argv(world, state_dir, *extra, scenario=None, wandb="--wandb.off"):
    return [
        "--mock", "--mock.scenario", str(scenario or world / "scenario.json"),
        "--wallet.name", "validator", "--wallet.hotkey", "v",
        "--neuron.full_path", str(state_dir), "--neuron.axon_off", wandb,
        "--eval.prompts_file", str(world / "prompts.jsonl"),
        "--eval.n_prompts", N_PROMPTS, "--eval.max_new_tokens", NEW_TOKENS,
        "--checks.max_params", "100000000", *extra,
    ]


def make_validator(world, state_dir, *extra, scenario=None, wandb="--wandb.off", **kwargs):
    config = parse_config(validator_script.Validator.build_parser(), argv(world, state_dir, *extra, scenario=scenario, wandb=wandb))
    return validator_script.Validator(config, setup_logs=False, **kwargs)


@pytest.fixture(scope="module")
def demo_run(world, tmp_path_factory):
    """Three epochs of the demo world, uninterrupted, with W&B in offline mode."""
    state_dir = tmp_path_factory.mktemp("demo-run")
    v = make_validator(world, state_dir, wandb="--wandb.offline")
    assert v.run(epochs=3) == 3
    v.metrics.finish()
    return v, state_dir


def test_demo_world_ends_with_the_right_king_and_disqualifications(demo_run):
    v, state_dir = demo_run
    state = load_state(state_dir)
    miners = state.miners
    assert state.king == hotkey("better")
    assert miners[hotkey("better")].status == KING
    assert miners[hotkey("good")].status == EVALUATED and miners[hotkey("fair")].status == EVALUATED
    assert miners[hotkey("better")].kl["mean"] < miners[hotkey("good")].kl["mean"] < miners[hotkey("fair")].kl["mean"]
    assert (miners[hotkey("copy")].reason, miners[hotkey("copy")].code) == (COPY, "DUPLICATE_FILES")
    assert (miners[hotkey("resharded")].reason, miners[hotkey("resharded")].code) == (COPY, "DUPLICATE_CONTENT")
    assert (miners[hotkey("hostile")].reason, miners[hotkey("hostile")].code) == (INVALID, "REMOTE_CODE")
    assert miners[hotkey("random")].reason == KL_TOO_HIGH
    assert state.last_epoch_block == 200
    # weights: the king of each epoch got everything, with the spec version as version key
    last = v.chain.weight_sets[-1]
    assert dict(zip(last.uids, last.weights))[miners[hotkey("better")].uid] == 1.0
    assert sum(last.weights) == 1.0 and last.version_key == validator_script.Validator.spec_version
    first = v.chain.weight_sets[0]
    assert dict(zip(first.uids, first.weights))[miners[hotkey("good")].uid] == 1.0


def test_round_artifact_lets_anyone_rescore_the_king(demo_run, world, tmp_path, capsys):
    v, state_dir = demo_run
    artifact = v.metrics.artifacts[-1]
    with open(artifact.manifest.entries["round.json"].local_path) as f:
        round_json = json.load(f)
    state = load_state(state_dir)
    assert round_json["seed_block"] == state.last_round["seed_block"] == 200  # the confirming round
    assert round_json["seed"] == state.last_round["seed"]
    assert len(round_json["prompts"]) == int(N_PROMPTS)
    assert all(p["prompt_ids"] and p["continuation_ids"] for p in round_json["prompts"])
    by_key = {m["key"]: m for m in round_json["models"]}
    king_kl = state.miners[hotkey("better")].kl["mean"]
    assert by_key[hotkey("better")]["kl_mean"] == pytest.approx(king_kl, abs=0)
    logged = [entry for entry in v.metrics.logged if "leaderboard" in entry][-1]
    hotkeys = [row[LEADERBOARD_COLUMNS.index("hotkey")] for row in logged["leaderboard"].data]
    assert hotkeys[0] == hotkey("better")
    # where the epoch's time went: the pre-checks' downloads and the GPU round. Every model, better
    # included, was checked in epoch 100 (better was on chain, too late for round 100 only: spec v3's
    # commit delay), so round 200 downloaded nothing for its pre-checks
    assert round_json["devices"] == ["cpu"]
    first = json.loads((state_dir / "rounds" / "round-100.json").read_text())
    assert first["timings"]["precheck_download_s"] > 0
    assert round_json["timings"]["precheck_download_s"] == 0 and round_json["timings"]["round_s"] > 0
    assert logged["timings/precheck_download_s"] == round_json["timings"]["precheck_download_s"]
    assert logged["timings/round_s"] > 0
    # the audit: distil-eval --round re-scores the king on exactly that round's tokens, from the
    # round file the validator keeps under its state directory (the same document as the artifact)
    path = state_dir / "rounds" / "round-200.json"
    assert json.loads(path.read_text()) == round_json
    from distil.eval.cli import main as distil_eval

    assert distil_eval(["--teacher", str(world / "teacher"), "--student", str(world / "miners" / "better"),
                        "--round", str(path), "--json"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert rescored["models"][0]["kl_mean"] == pytest.approx(king_kl, rel=1e-6)


class CountingScorer:
    """Stands in for the GPU: records which models a round would load, scores them by a table."""

    def __init__(self, kl_by_hotkey, fail=None):
        self.kl = kl_by_hotkey
        self.fail = fail or {}
        self.rounds = []

    def score(self, models, seed_block, seed):
        self.rounds.append([hk for hk, _ in models])
        results = {}
        for hk, _ in models:
            if hk in self.fail:
                failure = self.fail[hk]
                if isinstance(failure, Exception):
                    raise failure
                results[hk] = failure
                continue
            kl = self.kl.get(hk, 0.5)
            per_prompt = tuple(kl + 0.001 * ((i % 3) - 1) for i in range(12))
            rng = random.Random(hk)  # every model its own per-position profile: no functional copies
            results[hk] = ScoredModel(kl, 0.001, kl, kl, 0.5, per_prompt, tuple(rng.random() for _ in range(6)))
        return RoundScores(results, {"seed": seed, "seed_block": seed_block}, {})


def owned(model, hotkey, tmp_path):
    """`model` as `hotkey` would upload it (spec v3): itself when its distil.json names `hotkey`,
    else its files hard-linked beside a distil.json naming `hotkey` (the same weights)."""
    from model_builders import owned_by

    model = Path(model)
    owner = model / "distil.json"
    if owner.is_file() and json.loads(owner.read_text()).get("hotkey") == hotkey:
        return model
    target = tmp_path / "owned" / hotkey[:16] / model.name  # the directory's own name kept (tests key on it)
    return target if target.is_dir() else owned_by(model, target, hotkey)


def scenario_with(world, tmp_path, miners, start_block=None, own=True):
    """A scenario file; with `own`, each miner's model names its hotkey (`owned`), as an honest
    miner's upload does: tests that serve one demo model under several hotkeys test copies by
    weights, not a borrowed commitment."""
    if own:
        miners = [{**m, "model": str(owned(m["model"], m["hotkey"], tmp_path))} for m in miners]
    data = {"teacher": str(world / "teacher"), "miners": miners}
    if start_block is not None:
        data["start_block"] = start_block
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data))
    return path


def test_hundred_miners_and_one_new_challenger_put_two_models_on_the_gpu(world, tmp_path):
    from distil.hub import LocalModelStore
    from distil.state import MinerRecord, ValidatorState, save_state

    # 100 miners evaluated by earlier epochs (the king among them), and one newcomer.
    wallet = MockWallet("validator", "v")
    chain = InMemoryChain(start_block=500)
    chain.register(wallet.hotkey.ss58_address, validator_permit=True)
    store = LocalModelStore()
    king_revision = store.add("old/m000", world / "miners" / "good")
    state = ValidatorState(king="5Old000")
    for i in range(100):
        data = f"old/m{i:03d}@" + (king_revision if i == 0 else f"{i:040x}")
        uid = chain.register(f"5Old{i:03d}")
        chain.put_commitment(f"5Old{i:03d}", data, block=i)
        state.miners[f"5Old{i:03d}"] = MinerRecord(
            uid=uid, commitment=data, commit_block=i, status=KING if i == 0 else EVALUATED, checked=True, seen_public=True,
            kl={"mean": 0.3 + i / 1000, "se": 0.0, "median": 0.3, "p99": 0.5, "top1": 0.5, "seed_block": 400},
        )
    chain.register(hotkey("better"))
    # before 500 − 50: round 500 may score it (spec v3's commit delay)
    chain.put_commitment(hotkey("better"), f"demo/better@{store.add('demo/better', world / 'miners' / 'better')}", block=449)
    state_dir = tmp_path / "state"
    save_state(state, state_dir)
    scorer = CountingScorer({"5Old000": 0.30, hotkey("better"): 0.10})
    v = make_validator(world, state_dir, "--checks.teacher", str(world / "teacher"), "--eval.teacher", str(world / "teacher"),
                       scenario=None, chain=chain, store=store, wallet=wallet, scorer=scorer)
    assert v.run(epochs=1) == 1
    assert scorer.rounds == [["5Old000", hotkey("better")]]
    assert load_state(state_dir).contender["hotkey"] == hotkey("better")
    assert v.run(epochs=1) == 1  # the confirmation round: the king and its contender, none of the 99 others
    assert scorer.rounds[-1] == ["5Old000", hotkey("better")]
    assert load_state(state_dir).king == hotkey("better")
    # with nothing new, the next epoch puts nothing on the GPU
    assert v.run(epochs=1) == 1
    assert len(scorer.rounds) == 2


def test_a_functional_copy_of_an_earlier_round_is_caught_by_its_fingerprint(world, tmp_path):
    """Issue 23 §3: a model scored in round 100 (and never again: it lost) is copied with its
    experts and MLP neurons permuted, other bytes and the same function, and committed later.
    Round 150 does not score the original, so only the fingerprint kept from round 100 can
    tell: the copy is COPY FINGERPRINT_COPY; an independent model of equal quality scored
    beside it is not. Within a round, the king's weights nudged by a hair (other bytes, the
    same function) are caught by the per-position KL (FUNCTIONAL_COPY)."""
    teacher = tiny.build_model(tiny.teacher_config(), seed=0, logit_scale=demo.TEACHER_LOGIT_SCALE)
    king = tiny.perturbed_copy(teacher, seed=11, scale=0.05)
    original = tiny.perturbed_copy(teacher, seed=21, scale=0.08)
    models = {"king": king, "original": original, "copy": tiny.permuted_copy(original, seed=3),
              "honest": tiny.perturbed_copy(teacher, seed=31, scale=0.08),
              "twin": tiny.perturbed_copy(king, seed=12, scale=0.002)}
    for name, model in models.items():
        tiny.save_model(tmp_path / name, teacher.config, model=model)
    scenario = scenario_with(world, tmp_path, [  # round 100: king, original; round 150: king, copy, honest, twin
        {"hotkey": hotkey(name), "model": str(tmp_path / name), "commit_block": block}
        for name, block in (("king", 10), ("original", 20), ("copy", 60), ("honest", 61), ("twin", 62))], start_block=100)
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, scenario=scenario)
    assert v.run(epochs=1) == 1
    first = load_state(state_dir)
    assert first.fingerprint_inputs is not None  # drawn once, kept: every later round reads the same positions
    assert {o["hotkey"] for o in first.fingerprints.values()} == {hotkey("king"), hotkey("original")}
    restarted = make_validator(world, state_dir, scenario=scenario)  # the fingerprints survive a restart
    assert restarted.run(epochs=1) == 1
    state = load_state(state_dir)
    assert state.last_round["seed_block"] == 150 and hotkey("original") not in state.last_round["models"]
    copy, honest = state.miners[hotkey("copy")], state.miners[hotkey("honest")]
    assert (copy.reason, copy.code) == (COPY, "FINGERPRINT_COPY"), copy
    assert state.miners[hotkey("original")].commitment in copy.detail and "fingerprint distance" in copy.detail
    assert honest.status == EVALUATED, honest
    twin = state.miners[hotkey("twin")]
    assert (twin.reason, twin.code) == (COPY, "FUNCTIONAL_COPY") and hotkey("king") in twin.detail
    assert state.king == hotkey("king")
    assert state.fingerprint_inputs == first.fingerprint_inputs
    assert len(state.fingerprints) == 5  # the copies' own are kept too


@pytest.mark.parametrize(
    "challenger_kl, epsilon, king_after",
    [(0.0995, "0.01", "good"), (0.0985, "0.01", "better"), (0.0995, "0.001", "better"), (0.1, "0.0", "good")],
)
def test_dethrone_needs_the_epsilon_margin(world, tmp_path, challenger_kl, epsilon, king_after):
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3, hotkey("better"): challenger_kl})
    v = make_validator(world, tmp_path / "state", "--eval.epsilon", epsilon, scorer=scorer)
    assert v.run(epochs=3) == 3  # a challenger that wins round 150 is confirmed or not in round 200
    assert scorer.rounds[-1] == [hotkey("good"), hotkey("better")]
    assert load_state(tmp_path / "state").king == hotkey(king_after)


def test_faults_keep_the_loop_going_and_never_write_a_partial_round(world, tmp_path):
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3, hotkey("better"): 0.05})
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, "--neuron.weights_retries", "2", scorer=scorer)
    chain, store = v.chain, v.store
    # epoch 100: the hub is down for `fair`, and every weight set is rejected
    store.fail_transient("demo/fair", times=1)
    chain.fail_next("set_weights", "reject", times=2)
    assert v.run(epochs=1) == 1
    state = load_state(state_dir)
    fair = state.miners[hotkey("fair")]
    assert fair.status == PENDING and not fair.checked and "retried next epoch" in fair.detail
    assert state.king == hotkey("good") and chain.weight_sets == []
    # epoch 150: the chain times out at the start of the epoch: nothing happens, nothing breaks
    chain.fail_next("metagraph", "timeout")
    assert v.run(epochs=1) == 1
    assert load_state(state_dir).last_epoch_block == 100
    # next epoch: a crash in the middle of the round (better is new): the round changes nothing,
    # and the king still gets its weights (issue 9 §3)
    scorer.fail[hotkey("better")] = RuntimeError("CUDA error: an illegal memory access")
    assert v.run(epochs=1) == 1
    after = load_state(state_dir)
    assert after.king == hotkey("good") and after.last_round["seed_block"] == 100  # only epoch 100's round applied
    assert after.miners[hotkey("better")].kl is None and after.miners[hotkey("better")].checked
    assert after.miners[hotkey("good")].kl["seed_block"] == 100
    assert any(e.kind == "round_failed" and "illegal memory access" in e.detail for e in v.events)
    king_uid = after.miners[hotkey("good")].uid
    assert len(chain.weight_sets) == 1 and dict(zip(chain.weight_sets[0].uids, chain.weight_sets[0].weights))[king_uid] == 1.0
    # next epoch: a student that runs out of memory is retried later, the others are scored
    scorer.fail[hotkey("better")] = FailedModel("transient", "EVAL_SCORE", "CUDA out of memory")
    assert v.run(epochs=1) == 1
    state = load_state(state_dir)
    assert state.miners[hotkey("better")].status == PENDING and "out of memory" in state.miners[hotkey("better")].detail
    assert state.miners[hotkey("fair")].status == EVALUATED  # checked once the hub came back
    assert len(chain.weight_sets) == 2  # the king's weights are set again
    # next epoch: it works now, wins once and takes the crown when it wins again
    del scorer.fail[hotkey("better")]
    assert v.run(epochs=1) == 1
    assert load_state(state_dir).contender["hotkey"] == hotkey("better")
    assert v.run(epochs=1) == 1
    assert load_state(state_dir).king == hotkey("better")


def test_commitment_changes_are_ignored_and_operator_requeue_is_applied(world, tmp_path):
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3})
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, scorer=scorer)
    assert v.run(epochs=1) == 1
    original = load_state(state_dir).miners[hotkey("fair")].commitment
    v.chain.put_commitment(hotkey("fair"), "demo/better@" + "0" * 40)  # a second commitment from the same hotkey
    request_requeue(state_dir, hotkey("hostile"))
    assert v.run(epochs=1) == 1
    state = load_state(state_dir)
    assert state.miners[hotkey("fair")].commitment == original
    assert any(e.kind == "commitment_change_ignored" and e.hotkey == hotkey("fair") for e in v.events)
    # the requeued hostile repo was checked again (and is still INVALID: it still ships code)
    assert any(e.kind == "requeued" for e in v.events)
    assert state.miners[hotkey("hostile")].reason == INVALID
    assert not list((state_dir / "requests").glob("*.json"))


def test_deregistered_king_is_replaced_and_its_uid_inherits_nothing(world, tmp_path):
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3})
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, scorer=scorer)
    assert v.run(epochs=1) == 1
    king_uid = load_state(state_dir).miners[hotkey("good")].uid
    newcomer = MockWallet("newcomer", "n").hotkey.ss58_address
    v.chain.register(newcomer, uid=king_uid)
    assert v.run(epochs=1) == 1
    state = load_state(state_dir)
    assert hotkey("good") not in state.miners and newcomer not in state.miners
    # no king: the best evaluated models were re-scored beside the new challenger, one was crowned
    assert scorer.rounds[-1] == [hotkey("fair"), hotkey("random"), hotkey("better")]
    assert state.king == hotkey("fair")


@pytest.mark.parametrize("freed, better_kl, king", [("better", 0.05, "better"), ("good", 0.2, "good")])
def test_weight_goes_only_to_the_hotkey_that_won(world, tmp_path, freed, better_kl, king):
    """Issue 25 §2: during the round, the uid of the winning challenger (or of the king that holds)
    is pruned and given to a newcomer. The round's verdict stands; no weight goes to the newcomer."""
    from loguru import logger

    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3, hotkey("better"): better_kl})
    v = make_validator(world, tmp_path / "state", scorer=scorer)
    assert v.run(epochs=1) == 1  # epoch 100: good is crowned and gets its weights
    if king == "better":
        assert v.run(epochs=1) == 1  # epoch 150: better wins once (the contender); good holds
        assert v.state.contender["hotkey"] == hotkey("better")
    sets = len(v.chain.weight_sets)
    assert sets == v.state.last_epoch_block // 50 - 1
    newcomer = MockWallet("newcomer", "n").hotkey.ss58_address
    freed_uid = v.metagraph.uid_of(hotkey(freed))
    real_score = scorer.score

    def score_while_a_uid_is_recycled(models, seed_block, seed):
        v.chain.register(newcomer, uid=freed_uid)
        return real_score(models, seed_block, seed)

    scorer.score = score_while_a_uid_is_recycled
    lines = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="INFO")
    try:
        assert v.run(epochs=1) == 1  # better challenges (or is confirmed against) good
    finally:
        logger.remove(sink)
    assert scorer.rounds[-1] == [hotkey("good"), hotkey("better")]
    assert load_state(tmp_path / "state").king == hotkey(king)
    assert len(v.chain.weight_sets) == sets, v.chain.weight_sets[-1]  # nothing set on the newcomer's uid
    assert [line for line in lines if line.startswith("no weights set this epoch")] == [
        f"no weights set this epoch: the king {hotkey(king)} is no longer registered (its uid {freed_uid} was freed "
        "during the epoch)"]
    scorer.score = real_score
    assert v.run(epochs=1) == 1  # next epoch: the departed king is dropped; a registered king gets the weights
    state = load_state(tmp_path / "state")
    last = v.chain.weight_sets[-1]
    assert len(v.chain.weight_sets) == sets + 1 and state.king not in (None, hotkey(freed))
    assert dict(zip(last.uids, last.weights))[v.metagraph.uid_of(state.king)] == 1.0
    assert dict(zip(last.uids, last.weights)).get(freed_uid, 0.0) == 0.0


def test_a_hostile_commitment_cannot_forge_what_the_operator_reads(world, tmp_path, capsys):
    """Issue 25 §4 through a real epoch: a commitment that erases the line and forges a log line of its
    own reaches the log, the stdout summary and distil-state show only escaped."""
    from loguru import logger

    from distil.state_cli import main as distil_state
    from template.log import setup_logging

    forged = "2026-12-05 00:00:00 | INFO | template.base.validator | weights set: {6: 1.0}"
    hostile = f"\x1b[2K\r{forged}\n\x1b[8m"
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3})
    v = make_validator(world, tmp_path / "state", scorer=scorer)
    sly = MockWallet("sly", "s").hotkey.ss58_address
    v.chain.register(sly)
    v.chain.put_commitment(sly, hostile, block=10)
    setup_logging()
    try:
        assert v.run(epochs=1) == 1
    finally:
        logger.remove()
    assert distil_state(["show", "--state-dir", str(tmp_path / "state")]) == 0
    out, err = capsys.readouterr()
    record = load_state(tmp_path / "state").miners[sly]
    assert (record.code, record.commitment) == ("COMMITMENT_FORMAT", hostile)  # stored as the chain holds it
    for text in (out, err):
        assert not any(c in text for c in "\x1b\r"), text
        assert not any(line.startswith("2026-12-05 00:00:00") for line in text.splitlines())
    escaped = "\\x1b[2K\\r" + forged + "\\n\\x1b[8m"
    assert escaped in out and escaped in err


def test_status_is_served_over_the_axon(world, tmp_path, no_external_ip):
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3})
    port = free_port()
    config = parse_config(
        validator_script.Validator.build_parser(),
        [a for a in argv(world, tmp_path / "state") if a != "--neuron.axon_off"] + ["--axon.port", str(port), "--axon.ip", "127.0.0.1"],
    )
    v = validator_script.Validator(config, setup_logs=False, scorer=scorer)
    try:
        wait_for_port(port)
        assert v.run(epochs=1) == 1
        miner = MockWallet("demo-miner", "fair")
        assert miner.hotkey.ss58_address == hotkey("fair")
        dendrite = bt.Dendrite(wallet=miner.hotkey)
        axons = [a.to_axon_info() for a in v.chain.validator_axons()]
        (answer,) = dendrite.query(axons, DistilStatus(), timeout=10, deserialize=False)
        assert answer.dendrite.status_code == 200, answer.dendrite.status_message
        info = answer.deserialize()
        assert info["status"] == "evaluated" and info["kl"] == pytest.approx(0.2) and info["rank"] == 2
        assert info["king_hotkey"] == hotkey("good") and info["round_seed_block"] == 100
        (other,) = dendrite.query(axons, DistilStatus(hotkey=hotkey("copy")), timeout=10, deserialize=False)
        assert other.deserialize()["reason"] == COPY
        stranger = bt.Dendrite(wallet=MockWallet("stranger", "s").hotkey)
        (refused,) = stranger.query(axons, DistilStatus(), timeout=10, deserialize=False)
        assert refused.dendrite.status_code == 403
        # issue 25 §1: a registered miner streams 64 MiB at the endpoint, then declares 1 GiB. Bound: the
        # validator's Python allocations peak under 4 MiB (at 4x the body before)
        tracemalloc.start()
        try:
            streamed, _ = raw_request(port, signed_status_headers(dendrite, axons[0]), body_bytes=64 << 20, chunked=True)
            declared, _ = raw_request(port, signed_status_headers(dendrite, axons[0]), declared=1 << 30)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, f"peak {peak / 2**20:.1f} MiB"  # measured: 0.44 MiB (256 MiB before the bound)
        assert streamed in (413, None) and declared == 413
        assert v.request_gate.refused[413] == 2
        (again,) = dendrite.query(axons, DistilStatus(), timeout=10, deserialize=False)
        assert again.dendrite.status_code == 200 and again.deserialize()["status"] == "evaluated"
    finally:
        v.stop()


def test_unreadable_state_stops_the_validator_with_a_clear_error(world, tmp_path, capsys):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "state.json").write_text('{"version": 99}')
    assert validator_script.main(argv(world, state_dir, "--neuron.epochs", "1")) == 2  # cannot start: exit 2
    assert "newer than this validator" in capsys.readouterr().err
    assert (state_dir / "state.json").read_text() == '{"version": 99}'


def test_killed_mid_round_and_restarted_ends_like_an_uninterrupted_run(world, tmp_path, demo_run):
    """SIGKILL while the second epoch's round runs; the restarted validator ends where the demo run ended."""
    _, reference_dir = demo_run
    state_dir, chain_file = tmp_path / "state", tmp_path / "chain.json"
    args = argv(world, state_dir, "--mock.chain_state", str(chain_file))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "neurons" / "validator.py"), *args, "--neuron.epochs", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    deadline = time.monotonic() + 240
    killed = False
    for line in process.stdout:
        if "round 150: king" in line:  # the second epoch's round has started
            time.sleep(0.5)
            process.send_signal(signal.SIGKILL)
            killed = True
            break
        assert time.monotonic() < deadline, "the validator never reached the second round"
    process.wait(timeout=60)
    assert killed, "the run ended before it could be killed"
    interrupted = load_state(state_dir)
    assert interrupted.last_epoch_block == 100 and interrupted.king == hotkey("good")  # nothing of round 150
    restart = subprocess.run(
        [sys.executable, str(ROOT / "neurons" / "validator.py"), *args, "--neuron.epochs", "2"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert restart.returncode == 0, restart.stdout[-2000:] + restart.stderr[-2000:]
    final = load_state(state_dir)
    assert final.fingerprint_inputs == interrupted.fingerprint_inputs is not None  # drawn in epoch 100, kept
    assert comparable(final) == comparable(load_state(reference_dir))


def comparable(state):
    """A state's JSON with its fingerprint values left out: each validator draws its own private
    fingerprint prompts (an unkept seed), so two runs agree on whose fingerprints are kept, not
    on their numbers."""
    data = state.to_json()
    data["fingerprint_inputs"] = data["fingerprint_inputs"] is not None
    data["fingerprints"] = {k: (v["hotkey"], v["commit_block"]) for k, v in data["fingerprints"].items()}
    return data


def test_mock_needs_a_scenario_and_a_bounded_number_of_epochs(world, tmp_path, capsys):
    args = argv(world, tmp_path / "state")
    no_scenario = [a for i, a in enumerate(args) if a != "--mock.scenario" and (i == 0 or args[i - 1] != "--mock.scenario")]
    assert validator_script.main([*no_scenario, "--neuron.epochs", "1"]) == 2
    assert "--mock needs --mock.scenario" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        validator_script.main(args)  # no --neuron.epochs: the mock chain never waits
    assert "--mock needs --neuron.epochs" in capsys.readouterr().err


def test_only_the_current_king_stays_pinned_in_the_model_cache(world, tmp_path):
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3, hotkey("better"): 0.05})
    v = make_validator(world, tmp_path / "state", scorer=scorer)
    pinned = set()
    v.store.pin = lambda c: pinned.add(str(c))
    v.store.unpin = lambda c: pinned.discard(str(c))
    assert v.run(epochs=1) == 1
    assert pinned == {v.state.miners[hotkey("good")].commitment}
    assert v.run(epochs=1) == 1  # better wins once: the contender; good is still the king
    assert pinned == {v.state.miners[hotkey("good")].commitment}
    assert v.run(epochs=1) == 1  # better wins again and dethrones good
    assert pinned == {v.state.miners[hotkey("better")].commitment}


# -- spec v3 (issue 23 §1, §2): reproductions through the mock validator ----------------------


def test_a_commitment_made_after_the_seed_block_is_not_scored_in_that_round(world, tmp_path, capsys):
    """Issue 23 §1: a round that starts late in its window (a long round before it) saw a commitment
    at block 170 scored in round 150 and crowned. A round seeded by S scores only commitments made
    before S − 50; the late one is pre-checked, waits, and meets the king two rounds later."""
    miners = [{"hotkey": hotkey("good"), "model": str(world / "miners" / "good"), "commit_block": 10},
              {"hotkey": hotkey("fair"), "model": str(world / "miners" / "fair"), "commit_block": 120},
              {"hotkey": hotkey("better"), "model": str(world / "miners" / "better"), "commit_block": 170}]
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("better"): 0.05})
    state_dir = tmp_path / "state"
    # the chain is at block 175: the epoch's window began at 150, whose hash is public by now
    v = make_validator(world, state_dir, scenario=scenario_with(world, tmp_path, miners, start_block=175), scorer=scorer)
    assert v.run(epochs=1) == 1
    assert scorer.rounds == [[hotkey("good")]]  # round 150: only what was committed before block 100
    state = load_state(state_dir)
    assert state.last_round["seed_block"] == 150 and state.king == hotkey("good")
    late = state.miners[hotkey("better")]
    assert late.status == PENDING and late.checked and late.kl is None  # pre-checked early, not scored
    out = capsys.readouterr().out
    assert (f"pending: uid {late.uid} mock/better (checked; committed at block 170, this round scores commitments "
            "before block 100: a later round)") in out
    assert v.run(epochs=1) == 1  # round 200: fair (120 < 150) meets the king; better (170) still waits
    assert scorer.rounds[-1] == [hotkey("good"), hotkey("fair")] and load_state(state_dir).king == hotkey("good")
    assert v.run(epochs=1) == 1  # round 250: 170 < 200, its seed block's hash was unknown when it committed
    assert scorer.rounds[-1] == [hotkey("good"), hotkey("better")]
    assert load_state(state_dir).contender["hotkey"] == hotkey("better")  # won once; confirmed or not next round


def test_default_mock_start_lets_the_first_round_score_every_commitment(world, tmp_path):
    from distil.validator.mock import load_scenario

    miners = [{"hotkey": hotkey("good"), "model": str(world / "miners" / "good"), "commit_block": 49},
              {"hotkey": hotkey("fair"), "model": str(world / "miners" / "fair"), "commit_block": 50}]
    for blocks, start in (((49, 50), 150), ((49, 49), 100), ((0, 10), 100), ((51, 99), 150), ((100, 100), 200)):
        for miner, block in zip(miners, blocks):
            miner["commit_block"] = block
        chain, _, _ = load_scenario(scenario_with(world, tmp_path, miners), 97, "5Validator", 50)
        assert chain.block() == start, blocks
    chain, _, _ = load_scenario(scenario_with(world, tmp_path, miners), 97, "5Validator", 50, commit_delay=0)
    assert chain.block() == 150  # commit block 100 < 150 − 0: the rule is strict


def same_block_where_the_draw_favours(winner: str, loser: str) -> int:
    """A block of the mock chain whose hash's draw (the spec's formula, computed here) puts `winner` first."""
    import hashlib

    from template.mock_chain import mock_block_hash

    def draw(block, hk):
        return hashlib.sha256(f"distil-tie|1|{mock_block_hash(block)[2:]}|{hk}".encode()).hexdigest()

    return next(b for b in range(20, 90) if draw(b, winner) < draw(b, loser))


def test_a_copied_commitment_string_in_the_same_block_is_invalid_and_the_victim_keeps_its_model(world, tmp_path):
    """Issue 23 §2: a thief copies the victim's `repo@rev` into the same block from a hotkey that sorts
    first in ss58 order (and that the block's draw favours too). The repo's distil.json names the
    victim: the thief's commitment is INVALID, and the victim is scored and crowned, never COPY."""
    thief, victim = sorted([hotkey("thief"), hotkey("victim")])
    block = same_block_where_the_draw_favours(thief, victim)
    model = owned(world / "miners" / "better", victim, tmp_path)
    miners = [{"hotkey": hk, "model": str(model), "repo": "victim/model", "commit_block": block} for hk in (thief, victim)]
    scorer = CountingScorer({victim: 0.05, thief: 0.05})
    v = make_validator(world, tmp_path / "state", scenario=scenario_with(world, tmp_path, miners, own=False), scorer=scorer)
    assert v.chain.commitments()[thief].data == v.chain.commitments()[victim].data  # the very same string
    assert v.run(epochs=1) == 1
    state = load_state(tmp_path / "state")
    stolen, own = state.miners[thief], state.miners[victim]
    assert (stolen.reason, stolen.code) == (INVALID, "OWNER_MISMATCH") and victim in stolen.detail
    assert own.status == KING and own.reason is None and state.king == victim
    assert all(owner["hotkey"] == victim for owner in state.hash_owners.values()) and state.hash_owners
    assert scorer.rounds == [[victim]]


def test_the_same_weights_in_two_repos_in_one_block_go_to_the_draw_not_the_ss58_order(world, tmp_path):
    """Issue 23 §2: identical weights re-uploaded to another repo, each repo naming its own committer,
    committed in the same block: a copy, owned by the block's draw. The hotkeys are chosen so that
    ss58 order would give the other answer."""
    first, second = sorted([hotkey("alpha"), hotkey("omega")])
    block = same_block_where_the_draw_favours(second, first)  # ss58 order says `first`; the draw says `second`
    miners = [{"hotkey": hk, "model": str(world / "miners" / "good"), "repo": f"mock/{name}", "commit_block": block}
              for hk, name in ((first, "first"), (second, "second"))]
    scorer = CountingScorer({first: 0.1, second: 0.1})
    v = make_validator(world, tmp_path / "state", scenario=scenario_with(world, tmp_path, miners), scorer=scorer)
    assert v.run(epochs=1) == 1
    state = load_state(tmp_path / "state")
    loser = state.miners[first]
    # checked first (the queue takes one block's commitments in hotkey order), then displaced by the owner's claim
    assert (loser.reason, loser.code) == (COPY, "DUPLICATE_CONTENT"), loser
    assert loser.detail == (f"same weights as {state.miners[second].commitment} of {second}, committed in the same "
                            f"block {block}, which the block's draw puts first")
    assert state.king == second and scorer.rounds == [[second]]
    assert {o["hotkey"] for o in state.hash_owners.values()} == {second}
    from template.mock_chain import mock_block_hash

    assert all(m.commit_block_hash == mock_block_hash(block) for m in state.miners.values())
