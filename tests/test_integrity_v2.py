"""Scoring spec v2 through the mock validator: the degeneration guard, the v1 → v2 migration,
the per-coldkey challenger cap (issue 12 §1-2).

The guard runs the real engine on tiny models: a looping copy of the teacher
(`distil.tiny.looping_copy`, strength 1.5: KL about 1.0 on the demo prompts, below an
honest but weak student's 1.9, yet its greedy generations repeat one token) must never
take the crown. The cap and the migration use the counting scorer (no GPU work).
"""

import json

import pytest

from distil import SCORING_VERSION, demo, tiny
from distil.scoring.crowning import DEGENERATE_CODE
from distil.state import EVALUATED, INVALID, KING, PENDING, MinerRecord, ValidatorState, load_state, save_state
from template.mock_chain import InMemoryChain
from template.wallet import MockWallet
from test_validator import CountingScorer, hotkey, make_validator, scenario_with, world  # noqa: F401 (fixture)

LOOP_STRENGTH = 1.5


@pytest.fixture(scope="module")
def guard_models(tmp_path_factory):
    """weak: an honest noisy copy of the demo teacher (KL ≈ 1.9); looper, looper2: looping copies (KL ≈ 1.0)."""
    root = tmp_path_factory.mktemp("guard-models")
    teacher = tiny.build_model(tiny.teacher_config(), seed=0, logit_scale=demo.TEACHER_LOGIT_SCALE)
    tiny.save_model(root / "weak", teacher.config, model=tiny.perturbed_copy(teacher, seed=1, scale=0.3))
    tiny.save_model(root / "looper", teacher.config, model=tiny.looping_copy(teacher, LOOP_STRENGTH))
    # looper2 is its own model (another start), not looper with a stronger tweak: that one is 0.12
    # from looper by fingerprint, a functional copy (spec v3), and would never reach the probe
    tiny.save_model(root / "looper2", teacher.config,
                    model=tiny.looping_copy(tiny.perturbed_copy(teacher, seed=2, scale=0.05), LOOP_STRENGTH + 0.1))
    return root


def saved_rounds(state_dir):
    docs = [json.loads(p.read_text()) for p in (state_dir / "rounds").glob("round-*.json")]
    return sorted(docs, key=lambda d: d["seed_block"])  # round-<block>.json: by block, not by name


def probed(round_doc):
    return {m["key"]: m["probe"] for m in round_doc["models"] if "probe" in m}


