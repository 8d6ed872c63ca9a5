"""The degeneration guard's statistics and verdict, on hand-computed sequences and on tiny models."""

from __future__ import annotations

import pytest

from distil.eval.spec import EvalSpec
from distil.scoring.degeneration import (
    ContinuationStats,
    DegenerationThresholds,
    ProbeStats,
    aggregate,
    continuation_stats,
    degenerate,
    probe_stats,
    longest_loop,
    loop_min_tokens,
    repeated_ngram_share,
)

EOS = 248_044


def test_repeated_4gram_share_by_hand():
    # 1 2 3 4 1 2 3 4: 4-grams 1234 2341 3412 4123 1234 -> 4 distinct of 5
    assert repeated_ngram_share([1, 2, 3, 4, 1, 2, 3, 4]) == pytest.approx(1 - 4 / 5)
    assert repeated_ngram_share([7] * 10) == pytest.approx(1 - 1 / 7)  # one distinct 4-gram of 7
    assert repeated_ngram_share(list(range(300))) == 0.0  # varied text
    assert repeated_ngram_share([1, 2, 3]) == 0.0  # shorter than 4: no 4-grams at all
    assert repeated_ngram_share([]) == 0.0
    assert repeated_ngram_share([5, 5, 5, 5]) == 0.0  # exactly one 4-gram: nothing repeated


def test_longest_loop_by_hand():
    varied = list(range(1000, 1064))
    cycle32 = list(range(100, 132))
    # 64 varied + 6 × 32 cycle = 256 tokens: the last 192 repeat period 32
    assert longest_loop(varied + cycle32 * 6) == (192, 32)
    cycle33 = list(range(100, 133))
    assert longest_loop(varied + (cycle33 * 6)[:192]) == (0, None)  # period 33 is above the limit
    assert longest_loop(varied + [9] * 64) == (64, 1)
    assert longest_loop(varied + [1, 2] * 40) == (80, 2)  # the smallest period of the stretch
    assert longest_loop(list(range(300))) == (0, None)
    # anywhere, not only at the end: one different last token no longer hides it
    assert longest_loop(varied + [1, 2, 3] * 40 + [4]) == (120, 3)
    assert longest_loop([1, 2, 3] * 30 + varied) == (90, 3)
    # a partial last copy counts; two copies of a block are not a loop, three are
    assert longest_loop(varied + [1, 2, 3, 4, 5] * 3 + [1, 2]) == (17, 5)
    assert longest_loop(varied + list(range(10)) * 2) == (0, None)
    assert longest_loop(varied + list(range(10)) * 3) == (30, 10)
    # the longest stretch wins whatever its period
    assert longest_loop([7] * 20 + varied + [1, 2, 3, 4] * 10) == (40, 4)
    assert longest_loop([]) == (0, None) and longest_loop([5]) == (0, None) and longest_loop([5, 5, 5]) == (3, 1)


def test_a_loop_covers_64_tokens_or_half_a_short_continuation():
    assert [loop_min_tokens(n) for n in (0, 20, 32, 36, 100, 128, 512)] == [16, 16, 16, 18, 50, 64, 64]
    varied = list(range(2000, 2420))
    # the issue's reproduction: a period-5 loop from token 420 to the end of 512 (92 tokens).
    # Spec v2 looked only at the last 128 tokens (not all periodic): it passed.
    repro = varied + [11, 12, 13, 14, 15] * 18 + [11, 12]
    assert len(repro) == 512
    s = continuation_stats(repro, [EOS])
    assert (s.loop_tokens, s.loop_period, s.loops) == (92, 5, True)
    # a loop followed by an EOS is still a loop: the user read it
    s = continuation_stats(varied[:100] + [3] * 100 + [EOS], [EOS])
    assert s.stopped_with_eos and s.n_tokens == 200 and (s.loop_tokens, s.loop_period) == (100, 1) and s.loops
    # a stretch under the limit is not: 63 of 512, or 15 tokens of a 32-token answer
    assert not continuation_stats(varied[:449] + [3] * 63, [EOS]).loops
    assert continuation_stats(varied[:448] + [3] * 64, [EOS]).loops
    assert not continuation_stats(varied[:17] + [3] * 15, [EOS]).loops
    assert continuation_stats(varied[:16] + [3] * 16, [EOS]).loops
    assert not continuation_stats([5] * 15, [EOS]).loops  # "!!!" at the end of a short answer


