"""Scoring students: KL against an independent float64 computation, the soft-capping
fallback, failure classification (invalid vs transient), one failure stays one."""

import json

import numpy as np
import pytest
import torch

from distil import VOCAB_SIZE, tiny
from distil.eval import engine
from distil.eval.engine import classify_failure, run_round, score_models
from distil.eval.results import INVALID, TRANSIENT
from distil.checks.loading import InvalidModel, load_causal_lm
from distil.eval.models import own_logits_reason
from distil.eval.spec import EvalSpec
from distil.eval.teacher import build_teacher_cache
from eval_helpers import float64_logits, model_dir, new_dir, reference_kl, reference_stats

PROMPTS = [[101, 102, 103, 104, 105], [201, 202], [301, 302, 303]]
SPEC = EvalSpec(n_prompts=3, max_new_tokens=6, chunk_size=4)
STATS = ("kl_mean", "kl_se", "kl_median", "kl_p99", "top1_agreement")


@pytest.fixture(scope="module")
def cache():
    teacher = load_causal_lm(model_dir("teacher"), "cpu", torch.float32, VOCAB_SIZE)
    return build_teacher_cache(teacher, PROMPTS, SPEC.max_new_tokens)


@pytest.fixture(scope="module")
def teacher64(cache):
    return float64_logits(model_dir("teacher"), cache.prompt_ids, cache.continuation_ids)


def assert_matches_reference(score, kls, agrees):
    # atol: the fp32 kernel's floor is ~1e-7·lse(≈12.4) per position (see kl_block); real KLs are ≥1e-4.
    ref = reference_stats(kls, agrees)
    for name in STATS:
        np.testing.assert_allclose(getattr(score, name), ref[name], rtol=1e-4, atol=5e-7, err_msg=name)
    np.testing.assert_allclose(score.per_prompt_kl, ref["per_prompt_kl"], rtol=1e-4, atol=5e-7)
    for got, want in zip(score.position_kl, kls[:2]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=5e-7)
    assert score.n_positions == sum(len(k) for k in kls)


def test_scores_match_float64_reference(cache, teacher64):
    students = [("student", model_dir("student")), ("qwen3", model_dir("student_qwen3")), ("near", model_dir("near"))]
    results = score_models(cache, students, SPEC)
    for key, path in students:
        score = results[key]
        assert score.ok and score.head == "hidden"
        kls, agrees = reference_kl(teacher64, float64_logits(path, cache.prompt_ids, cache.continuation_ids))
        assert_matches_reference(score, kls, agrees)
    # The near-copy of the teacher is far better than random students, and agrees on top-1 often.
    assert results["near"].kl_mean < results["student"].kl_mean / 10
    assert results["near"].top1_agreement > 0.5


def test_chunk_size_does_not_change_scores(cache):
    students = [("near", model_dir("near"))]
    base = score_models(cache, students, SPEC.replace(chunk_size=32))["near"]
    for chunk in (1, 5):
        other = score_models(cache, students, SPEC.replace(chunk_size=chunk))["near"]
        np.testing.assert_allclose(other.per_prompt_kl, base.per_prompt_kl, rtol=0, atol=1e-6)
        for a, b in zip(other.position_kl, base.position_kl):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_wrong_vocab_is_rejected_clearly(cache):
    result = score_models(cache, [("wrong", model_dir("wrong_vocab"))], SPEC)["wrong"]
    assert not result.ok and result.kind == INVALID and result.phase == "load"
    assert "vocab_size 151936" in result.detail and "248320" in result.detail


@pytest.fixture(scope="module")
def softcapped():
    """A Gemma2 student whose logits are tanh(x / 0.5) · 0.5: not a plain projection."""
    from transformers import Gemma2Config

    config = Gemma2Config(vocab_size=VOCAB_SIZE, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=0.5,
                          eos_token_id=tiny.EOS_ID, pad_token_id=0, bos_token_id=1)
    path = new_dir("softcapped")
    tiny.save_model(path, config, seed=5, tokenizer=False)
    return str(path)


def test_softcapped_student_is_scored_from_its_own_logits(cache, teacher64, softcapped):
    assert "final_logit_softcapping" in own_logits_reason(load_causal_lm(softcapped, "cpu", torch.float32, VOCAB_SIZE).config)
    spec = SPEC.replace(own_logits_chunk=2)  # several KV-cached forwards per prompt
    score = score_models(cache, [("capped", softcapped)], spec)["capped"]
    assert score.ok and score.head == "own_logits"
    kls, agrees = reference_kl(teacher64, float64_logits(softcapped, cache.prompt_ids, cache.continuation_ids))
    assert_matches_reference(score, kls, agrees)
    # The plain projection would be far off: the fallback is what makes it exact.
    model = load_causal_lm(softcapped, "cpu", torch.float64, VOCAB_SIZE)
    w = model.lm_head.weight.detach().numpy()
    plain = [h @ w.T for h in float64_hidden(model, cache)]
    plain_kls, _ = reference_kl(teacher64, plain)
    plain_mean = np.mean([k.mean() for k in plain_kls])
    assert abs(plain_mean - score.kl_mean) > 1e-3  # vs ≤ 3e-6 between the engine and the reference


