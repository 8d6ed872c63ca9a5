"""King-of-the-hill decisions: pure functions, exhaustive cases, independent references."""

import random

import pytest
from scipy import stats

from distil.scoring.epoch import (
    FailedModel,
    RoundParams,
    RoundPlan,
    ScoredModel,
    apply_round,
    claim_hash,
    mark_checked,
    plan_round,
    reconcile,
    requeue,
    weights_for,
)
from distil.scoring.rules import cosine, dethrones, functional_copies, kl_failure, paired_t_pvalue
from distil.state import COPY, DISQUALIFIED, EVALUATED, INVALID, KING, KL_TOO_HIGH, PENDING, MinerRecord, ValidatorState

SHA = "ab" * 20
SEED = 10_000  # a round seeded long after every commitment of these tests (spec v3's commit delay)


def commitment(i):
    return f"miner{i}/student@{SHA}"


# -- rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_paired_t_matches_scipy(seed):
    rng = random.Random(seed)
    n = rng.randint(3, 120)
    king = [rng.uniform(0.1, 0.5) for _ in range(n)]
    chal = [k - rng.gauss(0.01, 0.05) for k in king]
    expected = stats.ttest_rel(king, chal, alternative="greater").pvalue
    assert paired_t_pvalue(king, chal) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_paired_t_zero_variance_sign_decides():
    assert paired_t_pvalue([0.5, 0.5], [0.4, 0.4]) == 0.0
    assert paired_t_pvalue([0.4, 0.4], [0.5, 0.5]) == 1.0
    assert paired_t_pvalue([0.4, 0.4], [0.4, 0.4]) == 1.0
    assert paired_t_pvalue([0.5], [0.4]) == 0.0  # one prompt: nothing to estimate, sign decides