def test_a_looping_model_never_takes_the_crown_of_an_empty_hill_or_from_a_king(world, guard_models, tmp_path):  # noqa: F811
    scenario = scenario_with(world, tmp_path, [
        {"hotkey": hotkey("weak"), "model": str(guard_models / "weak"), "commit_block": 10},
        {"hotkey": hotkey("looper"), "model": str(guard_models / "looper"), "commit_block": 20},
        {"hotkey": hotkey("looper2"), "model": str(guard_models / "looper2"), "commit_block": 60},
    ], start_block=100)  # round 100 scores the first two (before 100 − 50), round 150 the third
    state_dir = tmp_path / "state"
    # K = 4 prompts, 36 new tokens: long enough for a loop's tail window (≥ 32 tokens)
    v = make_validator(world, state_dir, "--eval.n_prompts", "4", "--eval.max_new_tokens", "36", scenario=scenario)
    assert v.run(epochs=1) == 1
    state = load_state(state_dir)
    looper, weak = state.miners[hotkey("looper")], state.miners[hotkey("weak")]
    # empty hill: the looper has the best KL, is probed first, is DEGENERATE; the next best passes
    first = saved_rounds(state_dir)[0]
    kl = {m["key"]: m["kl_mean"] for m in first["models"]}
    assert kl[hotkey("looper")] < kl[hotkey("weak")] < 2.0
    assert (looper.reason, looper.code) == (INVALID, DEGENERATE_CODE)
    assert "loops on 4/4 probe prompts" in looper.detail and "teacher 0" in looper.detail
    assert state.king == hotkey("weak") and weak.status == KING
    probes = probed(first)
    assert list(probes) == [hotkey("weak"), hotkey("looper")]  # round order; both probed, no one else
    assert probes[hotkey("looper")]["verdict"] == "DEGENERATE" and probes[hotkey("weak")]["verdict"] == "passed"
    assert all(len(set(c[-16:])) == 1 for c in probes[hotkey("looper")]["continuation_ids"])  # one token, repeated
    assert first["king"] is None and state.last_round["probes"] == {hotkey("looper"): "degenerate", hotkey("weak"): "passed"}
    weights = dict(zip(v.chain.weight_sets[-1].uids, v.chain.weight_sets[-1].weights))
    assert weights[weak.uid] == 1.0

    # with a king: a looping challenger beats its KL by far (it passes the first stage), and is
    # refused at the probe: it never becomes the contender
    assert v.run(epochs=1) == 1
    state = load_state(state_dir)
    second = saved_rounds(state_dir)[-1]
    assert second["king"] == hotkey("weak")
    kl = {m["key"]: m["kl_mean"] for m in second["models"]}
    assert kl[hotkey("looper2")] < 0.99 * kl[hotkey("weak")]  # it passes the first stage ...
    assert "first stage passed" in state.last_round["decisions"][hotkey("looper2")]
    assert state.king == hotkey("weak") and state.contender is None
    assert (state.miners[hotkey("looper2")].reason, state.miners[hotkey("looper2")].code) == (INVALID, DEGENERATE_CODE)
    assert list(probed(second)) == [hotkey("looper2")]  # one model probed: the would-be contender
    assert any(e.kind == "king_holds" for e in v.events)


def test_the_usual_round_probes_one_model(world, tmp_path, capsys):  # noqa: F811
    """The demo world's first three epochs: one probe per round (the would-be king of an empty
    hill, then the would-be contender), the verdict on stdout; the contender confirmed in the
    third round is crowned without a second probe."""
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir)
    assert v.run(epochs=3) == 3
    rounds = saved_rounds(state_dir)
    assert [r["seed_block"] for r in rounds] == [100, 150, 200]
    assert [list(probed(r)) for r in rounds] == [[hotkey("good")], [hotkey("better")], []]
    assert all(p["verdict"] == "passed" for r in rounds for p in probed(r).values())
    assert load_state(state_dir).king == hotkey("better")
    out = capsys.readouterr().out
    assert "probe: uid 3 demo/better: passed (loops 0/4, repeated 4-grams" in out
    assert "contender: uid 3 demo/better: won the first stage against uid 2 demo/good" in out


def test_a_v2_king_enters_the_first_v3_round_as_its_king(world, tmp_path):  # noqa: F811
    """Spec v2 → v3: the king keeps its crown and its weights (also through a first v3 round
    that fails), and is defended by the v3 rule: a better model must win twice."""
    scorer = CountingScorer({hotkey("good"): 0.1, hotkey("fair"): 0.2, hotkey("random"): 0.3, hotkey("better"): 0.05})
    state_dir = tmp_path / "state"
    v = make_validator(world, state_dir, scorer=scorer)
    assert v.run(epochs=1) == 1
    v2 = load_state(state_dir)
    assert v2.king == hotkey("good")
    v2.scoring_version = 2  # as a v2 validator left it
    v2.miners[hotkey("fair")].eval_strikes = 1
    save_state(v2, state_dir)
    good_uid = v2.miners[hotkey("good")].uid

    scorer.fail[hotkey("better")] = RuntimeError("CUDA error: device lost")  # the first v3 round fails
    restarted = make_validator(world, state_dir, scorer=scorer)
    restarted.load_state()
    assert restarted.state.scoring_version == SCORING_VERSION and restarted.state.king == hotkey("good")
    assert restarted.state.miners[hotkey("good")].status == KING and restarted.state.legacy_king is None
    assert restarted.state.miners[hotkey("fair")].status == PENDING  # re-scored as a challenger under v3
    assert restarted.state.miners[hotkey("fair")].eval_strikes == 0  # the migration resets evaluation strikes
    sets_before = len(restarted.chain.weight_sets)
    assert restarted.run(epochs=1) == 1
    after = load_state(state_dir)
    assert after.king == hotkey("good")
    assert len(restarted.chain.weight_sets) == sets_before + 1  # no epoch without weights
    assert dict(zip(restarted.chain.weight_sets[-1].uids, restarted.chain.weight_sets[-1].weights))[good_uid] == 1.0

    del scorer.fail[hotkey("better")]
    assert restarted.run(epochs=1) == 1  # the first v3 round completes: better is the contender, good holds
    mid = load_state(state_dir)
    assert mid.king == hotkey("good") and mid.contender["hotkey"] == hotkey("better")
    assert restarted.run(epochs=1) == 1  # confirmed on the next round's prompts
    done = load_state(state_dir)
    assert done.king == hotkey("better") and done.contender is None
    better_uid = done.miners[hotkey("better")].uid
    assert dict(zip(restarted.chain.weight_sets[-1].uids, restarted.chain.weight_sets[-1].weights))[better_uid] == 1.0


