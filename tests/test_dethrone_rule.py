"""Scoring spec v3's dethrone rule: win twice (`WinTwice`), the contender's state machine
(`distil.scoring.contender`) and what a miner must beat (`required_gain`)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
from scipy import stats

from distil.scoring.contender import (
    CONFIRMED,
    NOT_SCORED,
    REJECTED,
    VOID,
    Contender,
    new_contender,
    step,
)
from distil.scoring.rules import WinTwice, dethrones, required_gain


def scored(values) -> SimpleNamespace:
    values = [float(v) for v in values]
    return SimpleNamespace(kl_mean=math.fsum(values) / len(values), per_prompt_kl=values)


def noisy(base, factor, sd, seed):
    rng = random.Random(seed)
    return [b * factor * math.exp(rng.gauss(0.0, sd)) for b in base]


BASE = [0.05 + 0.002 * ((7 * i) % 23) for i in range(120)]  # the king's per-prompt KL, varied


# -- the rule's two tests ------------------------------------------------------------------


def test_first_stage_level_is_the_round_level_over_a_fixed_divisor():
    assert (WinTwice().alpha, WinTwice().confirm_alpha, WinTwice().max_challengers, WinTwice().epsilon) == (0.1, 0.025, 8, 0.0)
    rule = WinTwice(alpha=0.1, confirm_alpha=0.1, max_challengers=8)
    assert rule.first_alpha == pytest.approx(0.0125)
    assert WinTwice(alpha=0.1, max_challengers=4).first_alpha == pytest.approx(0.025)
    # the same challenger and king decide the same whatever else the round held: the test reads only the two
    king, challenger = scored(BASE), scored(noisy(BASE, 0.97, 0.05, 1))
    alone = rule.first_stage(challenger.kl_mean, challenger.per_prompt_kl, king.kl_mean, king.per_prompt_kl)
    again = rule.first_stage(challenger.kl_mean, challenger.per_prompt_kl, king.kl_mean, king.per_prompt_kl)
    assert alone == again


@pytest.mark.parametrize("kwargs, message", [
    ({"max_challengers": 0}, "max_challengers"), ({"max_challengers": 2.0}, "max_challengers"),
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"), ({"confirm_alpha": 1.5}, "confirm_alpha"),
    ({"epsilon": -0.01}, "epsilon"), ({"epsilon": 1.0}, "epsilon"),
])
def test_rule_parameters_out_of_range_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WinTwice(**kwargs)


def p_value_of(king, challenger) -> float:
    return float(stats.ttest_rel(king, challenger, alternative="greater").pvalue)


def test_a_p_value_between_the_two_levels_passes_the_confirmation_but_not_the_first_stage():
    rule = WinTwice(confirm_alpha=0.1)
    for seed in range(400):  # find a challenger with 0.0125 < p < 0.1
        challenger = noisy(BASE, 0.985, 0.06, seed)
        p = p_value_of(BASE, challenger)
        if 0.02 < p < 0.08:
            break
    else:
        pytest.fail("no challenger with a p-value between the levels")
    k, c = scored(BASE), scored(challenger)
    assert not rule.first_stage(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl).dethrones
    assert rule.confirms(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl).dethrones
    # both are the one test, `dethrones`, at their levels
    assert rule.confirms(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl) == dethrones(
        c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl, 0.0, 0.1)


def test_a_copy_of_the_king_and_a_worse_model_never_pass():
    rule = WinTwice()
    k = scored(BASE)
    for challenger in (BASE, [x * 1.02 for x in BASE], noisy(BASE, 1.05, 0.02, 3)):
        c = scored(challenger)
        assert not rule.first_stage(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl).dethrones
        assert not rule.confirms(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl).dethrones


def test_the_margin_applies_to_both_stages():
    rule = WinTwice(epsilon=0.05)
    k, c = scored(BASE), scored([x * 0.97 for x in BASE])  # better on every prompt, but by 3 % < 5 %
    assert not rule.first_stage(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl).dethrones
    assert not rule.confirms(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl).dethrones
    c = scored([x * 0.94 for x in BASE])
    assert rule.first_stage(c.kl_mean, c.per_prompt_kl, k.kl_mean, k.per_prompt_kl).dethrones


# -- required_gain: what a miner must beat -------------------------------------------------


def passes_scaled(king, challenger, s, rule):
    c = [s * x for x in challenger]
    return rule.first_stage(math.fsum(c) / len(c), c, math.fsum(king) / len(king), king).dethrones


@pytest.mark.parametrize("seed", range(40))
def test_required_gain_is_the_boundary_of_the_real_rule(seed):
    rng = random.Random(seed)
    n = rng.choice([3, 4, 5, 12, 40, 120])
    king = [rng.uniform(0.02, 0.3) for _ in range(n)]
    challenger = [k * rng.uniform(0.6, 1.4) + rng.gauss(0, 0.01) ** 2 for k in king]
    rule = WinTwice(epsilon=rng.choice([0.0, 0.01, 0.03]), alpha=rng.choice([0.1, 0.2]),
                    max_challengers=rng.choice([1, 8]))
    need = required_gain(king, challenger, rule)
    mean_c = math.fsum(challenger) / n
    assert need.passes == passes_scaled(king, challenger, 1.0, rule)
    if need.max_kl is None:  # no scale passes, checked on a grid down to nearly zero KL
        assert not need.passes
        assert not any(passes_scaled(king, challenger, s, rule) for s in (1e-3, 0.1, 0.3, 0.5, 0.8))
        return
    s = need.max_kl / mean_c
    assert passes_scaled(king, challenger, s * (1 - 1e-7), rule)
    assert not passes_scaled(king, challenger, s * (1 + 1e-7), rule)
    assert need.gain == pytest.approx(1 - need.max_kl / need.king_kl)
    assert need.gain >= rule.epsilon - 1e-12
    assert need.level == rule.first_alpha


def test_required_gain_with_a_round_of_one_prompt_or_no_kl_has_no_bar():
    need = required_gain([0.1], [0.05])
    assert need.max_kl is None and need.gain is None and need.reliable_gain is None
    assert need.passes  # one prompt: the sign decides, as in `dethrones`
    with pytest.raises(ValueError, match="different lengths"):
        required_gain([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="finite"):
        required_gain([0.1, float("nan")], [0.1, 0.2])


def test_required_gain_when_a_much_lower_kl_would_fail_on_few_prompts():
    """4 prompts and a spread-out king (t*²·var(k) > n·K²): a challenger a constant step below
    the king passes, but scaled towards 0 it keeps the king's spread and fails. The bar is
    then the larger root, checked with scipy's test (once it was None: "no KL passes")."""
    import numpy as np

    king = np.array([0.20, 0.32, 0.41, 0.05])
    challenger = king - 0.04 + np.array([0.001, -0.002, 0.0015, -0.0005])
    assert stats.t.isf(0.0125, 3) ** 2 * king.var(ddof=1) > 4 * king.mean() ** 2
    need, ref = required_gain(king, challenger), reference(king, challenger)
    assert need.passes and ref.p < 0.0125 and need.max_kl is not None and need.max_kl > need.kl
    scale = need.max_kl / need.kl
    assert ref.passes(scale * (1 - 1e-6)) and not ref.passes(scale * (1 + 1e-6))
    assert not ref.passes(0.3)  # far lower is not enough here
    assert f"passing here needs KL < {need.max_kl:.6f}" in need.line()