def test_continuation_stats_leave_the_eos_out():
    looping = [5] * 40
    s = continuation_stats(looping, [EOS])
    assert s == ContinuationStats(40, pytest.approx(1 - 1 / 37), 40, 1, False) and s.loops
    stopped = continuation_stats(looping + [EOS], [EOS, 248_046])
    assert stopped.stopped_with_eos and stopped.n_tokens == 40 and stopped.loop_period == 1 and stopped.loops
    assert continuation_stats([EOS], [EOS]) == ContinuationStats(0, 0.0, 0, None, True)
    assert continuation_stats([1, 2, EOS], [EOS]).repeated_ngram_share == 0.0


def stats(n=16, loops=0, share=0.05, eos=0, tokens=100.0) -> ProbeStats:
    return ProbeStats(n=n, loops=loops, mean_repeated_ngram_share=share, eos=eos, mean_tokens=tokens)


def test_verdict_thresholds_by_hand():
    teacher = stats()
    # K = 16, teacher never loops: limit max(2, 0 + ceil(0.25 × 16)) = 4 loops
    assert degenerate(stats(loops=3), teacher)[0] is False
    flagged, detail = degenerate(stats(loops=4), teacher)
    assert flagged and "loops on 4/16" in detail and "≥ 4" in detail and "teacher 0" in detail
    # the teacher's own loops raise the bar
    assert degenerate(stats(loops=4), stats(loops=1))[0] is False
    assert degenerate(stats(loops=5), stats(loops=1))[0] is True
    # repeated 4-grams: strictly above the teacher's + 0.2
    assert degenerate(stats(share=0.25), teacher)[0] is False
    assert degenerate(stats(share=0.2501), teacher)[0] is True
    # K = 8 (the demo): limit max(2, 0 + 2) = 2; K = 4: the floor of 2 holds
    assert degenerate(stats(n=8, loops=2), stats(n=8))[0] is True
    assert degenerate(stats(n=4, loops=1), stats(n=4))[0] is False
    # length: below a quarter of the teacher's mean is DEGENERATE (strictly), and the detail says so
    assert degenerate(stats(tokens=25.0), teacher)[0] is False
    flagged, detail = degenerate(stats(tokens=24.9, eos=16), teacher)
    assert flagged and "mean 24.9 tokens generated (teacher 100.0; DEGENERATE below 25.0)" in detail
    assert degenerate(stats(tokens=49.9), teacher, DegenerationThresholds(length_ratio=0.5))[0] is True
    assert degenerate(stats(tokens=0.0), stats(tokens=0.0))[0] is False  # a teacher that says nothing
    assert degenerate(stats(tokens=0.0), teacher, DegenerationThresholds(length_ratio=0.0))[0] is False  # rule off
    # a copy of the teacher is never degenerate, whatever the teacher does
    for t in (stats(), stats(loops=16, share=0.9), stats(n=1, loops=1, share=1.0), stats(tokens=0.0)):
        assert degenerate(t, t)[0] is False
    with pytest.raises(ValueError, match="probed on 8 prompts"):
        degenerate(stats(n=8), teacher)


def test_thresholds_and_spec_fields():
    spec = EvalSpec(n_prompts=8)
    assert spec.probe_prompts == 16 and spec.probe_count == 8  # at most n_prompts
    assert spec.degeneration_thresholds() == DegenerationThresholds(2, 0.25, 0.2, 0.25)
    assert {"probe_prompts", "probe_min_loops", "probe_loop_margin", "probe_repeat_margin",
            "probe_length_ratio"} <= set(spec.to_dict())
    assert EvalSpec.from_dict({**spec.to_dict(), "probe_repeat_margin": 0.3}).degeneration_thresholds().repeat_margin == 0.3
    assert EvalSpec.from_dict({**spec.to_dict(), "probe_length_ratio": 0.25}).degeneration_thresholds().length_ratio == 0.25
    for bad in ({"probe_prompts": 0}, {"probe_min_loops": 0}, {"probe_loop_margin": 1.5}, {"probe_repeat_margin": -0.1},
                {"probe_length_ratio": 1.5}, {"probe_length_ratio": True}):
        with pytest.raises(ValueError, match="probe"):
            EvalSpec(**bad)
    with pytest.raises(ValueError, match="at least one prompt"):
        aggregate([])


