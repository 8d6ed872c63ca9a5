"""Tiny real-vocabulary models for the evaluation tests, built once per test session,
and an independent float64 reference for KL (full logits from the models' own forward
in float64, log-softmax from SciPy) that shares no code with distil.eval."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax

from distil import tiny

_ROOT = Path(tempfile.mkdtemp(prefix="distil-eval-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
_BUILT: dict[str, Path] = {}


def _teacher_model():
    return tiny.build_model(tiny.teacher_config(), seed=0)


def _eos_early_teacher():
    """The teacher, with EOS's lm_head row set to 1.1 × the row of a token it often emits,
    so it says EOS where it would have said that token (early on some prompts, not others)."""
    model = _teacher_model()
    with torch.no_grad():
        w = model.lm_head.weight
        w[tiny.EOS_ID] = w[EOS_TRIGGER] * 1.1
    return model


EOS_TRIGGER = None  # set by the test that needs it, before building "eos_teacher"

BUILDERS = {
    "teacher": lambda p: tiny.save_model(p, tiny.teacher_config(), model=_teacher_model()),
    "student": lambda p: tiny.save_student(p, seed=1),
    "student_qwen3": lambda p: tiny.save_student(p, seed=2, arch="qwen3"),
    # Close to the teacher (small KL, high top-1 agreement): the "king" of tests.
    "near": lambda p: tiny.save_model(p, tiny.teacher_config(), model=tiny.perturbed_copy(_teacher_model(), 7, 0.05)),
    "wrong_vocab": lambda p: tiny.save_student(p, seed=3, arch="qwen3", vocab_size=151_936),
}


def model_dir(name: str) -> str:
    """Path of the tiny model `name` (see BUILDERS), built on first use."""
    if name not in _BUILT:
        path = _ROOT / name
        BUILDERS[name](path)
        _BUILT[name] = path
    return str(_BUILT[name])


def new_dir(name: str) -> Path:
    path = _ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@torch.no_grad()
def float64_logits(model_path: str, prompts: list[list[int]], continuations: list[list[int]], model=None) -> list[np.ndarray]:
    """The model's own full logits [L_i, V] in float64 at the positions predicting each continuation token."""
    from transformers import AutoModelForCausalLM

    if model is None:
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float64, experts_implementation="eager")
    model = model.double().eval()
    out = []
    for p, c in zip(prompts, continuations):
        ids = torch.tensor([p + c[:-1]])
        out.append(model(ids).logits[0, len(p) - 1 :].numpy())
    return out


def reference_kl(t_logits: list[np.ndarray], s_logits: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-position KL(t‖s) and top-1 agreement in float64 with SciPy."""
    kls, agrees = [], []
    for t, s in zip(t_logits, s_logits):
        lt, ls = log_softmax(t, axis=-1), log_softmax(s, axis=-1)
        kls.append(np.sum(np.exp(lt) * (lt - ls), axis=-1))
        agrees.append(t.argmax(-1) == s.argmax(-1))
    return kls, agrees


def reference_stats(kls: list[np.ndarray], agrees: list[np.ndarray]) -> dict:
    per_prompt = np.array([k.mean() for k in kls])
    pooled = np.concatenate(kls)
    return {
        "kl_mean": per_prompt.mean(),
        "kl_se": per_prompt.std(ddof=1) / np.sqrt(len(per_prompt)),
        "kl_median": np.median(pooled),
        "kl_p99": np.percentile(pooled, 99),
        "top1_agreement": np.concatenate(agrees).mean(),
        "per_prompt_kl": per_prompt,
    }