def test_required_gain_grows_with_the_noise_of_the_profile():
    quiet = required_gain(BASE, noisy(BASE, 1.0, 0.03, 5))
    loud = required_gain(BASE, noisy(BASE, 1.0, 0.15, 5))
    assert 0 < quiet.gain < loud.gain and 0 < quiet.reliable_gain < loud.reliable_gain
    # to pass twice in 95 % of rounds, more than the bar of one round that happens to be this one
    assert quiet.reliable_gain > quiet.gain


# -- the line a miner reads (distil-eval, distil-train), against independent figures ---------


def reference(king, challenger):
    """The figures of the line, computed apart from `rules.py`: scipy's paired t-test, numpy's
    float64 means, the 95 %-power gain solved with brentq."""
    import numpy as np
    from scipy.optimize import brentq

    rule = WinTwice()
    k, c = np.asarray(king, dtype=np.float64), np.asarray(challenger, dtype=np.float64)
    n = len(k)
    p = stats.ttest_rel(k, c, alternative="greater").pvalue
    d = k - (k.mean() / c.mean()) * c  # the profile scaled to the king's mean
    z1, z2 = stats.t.isf(rule.first_alpha, n - 1), stats.t.isf(rule.confirm_alpha, n - 1)
    delta = brentq(lambda x: stats.norm.cdf(x - z1) * stats.norm.cdf(x - z2) - 0.95, 0.0, 50.0, xtol=1e-12)
    reliable = max(rule.epsilon, delta * d.std(ddof=1) / (k.mean() * math.sqrt(n)))
    return SimpleNamespace(p=float(p), gain=float(1 - c.mean() / k.mean()), reliable=float(reliable),
                           passes=lambda s: stats.ttest_rel(k, s * c, alternative="greater").pvalue < rule.first_alpha)


