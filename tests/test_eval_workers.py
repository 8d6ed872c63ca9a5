"""Each student in its own worker process: the numbers of the in-process loop, on one device or
two; a worker killed mid-score, or past its deadline, fails that student alone; our own faults
(SIGBUS) are marked ours."""

import shutil

import numpy as np
import pytest
import torch

from distil import VOCAB_SIZE
from distil.checks.clock import Deadlines, baseline
from distil.checks.loading import load_causal_lm
from distil.eval.engine import run_round, score_models
from distil.eval.results import TRANSIENT
from distil.eval.spec import EvalSpec
from distil.eval.teacher import build_teacher_cache
from distil.eval.workers import RoundShape, parse_devices, score_students
from eval_helpers import model_dir, new_dir
from faulty_workers import TARGET

PROMPTS = [[101, 102, 103, 104, 105], [201, 202, 203]]
SPEC = EvalSpec(n_prompts=2, max_new_tokens=8, chunk_size=4)
STUDENTS = ("near", "student", "student_qwen3")


@pytest.fixture(scope="module")
def cache_dir():
    teacher = load_causal_lm(model_dir("teacher"), "cpu", torch.float32, VOCAB_SIZE)
    cache = build_teacher_cache(teacher, PROMPTS, SPEC.max_new_tokens)
    path = new_dir("workers-cache")
    cache.save(path)
    return str(path), cache


@pytest.fixture(scope="module")
def single(cache_dir):
    _, cache = cache_dir
    return score_models(cache, [(k, model_dir(k)) for k in STUDENTS], SPEC)


def faulty(name: str, fault: str) -> str:
    """A copy of the tiny model `name` whose directory tells the faulty worker what to do."""
    path = new_dir("faulty") / f"{name}-{fault}"
    if not path.exists():
        shutil.copytree(model_dir(name), path)
    return str(path)


def test_workers_on_two_devices_give_the_in_process_kl(single):
    """The whole round with each student in a worker, over `--devices cpu,cpu`: the same
    per-prompt KL as the in-process loop, in order; a bad student is classified as there."""
    students = [(k, model_dir(k)) for k in STUDENTS] + [("wrong", model_dir("wrong_vocab"))]
    result = run_round(model_dir("teacher"), students, PROMPTS, SPEC, devices=["cpu", "cpu"])
    assert result.devices == ["cpu", "cpu"]
    assert list(result.results) == [*STUDENTS, "wrong"]
    for key in STUDENTS:
        got, want = result.results[key], single[key]
        assert got.ok and want.ok
        np.testing.assert_allclose(got.per_prompt_kl, want.per_prompt_kl, rtol=1e-6, atol=0)
        np.testing.assert_allclose(got.position_kl[0], want.position_kl[0], rtol=1e-6, atol=0)
        assert got.top1_agreement == want.top1_agreement and got.head == want.head
    wrong = result.results["wrong"]  # a bad student stays alone, classified as in-process
    assert not wrong.ok and wrong.kind == "invalid" and "vocab_size 151936" in wrong.detail
    for key in STUDENTS:  # the isolation's cost is measured and kept per student
        assert 0 <= result.timings[f"worker_start_s.{key}"] < result.timings[f"student_s.{key}"]
        assert result.timings[f"cache_load_s.{key}"] >= 0


def test_a_worker_killed_mid_score_fails_that_student_alone(cache_dir, single):
    path, cache = cache_dir
    students = [("victim", faulty("student", "dies")), ("near", model_dir("near")),
                ("disk", faulty("student", "sigbus")), ("raises", faulty("student", "raises"))]
    shape = RoundShape.of(cache.prompt_ids, cache.continuation_ids, VOCAB_SIZE)
    results = score_students(path, students, SPEC, ["cpu"], shape, target=TARGET)
    victim = results["victim"]
    assert not victim.ok and victim.kind == TRANSIENT and victim.check_code == "EVAL_WORKER" and not victim.ours
    assert "SIGKILL" in victim.detail
    disk = results["disk"]  # SIGBUS: a memory-mapped read of our disk failed; ours, never the model's
    assert disk.kind == TRANSIENT and disk.ours and disk.check_code == "LOCAL_IO_ERROR"
    assert results["raises"].kind == TRANSIENT and not results["raises"].ours
    assert results["near"].ok  # the next student got a fresh worker and the in-process numbers
    np.testing.assert_allclose(results["near"].per_prompt_kl, single["near"].per_prompt_kl, rtol=1e-6, atol=0)


def test_a_worker_past_its_deadline_is_stopped(cache_dir):
    path, cache = cache_dir
    shape = RoundShape.of(cache.prompt_ids, cache.continuation_ids, VOCAB_SIZE)
    quick = Deadlines(baseline("cpu"), multiple=1.0, floor_s=1.0)
    spec = SPEC.replace(student_timeout_s=8.0)  # the floor: ample for a tiny model, short for a test
    results = score_students(path, [("slow", faulty("student", "hangs")), ("near", model_dir("near"))], spec, ["cpu"],
                             shape, quick, target=TARGET)
    slow = results["slow"]
    assert slow.kind == TRANSIENT and slow.check_code == "CHECK_TIMEOUT" and not slow.ours
    assert "deadline" in slow.detail
    assert results["near"].ok


def test_device_lists_are_checked():
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    for bad, words in (("cuda:0,,cuda:1", "comma-separated"), ("tpu:0", "tpu:0"), ("cpu,cuda:0", "one kind")):
        with pytest.raises(ValueError, match=words):
            parse_devices(bad)