def test_one_coldkey_gets_two_challenger_slots_per_round_and_the_rest_wait(world, tmp_path):  # noqa: F811
    from distil.hub import LocalModelStore

    wallet = MockWallet("validator", "v")
    chain = InMemoryChain(start_block=100)
    chain.register(wallet.hotkey.ss58_address, validator_permit=True)
    store = LocalModelStore()
    state = ValidatorState()
    operator = MockWallet("operator", "cold").coldkey.ss58_address
    miners = [(f"5Op{i}", operator) for i in range(5)] + [("5Solo0", None), ("5Solo1", None)]
    for block, (hk, coldkey) in enumerate(miners, start=10):
        data = f"cap/{hk}@{store.add(f'cap/{hk}', world / 'miners' / 'good')}"
        uid = chain.register(hk, coldkey=coldkey)
        chain.put_commitment(hk, data, block=block)
        state.miners[hk] = MinerRecord(uid=uid, commitment=data, commit_block=block, checked=True, seen_public=True)
    state_dir = tmp_path / "state"
    save_state(state, state_dir)
    # the operator's first model is the best; the others are all worse than it
    kl = {"5Op0": 0.10, "5Op1": 0.30, "5Op2": 0.31, "5Op3": 0.32, "5Op4": 0.33, "5Solo0": 0.2, "5Solo1": 0.25}
    scorer = CountingScorer(kl)
    v = make_validator(world, state_dir, "--checks.teacher", str(world / "teacher"), "--eval.teacher", str(world / "teacher"),
                       scenario=None, chain=chain, store=store, wallet=wallet, scorer=scorer)
    assert v.run(epochs=3) == 3
    assert scorer.rounds == [
        ["5Op0", "5Op1", "5Solo0", "5Solo1"],  # 2 of the operator + 2 others; nobody disqualified
        ["5Op0", "5Op2", "5Op3"],  # the king does not count against its coldkey's cap
        ["5Op0", "5Op4"],
    ]
    final = load_state(state_dir)
    assert final.king == "5Op0" and all(final.miners[hk].status == EVALUATED for hk, _ in miners[1:])
    assert final.miners["5Op3"].coldkey == operator and final.miners["5Solo0"].coldkey != operator
    # the default cap comes from --eval.max_per_coldkey; 1 is stricter
    assert v.config.eval.max_per_coldkey == 2