def test_the_line_for_a_clear_win_says_stage_one_passes_and_that_it_is_not_a_crown():
    challenger = noisy(BASE, 0.9, 0.05, 5)
    need, ref = required_gain(BASE, challenger), reference(BASE, challenger)
    assert need.p_value == pytest.approx(ref.p, rel=1e-9) and ref.p < 0.0125
    assert need.measured_gain == pytest.approx(ref.gain, rel=1e-12)
    assert need.reliable_gain == pytest.approx(ref.reliable, rel=1e-6)
    scale = need.max_kl / need.kl  # the largest passing KL, by scipy's test
    assert ref.passes(scale * (1 - 1e-6)) and not ref.passes(scale * (1 + 1e-6))
    line = need.line("trained", "start")
    assert line.startswith(f"trained vs start: KL {need.kl:.6f} vs {need.king_kl:.6f} on 120 prompts "
                           f"({100 * ref.gain:.2f} % lower)")
    assert f"stage one (p < 0.1 / 8 = 0.0125, KL < {need.king_kl:.6f}): p = {ref.p:.3g}, passes: a contender, " \
           "not yet a crown (it must pass again, at p < 0.025, on a later round's fresh prompts)" in line
    assert f"passing here needs KL < {need.max_kl:.6f} ({100 * (1 - need.max_kl / need.king_kl):.2f} % lower)" in line
    assert line.endswith(f"a crown in 95 % of rounds of 120 prompts like these needs about {100 * ref.reliable:.1f} % lower")
    assert need.outcome == "passes" and "\n" not in line


def test_the_line_for_a_loss_says_the_king_is_better():
    challenger = noisy(BASE, 1.25, 0.05, 6)
    need, ref = required_gain(BASE, challenger), reference(BASE, challenger)
    assert need.p_value == pytest.approx(ref.p, rel=1e-9)
    other_way = stats.ttest_rel(challenger, BASE, alternative="greater").pvalue  # the king better, scipy
    assert other_way < 0.0125 and need.outcome == "worse"
    line = need.line("trained", "start")
    assert f"({100 * -ref.gain:.2f} % higher)" in line
    assert f"p = {ref.p:.3g}, does not pass: start is better on these prompts (1 − p < 0.0125)" in line
    assert f"needs about {100 * ref.reliable:.1f} % lower" in line


def test_on_four_prompts_the_line_says_the_test_cannot_tell():
    """A held-out set as small as the tiny recipe's: 4 prompts, 8.5 % lower on average, but not on every prompt."""
    king = [0.21, 0.30, 0.12, 0.19]
    challenger = [0.17, 0.24, 0.16, 0.18]
    need, ref = required_gain(king, challenger), reference(king, challenger)
    assert need.p_value == pytest.approx(ref.p, rel=1e-9) and 0.0125 < ref.p < 1 - 0.0125
    assert need.outcome == "cannot tell" and not need.passes
    line = need.line("trained", "start")
    assert f"({100 * ref.gain:.2f} % lower)" in line and ref.gain > 0
    assert (f"p = {ref.p:.3g}, does not pass: these 4 prompts cannot tell the two apart (neither p nor 1 − p is "
            "below 0.0125)") in line
    assert need.reliable_gain == pytest.approx(ref.reliable, rel=1e-6)
    assert line.endswith(f"a crown in 95 % of rounds of 4 prompts like these needs about {100 * ref.reliable:.1f} % lower")
    scale = need.max_kl / need.kl
    assert ref.passes(scale * (1 - 1e-6)) and not ref.passes(scale * (1 + 1e-6))
    # noisier: no model of this profile wins twice reliably on 4 prompts, whatever its KL
    king, challenger = [0.30, 0.10, 0.20, 0.25], [0.20, 0.15, 0.10, 0.26]
    need, ref = required_gain(king, challenger), reference(king, challenger)
    assert need.outcome == "cannot tell" and need.reliable_gain == pytest.approx(ref.reliable, rel=1e-6)
    assert ref.reliable > 1
    assert need.line().endswith("not even KL 0 is crowned in 95 % of rounds of 4 prompts like these: too few prompts")
    # one prompt: the sign decides the rule, but nothing can be told
    one = required_gain([0.2], [0.1])
    assert one.passes and one.outcome == "cannot tell"
    assert "passes, but one prompt has no spread to weigh: it cannot tell; no KL passes stage one" in one.line()