def test_aggregate_by_hand():
    p = probe_stats([[5] * 40, list(range(40)) + [EOS], [1, 2]], [EOS])
    assert p == ProbeStats(n=3, loops=1, mean_repeated_ngram_share=pytest.approx((1 - 1 / 37) / 3), eos=1,
                           mean_tokens=pytest.approx(82 / 3))


def test_the_issue_reproductions_are_degenerate_through_the_probe_verdict():
    """Spec v2 passed all three (issue 23 §4); `probe_verdict` is what the validator and
    `distil-eval --round` apply to the probe's token ids."""
    from distil.eval.probe import DEGENERATE, probe_verdict

    spec = EvalSpec(n_prompts=4, max_new_tokens=512, probe_prompts=4)
    teacher = [list(range(10_000 * k, 10_000 * k + 512)) for k in range(1, 5)]  # varied, never stops
    eos = [EOS]

    def verdict(conts):
        return probe_verdict("m", conts, teacher, eos, spec)

    assert verdict(teacher).verdict == "passed"
    eos_first = verdict([[EOS]] * 4)
    assert eos_first.verdict == DEGENERATE and "mean 0.0 tokens generated (teacher 512.0; DEGENERATE below 128.0)" in eos_first.detail
    one_token = verdict([[c[0], EOS] for c in teacher])
    assert one_token.verdict == DEGENERATE and one_token.stats.mean_tokens == 1.0
    tail_loop = verdict([c[:420] + ([1, 2, 3, 4, 5] * 19)[:92] for c in teacher])
    assert tail_loop.verdict == DEGENERATE and "loops on 4/4" in tail_loop.detail
    assert tail_loop.stats.mean_repeated_ngram_share < tail_loop.teacher_stats.mean_repeated_ngram_share + 0.2
    # an honest model that stops earlier on some prompts, or loops on one, passes
    assert verdict([c[:300] + [EOS] for c in teacher[:2]] + teacher[2:]).verdict == "passed"
    assert verdict([[c[0], EOS] for c in teacher[:3]] + teacher[3:]).verdict == "passed"  # 128.75 tokens
    assert verdict(teacher[:3] + [teacher[3][:420] + [7] * 92]).verdict == "passed"


def test_tiny_models_built_to_loop_or_to_stop_are_flagged_while_the_teacher_and_a_near_copy_pass():
    import torch

    from distil import tiny
    from distil.demo import TEACHER_LOGIT_SCALE
    from distil.eval.teacher import greedy_generate

    teacher = tiny.build_model(tiny.teacher_config(), seed=0, logit_scale=TEACHER_LOGIT_SCALE)
    near_copy = tiny.perturbed_copy(teacher, seed=1, scale=0.02)
    looper = tiny.looping_copy(teacher)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 256, (10,), generator=generator).tolist() for _ in range(4)]
    eos = [tiny.EOS_ID]

    def probe(model):  # the teacher pass's own batched bare-greedy code
        continuations = greedy_generate(model, prompts, max_new_tokens=36, eos_ids=eos, batch_size=4)
        return continuations, probe_stats(continuations, eos)

    _, teacher_stats = probe(teacher)
    assert teacher_stats.loops == 0 and teacher_stats.mean_repeated_ngram_share < 0.1
    assert degenerate(teacher_stats, teacher_stats)[0] is False
    assert degenerate(probe(near_copy)[1], teacher_stats)[0] is False

    loops, looper_stats = probe(looper)
    assert all(len(set(c[-18:])) == 1 for c in loops)  # it repeats one token to the end
    flagged, detail = degenerate(looper_stats, teacher_stats)
    assert flagged and "loops on 4/4" in detail
    # the copy is a valid model of the same shapes: only the output head moved
    assert {k: v.shape for k, v in looper.state_dict().items()} == {k: v.shape for k, v in teacher.state_dict().items()}

    # a model that writes EOS at once (0 tokens), or one token then EOS (the prompts are bytes,
    # every other id triggers the stop): no loop, no repeated 4-gram, and far too short
    for stopper, written in ((tiny.stopping_copy(teacher), 0),
                             (tiny.stopping_copy(teacher, range(256, teacher.config.vocab_size)), 1)):
        continuations, stats = probe(stopper)
        assert all(c[-1] == tiny.EOS_ID and len(c) == written + 1 for c in continuations)
        assert stats.loops == 0 and stats.mean_repeated_ngram_share == 0.0
        flagged, detail = degenerate(stats, teacher_stats)
        assert flagged and f"mean {written}.0 tokens generated (teacher 36.0; DEGENERATE below 9.0)" in detail
