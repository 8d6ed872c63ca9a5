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
    repeated_ngram_share,
    tail_period,
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


def test_tail_period_by_hand():
    varied = list(range(1000, 1064))
    cycle32 = list(range(100, 132))
    # 64 varied + 6 × 32 cycle = 256 tokens; the tail (128) repeats period 32 to the end
    assert tail_period(varied + cycle32 * 6) == 32
    cycle33 = list(range(100, 133))
    assert tail_period(varied + (cycle33 * 6)[:192]) is None  # period 33 is above the limit
    assert tail_period(varied + [9] * 64) == 1
    assert tail_period(varied + [1, 2] * 40) == 2  # the smallest period is reported
    assert tail_period(list(range(300))) is None
    # the loop must hold to the very end: one different last token breaks it
    assert tail_period(varied + [1, 2, 3] * 40 + [4]) is None
    # a window shorter than 16 (continuation under 32 tokens) is never a loop
    assert tail_period([5] * 31) is None
    assert tail_period([5] * 32) == 1
    assert tail_period([5] * 3) is None
    # the window is min(128, half): a loop that began only 100 tokens before the end of 400 is not enough
    assert tail_period(list(range(300)) + [3] * 100) is None
    assert tail_period(list(range(300)) + [3] * 128) == 1


def test_continuation_stats_leave_the_eos_out_and_a_loop_that_stops_is_not_a_loop():
    looping = [5] * 40
    s = continuation_stats(looping, [EOS])
    assert s == ContinuationStats(40, pytest.approx(1 - 1 / 37), 1, False) and s.loops
    stopped = continuation_stats(looping + [EOS], [EOS, 248_046])
    assert stopped.stopped_with_eos and stopped.n_tokens == 40 and stopped.tail_period == 1 and not stopped.loops
    assert continuation_stats([EOS], [EOS]) == ContinuationStats(0, 0.0, None, True)
    assert continuation_stats([1, 2, EOS], [EOS]).repeated_ngram_share == 0.0


def stats(n=16, loops=0, share=0.05, eos=0) -> ProbeStats:
    return ProbeStats(n=n, loops=loops, mean_repeated_ngram_share=share, eos=eos, mean_tokens=100.0)


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
    # a copy of the teacher is never degenerate, whatever the teacher does
    for t in (stats(), stats(loops=16, share=0.9), stats(n=1, loops=1, share=1.0)):
        assert degenerate(t, t)[0] is False
    with pytest.raises(ValueError, match="probed on 8 prompts"):
        degenerate(stats(n=8), teacher)


def test_thresholds_and_spec_fields():
    spec = EvalSpec(n_prompts=8)
    assert spec.probe_prompts == 16 and spec.probe_count == 8  # at most n_prompts
    assert spec.degeneration_thresholds() == DegenerationThresholds(2, 0.25, 0.2)
    assert {"probe_prompts", "probe_min_loops", "probe_loop_margin", "probe_repeat_margin"} <= set(spec.to_dict())
    assert EvalSpec.from_dict({**spec.to_dict(), "probe_repeat_margin": 0.3}).degeneration_thresholds().repeat_margin == 0.3
    for bad in ({"probe_prompts": 0}, {"probe_min_loops": 0}, {"probe_loop_margin": 1.5}, {"probe_repeat_margin": -0.1}):
        with pytest.raises(ValueError, match="probe"):
            EvalSpec(**bad)
    with pytest.raises(ValueError, match="at least one prompt"):
        aggregate([])


def test_aggregate_by_hand():
    p = probe_stats([[5] * 40, list(range(40)) + [EOS], [1, 2]], [EOS])
    assert p == ProbeStats(n=3, loops=1, mean_repeated_ngram_share=pytest.approx((1 - 1 / 37) / 3), eos=1,
                           mean_tokens=pytest.approx(82 / 3))


def test_a_tiny_model_built_to_loop_is_flagged_while_the_teacher_and_a_near_copy_pass():
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