def test_probe_walk_invalid_moves_on_transient_stops_and_crowns_no_worse_model():
    from distil.scoring.crowning import PROBE_INVALID, PROBE_TRANSIENT, ProbeVerdict, crown_first_sound

    state = ValidatorState(king="k")
    for i, hk in enumerate(["k", "a", "b", "c"]):
        state.miners[hk] = MinerRecord(uid=i, commitment=f"ns/{hk}@{'0' * 40}", commit_block=i, checked=True,
                                       status=KING if hk == "k" else EVALUATED,
                                       kl={"mean": 0.1, "se": 0.0, "median": 0.1, "p99": 0.1, "top1": 0.5, "seed_block": 1})
    answers = {"a": ProbeVerdict(PROBE_INVALID, "no longer loads"), "b": ProbeVerdict(PROBE_TRANSIENT, "CUDA out of memory"),
               "c": ProbeVerdict("passed", "fine")}
    asked = []

    def probe(hk):
        asked.append(hk)
        return answers[hk]

    after, events, outcomes = crown_first_sound(state, ["a", "b", "c"], probe, {hk: "beat k" for hk in "abc"})
    assert asked == ["a", "b"]  # c, worse than b, is not crowned because b could not be probed
    assert after.king == "k" and (after.miners["a"].reason, after.miners["a"].code) == (INVALID, "EVAL_PROBE")
    assert after.miners["b"].status == PENDING and after.miners["b"].kl is None and "out of memory" in after.miners["b"].detail
    assert after.miners["b"].eval_strikes == 1  # b's own failure: its strike
    # c keeps no KL that would stop it being scored again: it meets the king on fresh prompts, no strike
    assert after.miners["c"].status == PENDING and after.miners["c"].kl is None and after.miners["c"].eval_strikes == 0
    assert outcomes == {"a": "invalid", "b": "transient"} and events[-1].kind == "king_holds"


def test_a_model_that_always_fails_its_probe_cannot_protect_the_king_for_ever():
    """b beats the king every round and its probe always fails (not ours): a strike each round,
    INVALID EVAL_FAILED_REPEATEDLY at the third; then c, below it, is probed and crowned."""
    from distil.scoring.crowning import PROBE_TRANSIENT, ProbeVerdict, crown_first_sound
    from distil.scoring.epoch import EVAL_FAILED_REPEATEDLY

    state = ValidatorState(king="k")
    for i, hk in enumerate(["k", "b", "c"]):
        state.miners[hk] = MinerRecord(uid=i, commitment=f"ns/{hk}@{'0' * 40}", commit_block=i, checked=True,
                                       status=KING if hk == "k" else EVALUATED,
                                       kl={"mean": 0.1, "se": 0.0, "median": 0.1, "p99": 0.1, "top1": 0.5, "seed_block": 1})

    def probe(hk):
        return ProbeVerdict(PROBE_TRANSIENT, "the probe's worker died", code="EVAL_WORKER") if hk == "b" else \
            ProbeVerdict("passed", "fine")

    for round_ in range(1, 4):
        candidates = [hk for hk in ("b", "c") if state.miners[hk].status != "disqualified"]
        state, _, _ = crown_first_sound(state, candidates, probe, {hk: "beat k" for hk in "bc"}, max_strikes=3)
        assert state.king == "k" and state.miners["b"].eval_strikes == round_
    assert (state.miners["b"].reason, state.miners["b"].code) == (INVALID, EVAL_FAILED_REPEATEDLY)
    assert "EVAL_WORKER" in state.miners["b"].detail
    state, _, _ = crown_first_sound(state, ["c"], probe, {"c": "beat k"})
    assert state.king == "c"


def test_a_probe_that_fails_for_our_reasons_is_no_strike():
    from distil.scoring.crowning import PROBE_TRANSIENT, ProbeVerdict, crown_first_sound

    state = ValidatorState(king="k")
    for i, hk in enumerate(["k", "b"]):
        state.miners[hk] = MinerRecord(uid=i, commitment=f"ns/{hk}@{'0' * 40}", commit_block=i, checked=True,
                                       status=KING if hk == "k" else EVALUATED,
                                       kl={"mean": 0.1, "se": 0.0, "median": 0.1, "p99": 0.1, "top1": 0.5, "seed_block": 1})
    verdict = ProbeVerdict(PROBE_TRANSIENT, "killed by SIGBUS", code="LOCAL_IO_ERROR", ours=True)
    state, _, _ = crown_first_sound(state, ["b"], lambda hk: verdict, {"b": "beat k"})
    assert state.miners["b"].eval_strikes == 0 and state.miners["b"].status == PENDING and state.king == "k"