def test_the_line_escapes_the_names_and_the_json_form_holds_the_same_figures():
    import json

    need = required_gain(BASE, noisy(BASE, 0.9, 0.05, 5))
    line = need.line("me\nFAKE LOG LINE", "king\x1b[2K")
    assert "\n" not in line and "\x1b" not in line and "me\\nFAKE LOG LINE vs king\\x1b[2K" in line
    doc = json.loads(json.dumps(need.to_dict()))
    assert doc == {"n_prompts": 120, "king_kl": need.king_kl, "kl": need.kl, "measured_gain": need.measured_gain,
                   "p_value": need.p_value, "first_alpha": 0.0125, "margin_ok": True, "passes_first_stage": True,
                   "outcome": "passes", "confirm_alpha": 0.025, "max_kl": need.max_kl, "gain_to_pass": need.gain,
                   "reliable_gain": need.reliable_gain, "reliable_power": 0.95}


# -- the contender's state machine ----------------------------------------------------------


def rounds_scores(**models):
    return {k: scored(v) for k, v in models.items()}


BLOCKS = {"king": 10, "a": 20, "b": 21, "c": 22, "d": 23}
WORSE = noisy(BASE, 1.04, 0.05, 11)
EQUAL = noisy(BASE, 1.0, 0.05, 12)
BETTER = noisy(BASE, 0.85, 0.05, 13)
MUCH_BETTER = noisy(BASE, 0.7, 0.05, 14)


def contender_of(hotkey="a", king="king", seed_block=100):
    return Contender(hotkey, BLOCKS[hotkey], king, BLOCKS[king], seed_block, 0.05, 0.06, 1e-4)


def test_no_contender_passers_become_candidates_best_first():
    scores = rounds_scores(king=BASE, a=BETTER, b=MUCH_BETTER, c=WORSE, d=EQUAL)
    out = step(None, "king", scores, BLOCKS, 100)
    assert out.crowned is None and out.contender is None and out.confirmation is None
    assert out.candidates == ("b", "a") and out.waiting == ()
    assert set(out.decisions) == {"a", "b", "c", "d"}
    assert out.decisions["b"].startswith("first stage passed") and out.decisions["c"].startswith("first stage:")
    record = new_contender("b", "king", scores, BLOCKS, 100)
    assert record == Contender("b", 21, "king", 10, 100, scores["b"].kl_mean, scores["king"].kl_mean,
                               record.p_value)
    assert 0 <= record.p_value < WinTwice().first_alpha
    with pytest.raises(ValueError, match="did not pass"):
        new_contender("c", "king", scores, BLOCKS, 100)


def test_equal_kl_passers_go_to_the_earlier_commit():
    scores = rounds_scores(king=BASE, b=BETTER, a=BETTER)
    assert step(None, "king", scores, BLOCKS, 100).candidates == ("a", "b")


def test_a_confirmed_contender_is_crowned_and_newcomers_meet_it():
    # d beats the old king but not the contender: no candidate; nothing else is ready
    scores = rounds_scores(king=BASE, a=MUCH_BETTER, d=BETTER)
    out = step(contender_of("a"), "king", scores, BLOCKS, 150)
    assert (out.crowned, out.confirmation, out.contender) == ("a", CONFIRMED, None)
    assert out.candidates == ()
    assert out.decisions["a"].startswith("confirmed on fresh prompts")
    # one that beats the contender on this round is a candidate against it, the new king
    scores = rounds_scores(king=BASE, a=BETTER, d=[x * 0.8 for x in MUCH_BETTER])
    out = step(contender_of("a"), "king", scores, BLOCKS, 150)
    assert out.crowned == "a" and out.candidates == ("d",)
    assert new_contender("d", "a", scores, BLOCKS, 150).king == "a"


def test_a_confirmation_round_with_no_new_challenger_still_decides():
    out = step(contender_of("a"), "king", rounds_scores(king=BASE, a=BETTER), BLOCKS, 150)
    assert out.crowned == "a" and out.confirmation == CONFIRMED


