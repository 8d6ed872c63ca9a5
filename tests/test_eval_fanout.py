"""Multi-device fan-out on two `cpu` workers: the same per-prompt KL as a single-device
run, a worker that dies fails only the student it held, devices are recorded."""

import os
import signal

import numpy as np
import pytest
import torch

from distil import VOCAB_SIZE
from distil.eval.engine import run_round, score_models
from distil.eval.results import TRANSIENT
from distil.eval.fanout import parse_devices, score_parallel
from distil.checks.loading import load_causal_lm
from distil.eval.spec import EvalSpec
from distil.eval.teacher import build_teacher_cache
from eval_helpers import model_dir, new_dir

PROMPTS = [[101, 102, 103, 104, 105], [201, 202, 203]]
SPEC = EvalSpec(n_prompts=2, max_new_tokens=8, chunk_size=4)
STUDENTS = ("near", "student", "student_qwen3")


@pytest.fixture(scope="module")
def cache_dir():
    teacher = load_causal_lm(model_dir("teacher"), "cpu", torch.float32, VOCAB_SIZE)
    cache = build_teacher_cache(teacher, PROMPTS, SPEC.max_new_tokens)
    path = new_dir("fanout-cache")
    cache.save(path)
    return str(path), cache


@pytest.fixture(scope="module")
def single(cache_dir):
    _, cache = cache_dir
    return score_models(cache, [(k, model_dir(k)) for k in STUDENTS], SPEC)


def test_two_cpu_workers_give_the_single_device_kl(single):
    """The whole round on `--devices cpu,cpu`: same per-prompt KL as one device, in order."""
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
    wrong = result.results["wrong"]  # a bad student stays alone, classified as on one device
    assert not wrong.ok and wrong.kind == "invalid" and "vocab_size 151936" in wrong.detail
    assert {"round_s", "students_s", "download_wait_s"} <= set(result.timings)


def test_a_worker_that_dies_fails_only_its_student(cache_dir, single):
    path, _ = cache_dir
    students = [("victim", model_dir("student")), ("near", model_dir("near"))]
    pids = {}

    def kill_victim(key, device, pid):
        pids[key] = pid
        if key == "victim":
            os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would

    results = score_parallel(path, students, SPEC, ["cpu", "cpu"], on_assign=kill_victim)
    victim = results["victim"]
    assert not victim.ok and victim.kind == TRANSIENT and victim.phase == "worker"
    assert "died" in victim.detail and "signal 9" in victim.detail
    assert results["near"].ok and pids["near"] != pids["victim"]
    np.testing.assert_allclose(results["near"].per_prompt_kl, single["near"].per_prompt_kl, rtol=1e-6, atol=0)


def test_device_lists_are_checked():
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    for bad, words in (("cuda:0,,cuda:1", "comma-separated"), ("tpu:0", "tpu:0"), ("cpu,cuda:0", "one kind")):
        with pytest.raises(ValueError, match=words):
            parse_devices(bad)