def test_paired_t_refuses_different_prompt_sets():
    with pytest.raises(ValueError, match="different prompt sets"):
        paired_t_pvalue([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="non-finite"):
        paired_t_pvalue([0.1, float("nan")], [0.1, 0.2])


def test_dethrone_needs_the_epsilon_margin():
    king = [0.100] * 10
    # 0.5% better on every prompt: significant, but inside the 1% margin
    inside = dethrones(0.0995, [0.0995] * 10, 0.100, king)
    assert not inside.dethrones and not inside.margin_ok and inside.p_value == 0.0
    just_outside = dethrones(0.0989, [0.0989] * 10, 0.100, king)
    assert just_outside.dethrones
    # exactly at the threshold is not enough (strictly less than)
    threshold = 0.100 * (1 - 0.01)
    at = dethrones(threshold, [threshold] * 10, 0.100, king, epsilon=0.01)
    assert at.threshold == threshold and not at.margin_ok and not at.dethrones  # strictly below only


def test_dethrone_needs_significance_unless_alpha_is_one():
    king = [0.1] * 10
    # 2% better on average, but better on half the prompts and worse on the other half
    diffs = [0.1, -0.096] * 5
    chal = [k - d for k, d in zip(king, diffs)]
    kl_king, kl_chal = sum(king) / 10, sum(chal) / 10
    assert kl_chal < kl_king * 0.99
    decision = dethrones(kl_chal, chal, kl_king, king, epsilon=0.01, alpha=0.05)
    assert decision.margin_ok and decision.p_value > 0.4 and not decision.dethrones
    assert decision.p_value == pytest.approx(stats.ttest_rel(king, chal, alternative="greater").pvalue)
    assert dethrones(kl_chal, chal, kl_king, king, epsilon=0.01, alpha=1.0).dethrones
    assert not dethrones(kl_king, king, kl_king, king).dethrones  # equal KL never dethrones


def test_kl_failure():
    assert kl_failure(0.3) is None and kl_failure(2.0) is None
    assert "above the limit" in kl_failure(2.0001)
    for bad in (float("nan"), float("inf"), -float("inf"), None):
        assert "not a finite number" in kl_failure(bad)


def test_cosine_and_functional_copies():
    base = [0.1, 0.5, 0.2, 0.9, 0.05]
    assert cosine(base, base) == pytest.approx(1.0)
    assert cosine(base, [2 * x for x in base]) == pytest.approx(1.0)
    assert cosine([0, 0], [0, 0]) == 1.0 and cosine([0, 0], [1, 0]) == 0.0
    near = [x * (1 + 1e-6 * i) for i, x in enumerate(base)]
    other = [0.5, 0.1, 0.9, 0.2, 0.3]
    copies = functional_copies({"a": base, "b": near, "c": other}, {"a": 10, "b": 5, "c": 1})
    assert copies == {"a": "b"}  # b committed first, so a is the copy
    assert functional_copies({"a": base, "b": near}, {"a": 3, "b": 3}) == {"b": "a"}  # same block: hotkey order


# -- epoch ------------------------------------------------------------------------------


def state_with(records, king=None):
    state = ValidatorState(king=king)
    for hotkey, kw in records.items():
        state.miners[hotkey] = MinerRecord(**kw)
    return state


_distinct = iter(range(10**6))


def scored(kl, n=20, jitter=0.0, seed=0, vector=None):
    """A score with its own random per-position vector (so no two are functional copies)."""
    rng = random.Random(seed)
    vector_rng = random.Random(next(_distinct))
    per_prompt = [kl + rng.uniform(-jitter, jitter) for _ in range(n)]
    mean = sum(per_prompt) / n
    shift = kl - mean
    per_prompt = tuple(p + shift for p in per_prompt)
    return ScoredModel(kl, 0.0, kl, kl, 0.5, per_prompt, tuple(vector or [vector_rng.random() for _ in range(8)]))


def checked(uid, block, status=PENDING, kl=None):
    return dict(uid=uid, commitment=commitment(uid), commit_block=block, status=status, checked=True,
                kl=None if kl is None else {"mean": kl, "se": 0, "median": kl, "p99": kl, "top1": 0.5, "seed_block": 0})


def test_reconcile_new_malformed_changed_and_replaced_hotkeys():
    state = state_with({"old": checked(1, 5, KING, 0.2), "keep": checked(2, 6, EVALUATED, 0.3)}, king="old")
    state.hash_owners["sha256:x"] = {"hotkey": "old", "commit_block": 5, "commitment": commitment(1)}
    uids = {"new": 1, "keep": 2, "bad": 3}
    on_chain = {"new": (commitment(7), 50), "keep": (f"other/model@{SHA}", 60), "bad": ("not a commitment", 51)}
    new_state, events = reconcile(state, uids, on_chain, now_block=100)
    kinds = [(e.kind, e.hotkey) for e in events]
    assert ("deregistered", "old") in kinds and ("king_lost", "old") in kinds
    assert "old" not in new_state.miners and new_state.king is None
    assert new_state.hash_owners["sha256:x"]["hotkey"] == "old"  # ownership outlives registration
    assert new_state.miners["new"].status == PENDING and new_state.miners["new"].commit_block == 50
    assert new_state.miners["new"].kl is None and not new_state.miners["new"].checked  # inherits nothing
    assert new_state.miners["bad"].status == DISQUALIFIED and new_state.miners["bad"].code == "COMMITMENT_FORMAT"
    assert ("commitment_change_ignored", "keep") in kinds
    assert new_state.miners["keep"].commitment == commitment(2)
    assert state.king == "old"  # the input was not modified


def test_reconcile_accepts_the_live_json_form_as_the_same_commitment():
    state = state_with({"a": checked(1, 5)})
    live = '{"model": "miner1/student", "revision": "' + SHA + '"}'
    _, events = reconcile(state, {"a": 1}, {"a": (live, 5)}, now_block=10)
    assert events == []


def test_challengers_are_valid_never_evaluated_earliest_first_and_capped():
    records = {f"h{i}": checked(i, 100 - i) for i in range(10)}
    records["evaluated"] = checked(20, 1, EVALUATED, 0.3)
    records["unchecked"] = dict(uid=21, commitment=commitment(21), commit_block=0)
    state = state_with(records)
    assert list(plan_round(state, SEED, 3).challengers) == ["h9", "h8", "h7"]
    assert "evaluated" not in list(plan_round(state, SEED, 100).challengers) and "unchecked" not in list(plan_round(state, SEED, 100).challengers)


def test_hundred_miners_one_new_challenger_means_two_models_on_the_gpu():
    records = {f"h{i:03d}": checked(i, i, EVALUATED, 0.3 + i / 1000) for i in range(100)}
    records["h000"]["status"] = KING
    records["new"] = checked(100, 500)
    state = state_with(records, king="h000")
    plan = plan_round(state, SEED, max_challengers=8)
    assert plan.models == ["h000", "new"] and plan.needs_gpu
    idle = state_with({k: v for k, v in records.items() if k != "new"}, king="h000")
    assert not plan_round(idle, SEED).needs_gpu and plan_round(idle, SEED).models == ["h000"]


def test_no_king_rematch_of_the_best_few():
    records = {f"e{i}": checked(i, i, EVALUATED, 0.5 - i / 100) for i in range(6)}
    state = state_with(records)
    plan = plan_round(state, SEED, rematch_size=3)
    assert plan.king is None and plan.rematch == ("e5", "e4", "e3") and plan.needs_gpu


def run_round(state, plan, results, **params):
    return apply_round(state, plan, results, {"seed_block": 100, "seed": "0xabc"}, RoundParams(**params))


def test_first_round_without_king_crowns_the_best_valid_model():
    state = state_with({"a": checked(1, 10), "b": checked(2, 11), "c": checked(3, 12)})
    plan = RoundPlan(None, ("a", "b", "c"))
    out = run_round(state, plan, {"a": scored(0.30), "b": scored(0.20), "c": scored(2.5)})
    assert out.state.king == "b" and out.state.miners["b"].status == KING
    assert out.state.miners["a"].status == EVALUATED and out.state.miners["a"].kl["mean"] == 0.30
    assert out.state.miners["c"].reason == KL_TOO_HIGH
    assert out.state.last_round["king_after"] == "b" and out.state.last_round["seed_block"] == 100


def test_exact_tie_without_king_goes_to_the_earlier_commit():
    state = state_with({"late": checked(1, 20), "early": checked(2, 10)})
    out = run_round(state, RoundPlan(None, ("late", "early")), {"late": scored(0.2), "early": scored(0.2)})
    assert out.state.king == "early"


def test_a_challenger_wins_twice_to_take_the_crown():
    """Spec v3: the first stage makes a clearly better challenger the contender (its KL kept,
    the king keeps the crown); the next round, on fresh prompts, confirms it and crowns it."""
    from distil.state_schema import Contender

    base = {"k": checked(1, 1, KING, 0.2), "c": checked(2, 9)}
    first = run_round(state_with(base, king="k"), RoundPlan("k", ("c",)),
                      {"k": scored(0.200, jitter=0.01, seed=1), "c": scored(0.190, jitter=0.01, seed=2)})
    assert first.state.king == "k" and first.state.miners["c"].status == EVALUATED
    contender = Contender.from_dict(first.state.contender)
    assert (contender.hotkey, contender.king, contender.seed_block) == ("c", "k", 100)
    assert "first stage passed" in first.state.last_round["decisions"]["c"]
    plan = plan_round(first.state, 150)
    assert plan.contender == "c" and plan.challengers == () and plan.needs_gpu  # a contender alone is a round
    second = apply_round(first.state, plan, {"k": scored(0.200, jitter=0.01, seed=3), "c": scored(0.190, jitter=0.01, seed=4)},
                         {"seed_block": 150, "seed": "0xdef"})
    assert second.state.king == "c" and second.state.contender is None
    assert second.state.miners["k"].status == EVALUATED and second.state.last_round["confirmation"] == "confirmed"
    # equal on the fresh prompts: rejected, dropped, an evaluated model like any other
    rejected = apply_round(first.state, plan, {"k": scored(0.200, jitter=0.01, seed=3), "c": scored(0.2001, jitter=0.01, seed=4)},
                           {"seed_block": 150, "seed": "0xdef"})
    assert rejected.state.king == "k" and rejected.state.contender is None
    assert rejected.state.miners["c"].status == EVALUATED and rejected.state.last_round["confirmation"] == "rejected"


def test_a_challenger_inside_the_noise_does_not_become_the_contender():
    base = {"k": checked(1, 1, KING, 0.2), "c": checked(2, 9)}
    held = run_round(state_with(base, king="k"), RoundPlan("k", ("c",)), {"k": scored(0.200), "c": scored(0.2001)})
    assert held.state.king == "k" and held.state.contender is None and held.state.miners["c"].status == EVALUATED
    assert "not below" in held.state.last_round["decisions"]["c"]


def test_several_qualifying_challengers_lowest_kl_then_earliest_commit_becomes_the_contender():
    from distil.state_schema import Contender

    records = {"k": checked(1, 1, KING, 0.3), "c1": checked(2, 30), "c2": checked(3, 20), "c3": checked(4, 10)}
    plan = RoundPlan("k", ("c3", "c2", "c1"))
    out = run_round(state_with(records, king="k"), plan, {"k": scored(0.3), "c1": scored(0.20), "c2": scored(0.21), "c3": scored(0.29)})
    assert out.state.king == "k" and Contender.from_dict(out.state.contender).hotkey == "c1"
    tie = run_round(state_with(records, king="k"), plan, {"k": scored(0.3), "c1": scored(0.20), "c2": scored(0.20), "c3": scored(0.29)})
    assert Contender.from_dict(tie.state.contender).hotkey == "c2"  # same KL, earlier commit block


def test_noisy_challenger_does_not_pass_the_first_stage_without_significance():
    records = {"k": checked(1, 1, KING, 0.3), "c": checked(2, 5)}
    king_pp = (0.3,) * 10
    chal_pp = tuple(0.3 - d for d in [0.1, -0.09] * 5)  # 1.7% better on average, half the time worse
    k = ScoredModel(0.3, 0, 0, 0, 0, king_pp, (1.0, 2.0))
    c = ScoredModel(sum(chal_pp) / 10, 0, 0, 0, 0, chal_pp, (2.0, 1.0))
    assert c.kl_mean < k.kl_mean * 0.99
    strict = run_round(state_with(records, king="k"), RoundPlan("k", ("c",)), {"k": k, "c": c})
    assert strict.state.king == "k" and strict.state.contender is None and "p = " in strict.state.last_round["decisions"]["c"]


def test_a_contender_not_scored_keeps_its_seat_and_a_void_one_is_dropped():
    """Its round failed (a strike when others were scored): the confirmation waits, and a new
    first-stage passer waits too (pending, no KL). Once the king it beat is gone, the record is void."""
    from distil.scoring.epoch import contender_of
    from distil.state_schema import Contender

    base = {"k": checked(1, 1, KING, 0.3), "c": checked(2, 9), "n": checked(3, 12)}
    first = run_round(state_with(base, king="k"), RoundPlan("k", ("c",)), {"k": scored(0.3), "c": scored(0.2)})
    assert Contender.from_dict(first.state.contender).hotkey == "c"
    plan = RoundPlan("k", ("n",), contender="c")
    second = apply_round(first.state, plan, {"k": scored(0.3), "c": FailedModel("transient", "EVAL_WORKER", "died"),
                                             "n": scored(0.1)}, {"seed_block": 150, "seed": "0x1"})
    assert second.state.last_round["confirmation"] == "not_scored"
    assert Contender.from_dict(second.state.contender).hotkey == "c" and second.state.miners["c"].eval_strikes == 1
    n = second.state.miners["n"]
    assert n.status == PENDING and n.kl is None and n.code == "CONTENDER_OPEN" and n.eval_strikes == 0
    gone = second.state.copy()
    gone.miners["k"].status, gone.miners["k"].reason, gone.king = DISQUALIFIED, INVALID, None
    assert contender_of(gone) is None and plan_round(gone, 200).contender is None


def test_king_transient_failure_is_its_strike_and_the_challengers_meet_it_next_round():
    """The challengers' scores say the fault is the king's (the round scored them); they are
    not kept (no KL, no strike) and the same challengers face the king next round."""
    state = state_with({"k": checked(1, 1, KING, 0.3), "c": checked(2, 5)}, king="k")
    out = run_round(state, RoundPlan("k", ("c",)), {"k": FailedModel("transient", "EVAL_SCORE", "IndexError"), "c": scored(0.1)})
    assert not out.applied and out.state.king == "k" and out.state.miners["k"].status == KING
    assert out.state.miners["k"].eval_strikes == 1 and "IndexError" in out.state.miners["k"].detail
    c = out.state.miners["c"]
    assert c.status == PENDING and c.kl is None and c.eval_strikes == 0
    assert plan_round(out.state, SEED, 8) == RoundPlan("k", ("c",), commit_deadline=SEED - 50)
    assert weights_for(out.state, {"k": 1, "c": 2}) == ([1, 2], [1.0, 0.0])  # the king keeps its weights
    assert [e.kind for e in out.events] == ["eval_strike", "round_aborted"]


def test_a_king_that_keeps_failing_loses_the_crown_at_its_last_strike():
    state = state_with({"k": checked(1, 1, KING, 0.3), "c": checked(2, 5)}, king="k")
    for strike in (1, 2, 3):
        out = run_round(state, RoundPlan("k", ("c",)), {"k": FailedModel("transient", "CHECK_TIMEOUT", "past its deadline"),
                                                        "c": scored(0.5)}, max_strikes=3)
        state = out.state
        assert state.miners["k"].eval_strikes == min(strike, 3)
    assert state.king is None and state.miners["k"].reason == INVALID and state.miners["k"].code == "EVAL_FAILED_REPEATEDLY"
    assert "CHECK_TIMEOUT" in state.miners["k"].detail
    assert weights_for(state, {"k": 1, "c": 2}) is None  # the no-king rules apply: the next round has no king
    assert plan_round(state, SEED, 8).king is None and plan_round(state, SEED, 8).challengers == ("c",)


def test_a_king_failure_that_is_ours_or_shared_is_no_strike():
    state = state_with({"k": checked(1, 1, KING, 0.3), "c": checked(2, 5)}, king="k")
    ours = run_round(state, RoundPlan("k", ("c",)), {"k": FailedModel("transient", "LOCAL_IO_ERROR", "EIO", ours=True),
                                                     "c": scored(0.1)})
    assert ours.state.miners["k"].eval_strikes == 0 and ours.state.king == "k"
    alone = run_round(state, RoundPlan("k", ("c",)), {"k": FailedModel("transient", "EVAL_SCORE", "OOM"),
                                                      "c": FailedModel("transient", "EVAL_SCORE", "OOM")})
    assert alone.state.miners["k"].eval_strikes == 0 and alone.state.miners["c"].eval_strikes == 0  # nothing scored


def test_challenger_failures_are_strikes_only_when_others_scored_and_not_ours():
    state = state_with({"k": checked(1, 1, KING, 0.3), "own": checked(2, 5), "ours": checked(3, 6)}, king="k")
    results = {"k": scored(0.3), "own": FailedModel("transient", "EVAL_WORKER", "killed by SIGKILL"),
               "ours": FailedModel("transient", "LOCAL_IO_ERROR", "killed by SIGBUS", ours=True)}
    out = run_round(state, RoundPlan("k", ("own", "ours")), results, max_strikes=2)
    assert out.state.miners["own"].eval_strikes == 1 and out.state.miners["ours"].eval_strikes == 0
    # the striked model queues behind never-scored challengers, whatever its commit block
    out.state.miners["new"] = MinerRecord(**checked(4, 9))
    assert plan_round(out.state, SEED, 8).challengers == ("ours", "new", "own")
    again = run_round(out.state, RoundPlan("k", ("own",)), {"k": scored(0.3), "own": results["own"]},
                      max_strikes=2)
    assert again.state.miners["own"].code == "EVAL_FAILED_REPEATEDLY"
    # a model scored after a failure has its strikes cleared (they count failures in a row)
    state.miners["own"].eval_strikes = 1
    scored_now = run_round(state, RoundPlan("k", ("own",)), {"k": scored(0.3), "own": scored(0.35)})
    assert scored_now.state.miners["own"].eval_strikes == 0


def test_requeue_and_a_scoring_version_change_reset_evaluation_strikes():
    from distil.scoring.epoch import migrate_scoring_version

    state = state_with({"k": checked(1, 1, KING, 0.3), "c": checked(2, 5)}, king="k")
    state.miners["c"].eval_strikes = 2
    assert requeue(state, "c").miners["c"].eval_strikes == 0
    migrated, _ = migrate_scoring_version(state, state.scoring_version + 1)
    assert migrated.miners["c"].eval_strikes == 0


def test_a_new_checks_version_sends_every_checked_record_back_through_the_checks_king_first():
    from distil.scoring.prechecks import migrate_checks_version, precheck_queue

    state = state_with({"early": checked(2, 1, EVALUATED, 0.4), "k": checked(1, 3, KING, 0.3), "new": dict(uid=3,
                        commitment=commitment(3), commit_block=9)}, king="k")
    state.miners["bad"] = MinerRecord(uid=4, commitment=commitment(4), commit_block=2, status=DISQUALIFIED,
                                      reason=INVALID, code="DTYPE", checked=True)
    state.checks_version = 1
    migrated, events = migrate_checks_version(state, 2)
    assert migrated.checks_version == 2 and events[0].kind == "checks_version"
    assert [hk for hk in ("early", "k", "bad") if migrated.miners[hk].checked] == ["bad"]  # verdicts stay
    assert migrated.king == "k" and migrated.miners["k"].kl is not None  # its standing waits for the verdict
    assert precheck_queue(migrated, 10) == ["k", "early", "new"]
    assert migrate_checks_version(migrated, 2) == (migrated, [])


def test_failures_invalid_disqualify_transient_retry():
    state = state_with({"k": checked(1, 1, KING, 0.3), "bad": checked(2, 5), "flaky": checked(3, 6)}, king="k")
    results = {
        "k": scored(0.3),
        "bad": FailedModel("invalid", "LOAD_KEYS", "missing keys: lm_head.weight"),
        "flaky": FailedModel("transient", "TIMEOUT", "download timed out"),
    }
    out = run_round(state, RoundPlan("k", ("bad", "flaky")), results)
    assert out.state.miners["bad"].reason == INVALID and out.state.miners["bad"].code == "LOAD_KEYS"
    flaky = out.state.miners["flaky"]
    assert flaky.status == PENDING and flaky.checked and flaky.kl is None and "timed out" in flaky.detail
    assert list(plan_round(out.state, SEED, 8).challengers) == ["flaky"]


def test_king_invalid_in_round_hands_the_crown_to_the_best_challenger():
    state = state_with({"k": checked(1, 1, KING, 0.3), "c": checked(2, 5)}, king="k")
    out = run_round(state, RoundPlan("k", ("c",)), {"k": FailedModel("invalid", "LOAD_KEYS", "x"), "c": scored(0.4)})
    assert out.state.king == "c" and out.state.miners["k"].status == DISQUALIFIED


def test_functional_copy_in_round_disqualifies_the_later_commitment():
    vector = [0.1, 0.7, 0.3, 0.9, 0.2, 0.05]
    state = state_with({"k": checked(1, 1, KING, 0.3), "copy": checked(2, 50)}, king="k")
    results = {"k": scored(0.3, vector=vector), "copy": scored(0.29, vector=[v * 1.0000001 for v in vector])}
    out = run_round(state, RoundPlan("k", ("copy",)), results)
    assert out.state.miners["copy"].reason == COPY and out.state.miners["copy"].code == "FUNCTIONAL_COPY"
    assert out.state.king == "k"


def test_nan_kl_is_a_failed_score_never_a_winner():
    state = state_with({"a": checked(1, 1), "b": checked(2, 2)})
    out = run_round(state, RoundPlan(None, ("a", "b")), {"a": scored(float("nan")), "b": scored(1.5)})
    assert out.state.king == "b" and out.state.miners["a"].reason == KL_TOO_HIGH


def test_missing_results_are_an_error():
    state = state_with({"a": checked(1, 1)})
    with pytest.raises(ValueError, match="missing"):
        run_round(state, RoundPlan(None, ("a",)), {})


def test_hash_claims_earliest_commit_owns():
    state = state_with({"first": checked(1, 10), "second": checked(2, 20)})
    state, _ = mark_checked(state, "first", "sha256:w", "sha256:f", 100)
    state, events = mark_checked(state, "second", "sha256:w", "sha256:g", 100)
    assert state.miners["second"].reason == COPY and "first" in state.miners["second"].detail
    assert state.hash_owners["sha256:w"]["hotkey"] == "first"
    # an earlier commitment checked later (it was private at first) takes the hash over, even from a king
    state.miners["first"].status = KING
    state.king = "first"
    state.miners["early"] = MinerRecord(uid=3, commitment=commitment(3), commit_block=5)
    state, events = claim_hash(state, "early", "sha256:w")
    assert state.miners["first"].reason == COPY and state.king is None
    assert any(e.kind == "king_lost" for e in events)


# -- spec v3: commitments close before the seed; one tie rule (issue 23 §1, §2) -----------


def test_a_round_scores_only_commitments_made_before_its_seed_block_minus_the_delay():
    from distil.scoring.epoch import DEFAULT_COMMIT_DELAY

    assert DEFAULT_COMMIT_DELAY == 50
    seed = 150
    state = state_with({"k": checked(1, 10, KING, 0.3), "early": checked(2, 99), "edge": checked(3, 100),
                        "late": checked(4, 149), "after": checked(5, 170), "unchecked": dict(uid=6, commitment=commitment(6),
                                                                                       commit_block=20)}, king="k")
    plan = plan_round(state, seed)  # the rule is strict: block 100 = 150 − 50 is too late
    assert plan.challengers == ("early",) and plan.commit_deadline == 100
    assert set(plan.later) == {"edge", "late", "after"} and "unchecked" not in plan.later
    assert plan_round(state, 200).challengers == ("early", "edge", "late")  # the next round takes them
    assert plan_round(state, 150, commit_delay=0).challengers == ("early", "edge", "late")  # commit_block < S alone
    assert plan_round(state, 250).challengers == ("early", "edge", "late", "after")
    # without a king the rematch models are old by construction; the rule still bounds the challengers
    kingless = state_with({"e": checked(1, 10, EVALUATED, 0.3), "late": checked(2, 149)})
    plan = plan_round(kingless, 150)
    assert plan.rematch == ("e",) and plan.challengers == () and plan.later == ("late",) and plan.needs_gpu


@pytest.mark.parametrize("length, delay", [(50, 50), (50, 0), (100, 30), (7, 12)])
def test_first_seed_block_is_the_first_boundary_whose_round_may_score_a_commitment(length, delay):
    from distil.scoring.epoch import first_seed_block

    for block in range(0, 400, 3):
        expected = next(s for s in range(0, 10_000, length) if block < s - delay)  # brute force over boundaries
        assert first_seed_block(block, length, delay) == expected
        record = state_with({"m": checked(1, block)})
        assert plan_round(record, expected, commit_delay=delay).challengers == ("m",)
        assert plan_round(record, expected - length, commit_delay=delay).challengers == ()


def draws_disagree_with_ss58(first: str, second: str) -> str:
    """A block hash whose draw (computed here from the spec's formula) puts `second` before `first`."""
    import hashlib

    from template.mock_chain import mock_block_hash

    def draw(block_hash, hotkey):
        return hashlib.sha256(f"distil-tie|1|{block_hash[2:]}|{hotkey}".encode()).hexdigest()

    return next(h for h in map(mock_block_hash, range(1000)) if draw(h, second) < draw(h, first))


def test_functional_copies_in_one_block_go_by_the_draw_not_the_ss58_order():
    base = [0.1, 0.5, 0.2, 0.9, 0.05]
    near = [x * (1 + 1e-6 * i) for i, x in enumerate(base)]
    block_hash = draws_disagree_with_ss58("5Aaa", "5Bbb")
    copies = functional_copies({"5Aaa": base, "5Bbb": near}, {"5Aaa": 3, "5Bbb": 3}, block_hashes={"5Aaa": block_hash,
                                                                                                      "5Bbb": block_hash})
    assert copies == {"5Aaa": "5Bbb"}
    # through a round: the same rule, from the records' block hashes
    state = state_with({"k": checked(1, 1, KING, 0.3), "5Aaa": checked(2, 40), "5Bbb": checked(3, 40)}, king="k")
    for hk in ("5Aaa", "5Bbb"):
        state.miners[hk].commit_block_hash = block_hash
    vector = [0.1, 0.7, 0.3, 0.9, 0.2, 0.05]
    results = {"k": scored(0.3), "5Aaa": scored(0.2, vector=vector), "5Bbb": scored(0.2, vector=[v * 1.0000001 for v in vector])}
    out = run_round(state, RoundPlan("k", ("5Aaa", "5Bbb")), results)
    assert (out.state.miners["5Aaa"].reason, out.state.miners["5Aaa"].code) == (COPY, "FUNCTIONAL_COPY")
    assert "same block 40: the block's draw" in out.state.miners["5Aaa"].detail
    assert out.state.miners["5Bbb"].status != DISQUALIFIED


def test_hash_claims_in_one_block_go_by_the_draw_in_either_checking_order():
    block_hash = draws_disagree_with_ss58("5Aaa", "5Bbb")
    for order in (("5Aaa", "5Bbb"), ("5Bbb", "5Aaa")):
        state = state_with({"5Aaa": checked(1, 40), "5Bbb": checked(2, 40)})
        for hk in order:
            state.miners[hk].commit_block_hash = block_hash
            state.miners[hk].checked = False
        for hk in order:
            state, _ = mark_checked(state, hk, "sha256:w", None, 100)
        assert state.hash_owners["sha256:w"] == {"hotkey": "5Bbb", "commit_block": 40, "commitment": commitment(2),
                                                 "block_hash": block_hash}
        assert state.miners["5Aaa"].reason == COPY and "same block 40" in state.miners["5Aaa"].detail
        assert state.miners["5Bbb"].status == PENDING


def test_ownership_rule_block_block_hashes_and_exemptions():
    from distil.scoring.ownership import adopt_owner_rule, blocks_without_hash, note_block_hashes, owner_exemption

    fresh = ValidatorState()
    assert fresh.owner_rule_block == 0 and adopt_owner_rule(fresh, 500) == (fresh, [])
    old = ValidatorState.from_json({**fresh.to_json(), "owner_rule_block": None})  # a state from before the rule
    old.miners["before"] = MinerRecord(**checked(1, 499))
    old.miners["after"] = MinerRecord(**checked(2, 500))
    assert owner_exemption(old, "after") is not None  # not adopted yet: nothing can be refused for it
    adopted, events = adopt_owner_rule(old, 500)
    assert adopted.owner_rule_block == 500 and events[0].kind == "owner_rule" and old.owner_rule_block is None
    assert "before the ownership rule (block 500)" in owner_exemption(adopted, "before")
    assert owner_exemption(adopted, "after") is None
    assert adopt_owner_rule(adopted, 900)[0].owner_rule_block == 500  # recorded once
    # block hashes: read once per block, for records and for hash owners that lack one
    adopted.hash_owners["sha256:x"] = {"hotkey": "gone", "commit_block": 7, "commitment": commitment(9)}
    assert blocks_without_hash(adopted) == [7, 499, 500]
    noted = note_block_hashes(adopted, {7: "0x" + "AB" * 32, 499: "cd" * 32})
    assert noted.hash_owners["sha256:x"]["block_hash"] == "0x" + "ab" * 32
    assert noted.miners["before"].commit_block_hash == "0x" + "cd" * 32 and noted.miners["after"].commit_block_hash is None
    assert blocks_without_hash(noted) == [500] and adopted.miners["before"].commit_block_hash is None
    with pytest.raises(ValueError, match="not a block hash"):
        note_block_hashes(adopted, {7: "0x1234"})


def test_weights_king_only():
    state = state_with({"k": checked(4, 1, KING, 0.1), "o": checked(2, 3, EVALUATED, 0.2)}, king="k")
    uids, weights = weights_for(state, {"k": 4, "o": 2, "x": 0})
    assert uids == [0, 2, 4] and weights == [0.0, 0.0, 1.0]
    assert weights_for(ValidatorState(), {"k": 4}) is None
    assert weights_for(state, {"o": 2}) is None  # king deregistered: no weights


def test_requeue_after_a_wrong_disqualification():
    state = state_with({"a": checked(1, 1)})
    state, _ = mark_checked(state, "a", "sha256:a", None, 10)
    state.miners["a"].status = DISQUALIFIED
    state.miners["a"].reason = INVALID
    again = requeue(state, "a")
    assert again.miners["a"].status == PENDING and not again.miners["a"].checked and again.miners["a"].reason is None
    assert "sha256:a" not in again.hash_owners
    with pytest.raises(KeyError):
        requeue(state, "nobody")


def test_a_new_scoring_version_keeps_the_king_rescores_the_others_and_keeps_final_verdicts():
    from distil.scoring.epoch import migrate_scoring_version

    state = state_with({
        "k": checked(1, 1, KING, 0.1), "e": checked(2, 2, EVALUATED, 0.2),
        "c": dict(uid=3, commitment=commitment(3), commit_block=3, status=DISQUALIFIED, reason=COPY, checked=True),
        "h": dict(uid=4, commitment=commitment(4), commit_block=4, status=DISQUALIFIED, reason=KL_TOO_HIGH, checked=True),
    }, king="k")
    state.miners["e"].eval_strikes = 2
    state.scoring_version = 2
    same, events = migrate_scoring_version(state, 2)
    assert same is state and events == []
    new, events = migrate_scoring_version(state, 3)
    assert new.scoring_version == 3 and events[0].kind == "scoring_version"
    # the v2 king enters the first v3 round as its king (weighted meanwhile), defended by the v3 rule
    assert new.king == "k" and new.miners["k"].status == KING and new.legacy_king is None and new.contender is None
    assert weights_for(new, {"k": 1, "e": 2}) == ([1, 2], [1.0, 0.0])
    assert [new.miners[h].status for h in ("e", "h")] == [PENDING] * 2
    assert all(new.miners[h].checked and new.miners[h].kl is None for h in ("e", "h"))
    assert new.miners["e"].eval_strikes == 0  # the migration resets evaluation strikes
    assert new.miners["c"].reason == COPY
    plan = plan_round(new, SEED, 8)
    assert plan.king == "k" and list(plan.challengers) == ["e", "h"]
    # a much better challenger does not take the crown in the first v3 round: it becomes the contender
    out = run_round(new, plan, {"k": scored(0.1, jitter=0.01, seed=1), "e": scored(0.05, jitter=0.01, seed=2),
                                "h": scored(0.3, seed=3)})
    assert out.state.king == "k" and out.state.contender["hotkey"] == "e"


# -- the pre-check queue and strikes (issue 9 §2) ---------------------------------------

from distil.scoring.prechecks import (  # noqa: E402
    CHECK_FAILED_REPEATEDLY,
    TRANSIENT as T,
    UNAVAILABLE as U,
    VERDICT as V,
    Attempt,
    add_strikes,
    note_attempt,
    precheck_queue,
    repo_specific_failures,
)


def pending(n, first_block=1):
    return ValidatorState(miners={
        f"m{i:02d}": MinerRecord(uid=i, commitment=commitment(i), commit_block=first_block + i) for i in range(n)
    })


def test_never_checked_commitments_go_first_whatever_failed_before():
    state = pending(21)  # 20 that will keep failing, committed before an honest one (m20)
    first = precheck_queue(state, 16)
    assert first == [f"m{i:02d}" for i in range(16)]
    for hotkey in first:
        state = note_attempt(state, hotkey, "CHECKER_ERROR", "boom", block=100)
    second = precheck_queue(state, 16)
    assert second[:5] == ["m16", "m17", "m18", "m19", "m20"]  # the honest one is checked in epoch 2
    assert second[5:] == [f"m{i:02d}" for i in range(11)]  # then retries, earliest commit first


def test_retries_take_turns_least_recently_tried_first():
    state = pending(4)
    state = note_attempt(state, "m00", "HUB_TRANSIENT", "503", block=200)
    state = note_attempt(state, "m01", "HUB_TRANSIENT", "503", block=100)
    state = note_attempt(state, "m02", "HUB_TRANSIENT", "503", block=150)
    assert precheck_queue(state, 10) == ["m03", "m01", "m02", "m00"]
    assert precheck_queue(state, 2) == ["m03", "m01"]
    assert precheck_queue(state, 0) == []
    state.miners["m03"].checked = True  # passed: leaves the queue
    state.miners["m01"].status = DISQUALIFIED
    state.miners["m01"].reason = INVALID
    assert precheck_queue(state, 10) == ["m02", "m00"]


@pytest.mark.parametrize(
    "attempts, answered, strikes",
    [
        # the hub answered the others: a HUB_TRANSIENT for one repo alone is its own
        ([Attempt("a", T, "HUB_TRANSIENT"), Attempt("b", V)], (), {"a"}),
        ([Attempt("a", T, "HUB_ERROR"), Attempt("b", U, "NOT_PUBLIC")], (), {"a"}),
        ([Attempt("a", T, "HUB_TRANSIENT"), Attempt("b", T, "HUB_TRANSIENT")], {"king"}, {"a", "b"}),
        # an outage every repo sees (the king's integrity check could not run either): no strike
        ([Attempt("a", T, "HUB_TRANSIENT"), Attempt("b", T, "HUB_TRANSIENT")], (), set()),
        ([Attempt("a", T, "HUB_TRANSIENT")], (), set()),
        ([Attempt("a", T, "HUB_TRANSIENT")], {"a"}, set()),  # its own integrity answer is no evidence
        # the checker crashes on one repo while reaching verdicts on others: a strike
        ([Attempt("a", T, "CHECKER_ERROR"), Attempt("b", V)], (), {"a"}),
        # the checker fails for every repo checked (out of memory): no strike, even with the hub up
        ([Attempt("a", T, "CHECKER_ERROR"), Attempt("b", T, "CHECKER_ERROR")], {"king"}, set()),
        ([Attempt("a", T, "CHECKER_ERROR"), Attempt("b", U, "NOT_PUBLIC")], {"king"}, set()),
        # our own disk or memory failing is never the repo's strike, whatever the others got
        ([Attempt("a", T, "LOCAL_IO_ERROR"), Attempt("b", V)], {"king"}, set()),
        ([Attempt("a", T, "CHECKER_OUT_OF_MEMORY"), Attempt("b", V)], {"king"}, set()),
        # not public yet is never a strike
        ([Attempt("a", U, "NOT_PUBLIC"), Attempt("b", V)], {"king"}, set()),
        ([], {"king"}, set()),
    ],
)
def test_only_failures_specific_to_a_repo_are_strikes(attempts, answered, strikes):
    assert repo_specific_failures(attempts, answered) == frozenset(strikes)


def test_strikes_accumulate_to_check_failed_repeatedly_with_the_last_error():
    state = pending(2)
    for epoch in range(1, 6):
        state = note_attempt(state, "m00", "CHECKER_ERROR", f"crash {epoch}", block=100 * epoch)
        state, events = add_strikes(state, {"m00"}, max_strikes=6)
        assert state.miners["m00"].strikes == epoch and state.miners["m00"].status == PENDING
    state = note_attempt(state, "m00", "CHECKER_ERROR", "crash 6", block=600)
    state, events = add_strikes(state, {"m00"}, max_strikes=6)
    record = state.miners["m00"]
    assert (record.status, record.reason, record.code) == (DISQUALIFIED, INVALID, CHECK_FAILED_REPEATEDLY)
    assert "6 times" in record.detail and "CHECKER_ERROR: crash 6" in record.detail
    assert [e.kind for e in events] == ["strike", "disqualified"]
    assert state.miners["m01"].strikes == 0 and precheck_queue(state, 10) == ["m01"]
    # a requeue by the operator starts afresh, at the front of the queue
    again = requeue(state, "m00")
    assert again.miners["m00"].strikes == 0 and again.miners["m00"].last_check_block is None
    assert precheck_queue(again, 10) == ["m00", "m01"]


# -- scoring-version migration: the interim (legacy) king -------------------------------


def legacy_state():
    """A state migrated to spec v2 by an earlier version of this code: no king, the v1 king
    `k` weighted meanwhile (`legacy_king`), one evaluated model."""
    kl = {"mean": 0.1, "se": 0.01, "median": 0.1, "p99": 0.2, "top1": 0.5, "seed_block": 1}
    state = ValidatorState(king=None, legacy_king="k")
    state.miners["k"] = MinerRecord(uid=0, commitment=commitment(0), commit_block=1, status=PENDING, checked=True)
    state.miners["e"] = MinerRecord(uid=1, commitment=commitment(1), commit_block=2, status=EVALUATED, checked=True, kl=kl)
    return state


def test_a_round_that_crowns_nobody_keeps_the_legacy_king_weighted():
    """No epoch without weights after an upgrade that left a legacy king: a round whose models
    all failed for a reason of ours (or whose best could not be probed) crowned nobody, so the
    old king keeps them."""
    state = legacy_state()
    plan = plan_round(state, SEED)
    assert set(plan.models) == {"k", "e"}
    failed = {hk: FailedModel("transient", "EVAL_LOAD", "CUDA out of memory") for hk in plan.models}
    out = apply_round(state, plan, failed, {"seed_block": 200})
    assert out.state.king is None and out.state.legacy_king == "k"
    assert weights_for(out.state, {"k": 0, "e": 1}) == ([0, 1], [1.0, 0.0])

    from distil.scoring.crowning import PROBE_TRANSIENT, ProbeVerdict

    results = {hk: scored(0.1 if hk == "e" else 0.2) for hk in plan.models}
    out = apply_round(state, plan, results, {"seed_block": 200},
                      probe=lambda hk: ProbeVerdict(PROBE_TRANSIENT, "CUDA out of memory"))
    assert out.state.king is None and out.state.legacy_king == "k"

    out = apply_round(state, plan, results, {"seed_block": 200})  # a crowned king takes the weights over
    assert out.state.king == "e" and out.state.legacy_king is None
    assert weights_for(out.state, {"k": 0, "e": 1}) == ([0, 1], [0.0, 1.0])


def test_float_rounding_below_zero_in_a_kl_summary_still_saves(tmp_path):
    """KL is ≥ 0, but the centred kernel rounds a near-zero position to about -1e-6 (a student
    matching the teacher up to a logit shift). A round whose record carried that value could
    never be saved (the schema refuses negative KL), so every epoch replayed it without weights."""
    from distil.state import load_state, save_state

    state = ValidatorState()
    state.miners["a"] = MinerRecord(**checked(1, 10))
    state.miners["b"] = MinerRecord(**checked(2, 11))
    plan = plan_round(state, SEED)
    near_zero = ScoredModel(-2e-7, 1e-8, -1e-6, 3e-6, 1.0, (-2e-7,) * 20, (0.3, 0.1, 0.2))
    too_high = ScoredModel(5.0, 0.1, -1e-6, 50.0, 0.1, (5.0,) * 20, (0.9, 0.1, 0.5))
    out = apply_round(state, plan, {"a": near_zero, "b": too_high}, {"seed_block": 200})
    assert out.state.king == "a" and out.state.miners["b"].reason == KL_TOO_HIGH
    save_state(out.state, tmp_path)
    saved = load_state(tmp_path)
    assert saved.miners["a"].kl["mean"] == 0.0 and saved.miners["a"].kl["median"] == 0.0
    assert saved.miners["a"].kl["p99"] == 3e-6 and saved.miners["b"].kl["median"] == 0.0
    assert saved.last_round["kl"]["a"] == -2e-7  # the round's own record keeps the measurement


def test_a_requeue_of_a_malformed_commitment_is_refused_and_the_state_still_saves(tmp_path):
    """Requeueing a COMMITMENT_FORMAT verdict put an unparseable commitment on a pending record:
    the state could not be saved and that epoch failed with no weights."""
    from distil.state import request_requeue, save_state
    from distil.validator.requests import apply_requests

    state, _ = reconcile(ValidatorState(), {"bad": 1}, {"bad": ("not a commitment", 5)}, 10)
    assert state.miners["bad"].code == "COMMITMENT_FORMAT"
    with pytest.raises(ValueError, match="does not parse"):
        requeue(state, "bad")
    request_requeue(tmp_path, "bad")
    after, events = apply_requests(state, tmp_path)
    assert after.miners["bad"].status == DISQUALIFIED and events == []
    assert not list((tmp_path / "requests").glob("*.json"))  # dropped, not retried every epoch
    save_state(after, tmp_path)


# -- spec v3: functional copies across rounds (judge_fingerprints) ----------------------------

from dataclasses import replace as _replace  # noqa: E402

import numpy as np  # noqa: E402

from distil.fingerprint import Fingerprint, FingerprintInputs  # noqa: E402
from distil.scoring.epoch import RoundFingerprints, judge_fingerprints  # noqa: E402
from distil.state_schema import validate_state  # noqa: E402

_INPUTS = FingerprintInputs.of([[1, 2, 3]] * 4, [list(range(10, 26))] * 4)  # 64 positions
_TEACHER = np.linspace(-0.5, -3.0, 64)


def _fp(offset_seed, scale=0.5, noise=0.0, dtype="float32", device="cpu"):
    """A model's fingerprint: the teacher's values plus this model's own error (seeded) and
    rounding-level noise; the same seed and a small noise is a functional copy."""
    rng = np.random.default_rng(offset_seed)
    error = rng.normal(0, scale, 64)
    values = np.minimum(_TEACHER + error + np.random.default_rng(1000 + offset_seed * 7 + int(noise * 1e6)).normal(0, noise, 64), 0)
    return Fingerprint.of(values, _INPUTS.digest, device, dtype).to_dict()


def _round_fps():
    return RoundFingerprints(_INPUTS.to_dict(), Fingerprint.of(np.minimum(_TEACHER, 0), _INPUTS.digest, "cpu", "bfloat16").to_dict())


def _with_fp(kl, fingerprint):
    return _replace(scored(kl), fingerprint=fingerprint)


def test_a_later_commitment_that_computes_an_earlier_ones_function_is_a_copy_whoever_was_scored_first():
    state = state_with({"orig": checked(1, 10, EVALUATED, 0.3), "king": checked(2, 5, KING, 0.2),
                        "copy": checked(3, 40), "honest": checked(4, 41)}, king="king")
    # round 1: the king and the original
    state, events = judge_fingerprints(state, {"king": _with_fp(0.2, _fp(1)), "orig": _with_fp(0.3, _fp(2))}, _round_fps())
    assert events == [] and state.fingerprint_inputs == _INPUTS.to_dict()
    assert sorted(o["hotkey"] for o in state.fingerprints.values()) == ["king", "orig"]
    # round 2: a copy of the original (rounding noise), and an honest model
    state, events = judge_fingerprints(state, {"king": _with_fp(0.2, _fp(1, noise=0.01)), "copy": _with_fp(0.3, _fp(2, noise=0.01)),
                                               "honest": _with_fp(0.3, _fp(5))}, _round_fps())
    assert [(e.kind, e.hotkey) for e in events] == [("disqualified", "copy")]
    copy = state.miners["copy"]
    assert (copy.status, copy.reason, copy.code) == (DISQUALIFIED, COPY, "FINGERPRINT_COPY")
    assert commitment(1) in copy.detail and "block 10" in copy.detail
    assert state.miners["honest"].status == PENDING and state.miners["king"].status == KING  # the king is never judged
    assert state.fingerprints[commitment(2)]["fingerprint"] == _fp(1)  # a kept fingerprint is not replaced
    validate_state(state.to_json())
    # the earlier original scored after its copy: the copy (committed later) is the one disqualified
    late = state_with({"thief": checked(7, 50, EVALUATED, 0.3), "owner": checked(8, 30)})
    late, _ = judge_fingerprints(late, {"thief": _with_fp(0.3, _fp(9))}, _round_fps())
    late, events = judge_fingerprints(late, {"owner": _with_fp(0.3, _fp(9, noise=0.01))}, _round_fps())
    assert (late.miners["thief"].code, late.miners["owner"].status) == ("FINGERPRINT_COPY", PENDING)
    assert commitment(8) in late.miners["thief"].detail


def test_fingerprints_of_other_settings_or_inputs_are_never_compared():
    state = state_with({"orig": checked(1, 10, EVALUATED, 0.3), "copy": checked(3, 40)})
    state, _ = judge_fingerprints(state, {"orig": _with_fp(0.3, _fp(2, dtype="bfloat16"))}, _round_fps())
    state, events = judge_fingerprints(state, {"copy": _with_fp(0.3, _fp(2))}, _round_fps())  # float32 vs bfloat16
    assert events == [] and state.miners["copy"].status == PENDING
    other = FingerprintInputs.of([[9, 9, 9]] * 4, [list(range(30, 46))] * 4)
    before = state.to_json()
    state, events = judge_fingerprints(state, {"copy": _with_fp(0.3, _fp(2))},
                                       RoundFingerprints(other.to_dict(), _round_fps().reference))
    assert events == [] and state.to_json() == before  # not this validator's inputs: nothing kept, nothing judged


def test_the_state_schema_checks_the_fingerprint_table():
    state = state_with({"orig": checked(1, 10, EVALUATED, 0.3)})
    state, _ = judge_fingerprints(state, {"orig": _with_fp(0.3, _fp(2))}, _round_fps())
    data = state.to_json()
    validate_state(data)
    (key,) = data["fingerprints"]
    data["fingerprints"]["other/repo@" + "1" * 40] = data["fingerprints"].pop(key)
    with pytest.raises(ValueError, match="keyed by another commitment"):
        validate_state(data)
    data = state.to_json()
    data["fingerprints"][key]["fingerprint"]["logprobs"] = "!!"
    with pytest.raises(ValueError, match="base64"):
        validate_state(data)
    data = state.to_json()
    data["fingerprint_inputs"]["sha256"] = "0" * 64
    with pytest.raises(ValueError, match="does not match"):
        validate_state(data)


def test_the_epoch_summary_names_a_contender_under_confirmation_beside_the_king():
    from distil.metrics.report import summary_lines
    from distil.scoring.epoch import RoundPlan

    state = state_with({"king": checked(1, 5, KING, 0.2), "cont": checked(2, 6, EVALUATED, 0.1)}, king="king")
    head = summary_lines(200, state, RoundPlan("king", (), contender="cont"), [], 1.0)[0]
    assert head.startswith(f"epoch 200: king uid 1 {commitment(1).split('@')[0]} (KL 0.200000) | contender: uid 2 ")
    assert "| challengers: none |" in head
    state.king = "cont"  # confirmed this round: the new_king line says so, the header names only the king
    assert "contender:" not in summary_lines(200, state, RoundPlan("king", (), contender="cont"), [], 1.0)[0]