@torch.no_grad()
def float64_hidden(model, cache):
    out = []
    for p, c in zip(cache.prompt_ids, cache.continuation_ids):
        out.append(model.model(torch.tensor([p + c[:-1]])).last_hidden_state[0, len(p) - 1 :].numpy())
    return out


def test_own_logits_path_equals_hidden_path_on_a_plain_model(cache, monkeypatch):
    path = model_dir("near")
    hidden = score_models(cache, [("near", path)], SPEC)["near"]
    monkeypatch.setattr(engine, "own_logits_reason", lambda config: "forced for the test")
    own = score_models(cache, [("near", path)], SPEC.replace(own_logits_chunk=3))["near"]
    assert own.head == "own_logits"
    np.testing.assert_allclose(own.per_prompt_kl, hidden.per_prompt_kl, rtol=1e-4, atol=5e-7)


def _broken_copy(name, edit):
    """A copy of the tiny student with `edit(dir)` applied to its files."""
    import shutil

    path = new_dir(name)
    shutil.rmtree(path)
    shutil.copytree(model_dir("student_qwen3"), path)
    edit(path)
    return str(path)


def _drop_tensor(path):
    from safetensors.torch import load_file, save_file

    f = path / "model.safetensors"
    tensors = load_file(str(f))
    tensors.pop("model.norm.weight")
    save_file(tensors, str(f), metadata={"format": "pt"})


def _nan_norm(path):
    from safetensors.torch import load_file, save_file

    f = path / "model.safetensors"
    tensors = load_file(str(f))
    tensors["model.norm.weight"] = torch.full_like(tensors["model.norm.weight"], float("nan"))
    save_file(tensors, str(f), metadata={"format": "pt"})


def _remote_code(path):
    cfg = json.loads((path / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.EvilForCausalLM"}
    (path / "config.json").write_text(json.dumps(cfg))


def _garbage_config(path):
    (path / "config.json").write_text("{not json")


def _pickle_only(path):
    (path / "model.safetensors").rename(path / "pytorch_model.bin")


def test_failures_are_classified_and_stay_with_their_model(cache):
    students = [
        ("missing_key", _broken_copy("missing_key", _drop_tensor)),
        ("ok", model_dir("near")),
        ("nan", _broken_copy("nan", _nan_norm)),
        ("remote_code", _broken_copy("remote_code", _remote_code)),
        ("bad_config", _broken_copy("bad_config", _garbage_config)),
        ("pickle", _broken_copy("pickle", _pickle_only)),
        ("not_downloaded", "/nonexistent/model"),
    ]
    results = score_models(cache, students, SPEC)
    assert list(results) == [k for k, _ in students]
    assert results["ok"].ok
    expected = {"missing_key": (INVALID, "model.norm.weight"), "nan": (INVALID, "non-finite KL"),
                "remote_code": (INVALID, "auto_map"), "bad_config": (INVALID, ""), "pickle": (INVALID, "safetensors"),
                "not_downloaded": (TRANSIENT, "config.json")}
    for key, (kind, words) in expected.items():
        r = results[key]
        assert not r.ok and r.kind == kind and words in r.detail, (key, r)
    assert results["nan"].phase == "score"


def test_oom_and_timeout_are_transient(cache, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as m:
        m.setattr(engine, "load_causal_lm", oom)
        r = score_models(cache, [("a", model_dir("near"))], SPEC)["a"]
    assert r.kind == TRANSIENT and "out of memory" in r.detail
    r = score_models(cache, [("slow", model_dir("near"))], SPEC.replace(student_timeout_s=1e-9))["slow"]
    assert r.kind == TRANSIENT and "StudentTimeout" in r.detail
    assert classify_failure(InvalidModel("x"), "score") == INVALID
    assert classify_failure(RuntimeError("size mismatch for lm_head"), "load") == INVALID
    assert classify_failure(RuntimeError("our own bug"), "score") == TRANSIENT
    assert classify_failure(ConnectionError(), "load") == TRANSIENT


def test_run_round_frees_the_teacher_and_times_phases():
    result = run_round(model_dir("teacher"), [("near", model_dir("near"))], PROMPTS[:2], SPEC.replace(n_prompts=2))
    assert set(result.timings) >= {"teacher_load_s", "generate_s", "teacher_forward_s", "students_s", "student_s.near"}
    assert result.results["near"].ok and len(result.continuation_ids) == 2