def test_a_contender_not_confirmed_is_dropped_and_newcomers_meet_the_king():
    scores = rounds_scores(king=BASE, a=EQUAL, b=BETTER)
    out = step(contender_of("a"), "king", scores, BLOCKS, 150)
    assert (out.crowned, out.confirmation, out.contender) == (None, REJECTED, None)
    assert out.decisions["a"].startswith("not confirmed")
    assert out.candidates == ("b",)  # the seat is free again


def test_a_contender_not_scored_keeps_its_seat_and_passers_wait():
    held = contender_of("a")
    scores = rounds_scores(king=BASE, b=BETTER, c=WORSE)
    out = step(held, "king", scores, BLOCKS, 150)
    assert (out.crowned, out.confirmation, out.contender) == (None, NOT_SCORED, held)
    assert out.candidates == () and out.waiting == ("b",)
    assert "waits" in out.decisions["b"] and "waits" not in out.decisions["c"]


def test_a_contender_of_another_king_is_void():
    out = step(contender_of("a", king="b"), "king", rounds_scores(king=BASE, a=MUCH_BETTER, c=BETTER), BLOCKS, 150)
    assert (out.crowned, out.confirmation, out.contender) == (None, VOID, None)
    assert out.candidates == ("c",)  # the void contender is not tested again in this round


def test_the_confirmation_must_be_on_a_later_round_and_the_king_must_be_scored():
    with pytest.raises(ValueError, match="not a later round"):
        step(contender_of("a", seed_block=150), "king", rounds_scores(king=BASE, a=BETTER), BLOCKS, 150)
    with pytest.raises(ValueError, match="was not scored"):
        step(None, "king", rounds_scores(a=BETTER), BLOCKS, 150)


def test_the_same_scores_give_the_same_step():
    scores = rounds_scores(king=BASE, a=BETTER, b=MUCH_BETTER, c=WORSE)
    assert step(contender_of("a"), "king", scores, BLOCKS, 150) == step(contender_of("a"), "king", dict(scores), BLOCKS, 150)


def test_three_rounds_of_win_twice_from_challenger_to_king():
    """Round 1: a passes the first stage; round 2 (a's confirmation) a is not scored; round 3: confirmed."""
    held = None
    r1 = rounds_scores(king=BASE, a=BETTER, c=WORSE)
    out = step(held, "king", r1, BLOCKS, 100)
    held = new_contender(out.candidates[0], "king", r1, BLOCKS, 100)
    out = step(held, "king", rounds_scores(king=BASE), BLOCKS, 150)
    assert out.contender == held and out.crowned is None
    out = step(out.contender, "king", rounds_scores(king=BASE, a=noisy(BASE, 0.85, 0.05, 99)), BLOCKS, 200)
    assert out.crowned == "a"


def test_contender_record_round_trips_and_bad_records_are_named():
    record = contender_of("a")
    assert Contender.from_dict(record.to_dict()) == record
    good = record.to_dict()
    cases = [
        ([], "must be an object"),
        ({**good, "extra": 1}, "unknown fields"),
        ({k: v for k, v in good.items() if k != "seed_block"}, "no seed_block"),
        ({**good, "hotkey": ""}, "hotkey"),
        ({**good, "seed_block": True}, "seed_block"),
        ({**good, "commit_block": -1}, "commit_block"),
        ({**good, "kl": float("nan")}, "kl"),
        ({**good, "p_value": "0.01"}, "p_value"),
        ({**good, "king": "a"}, "same hotkey"),
    ]
    for data, message in cases:
        with pytest.raises(ValueError, match=message):
            Contender.from_dict(data)


def test_validator_flags_reach_the_round_params():
    """--eval.confirm_alpha and --eval.max_challengers (the first stage's divisor) travel to RoundParams."""
    import argparse

    from distil.validator.args import add_eval_args, round_params

    parser = argparse.ArgumentParser()
    add_eval_args(parser)
    flat = vars(parser.parse_args(["--eval.confirm_alpha", "0.05", "--eval.max_challengers", "4", "--eval.alpha", "0.2"]))
    config = SimpleNamespace(eval=SimpleNamespace(**{k.split(".", 1)[1]: v for k, v in flat.items()}))
    params = round_params(config)
    assert (params.confirm_alpha, params.max_challengers, params.alpha) == (0.05, 4, 0.2)
    rule = WinTwice(params.epsilon, params.alpha, params.confirm_alpha, params.max_challengers)
    assert rule.first_alpha == pytest.approx(0.05)
    config.eval.confirm_alpha = 1.0
    with pytest.raises(ValueError, match="--eval.confirm_alpha must be in"):
        round_params(config)
