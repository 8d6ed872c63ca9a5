"""The teacher pass: greedy continuations equal step-by-step argmax, EOS ends a
continuation (and is scored), the cached hidden states are the lm_head's inputs."""

import numpy as np
import pytest
import torch

from distil import VOCAB_SIZE, tiny
from distil.checks.loading import load_causal_lm
from distil.eval.teacher import TeacherCache, build_teacher_cache, greedy_generate
from eval_helpers import model_dir

PROMPTS = [[11, 12, 13, 14, 15, 16], [21, 22], [31, 32, 33, 34], [41]]


@pytest.fixture(scope="module")
def teacher():
    return load_causal_lm(model_dir("teacher"), "cpu", torch.float32, VOCAB_SIZE)


@torch.no_grad()
def stepwise_argmax(model, prompt, n, eos=None):
    """Reference: full forward without cache, one token at a time, unbatched."""
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model(torch.tensor([ids]), use_cache=False).logits[0, -1].argmax()))
        if ids[-1] == eos:
            break
    return ids[len(prompt):]


def test_batched_left_padded_greedy_equals_stepwise_argmax(teacher):
    expected = [stepwise_argmax(teacher, p, 6) for p in PROMPTS]
    for batch_size in (1, 3, 4):  # 3: a full padded batch then a batch of one
        assert greedy_generate(teacher, PROMPTS, 6, [tiny.EOS_ID], batch_size) == expected


def test_repo_generation_config_cannot_change_decoding(teacher):
    from transformers import GenerationConfig

    expected = greedy_generate(teacher, PROMPTS[:2], 5, [tiny.EOS_ID])
    saved = teacher.generation_config
    teacher.generation_config = GenerationConfig(do_sample=True, temperature=5.0, top_k=3, repetition_penalty=3.0,
                                                 min_new_tokens=5, eos_token_id=tiny.EOS_ID)
    try:
        assert greedy_generate(teacher, PROMPTS[:2], 5, [tiny.EOS_ID]) == expected
    finally:
        teacher.generation_config = saved


@pytest.fixture(scope="module")
def eos_teacher(teacher):
    """The teacher with EOS's lm_head row = 1.1 × the row of a token it emits on one prompt,
    so EOS replaces that token: continuations end early on some prompts only."""
    import copy

    trigger = stepwise_argmax(teacher, PROMPTS[0], 3)[2]
    model = copy.deepcopy(teacher)
    with torch.no_grad():
        model.lm_head.weight[tiny.EOS_ID] = model.lm_head.weight[trigger] * 1.1
    return model


def test_eos_ends_the_continuation_and_is_included(eos_teacher):
    expected = [stepwise_argmax(eos_teacher, p, 8, eos=tiny.EOS_ID) for p in PROMPTS]
    got = greedy_generate(eos_teacher, PROMPTS, 8, [tiny.EOS_ID], batch_size=4)
    assert got == expected
    assert got[0][-1] == tiny.EOS_ID and len(got[0]) == 3  # ended early, EOS kept
    assert any(len(c) == 8 and tiny.EOS_ID not in c for c in got)  # others ran to max_new_tokens in the same batch
    cache = build_teacher_cache(eos_teacher, PROMPTS, 8, batch_size=4)
    assert cache.continuation_ids == expected
    assert [h.shape[0] for h in cache.hidden] == [len(c) for c in expected]  # EOS position scored


@torch.no_grad()
def test_cache_holds_lm_head_inputs_at_the_scored_positions(teacher, tmp_path):
    cache = build_teacher_cache(teacher, PROMPTS, 5, batch_size=2)
    for p, c, h in zip(cache.prompt_ids, cache.continuation_ids, cache.hidden):
        logits = teacher(torch.tensor([p + c[:-1]])).logits[0, len(p) - 1 :]
        assert h.shape == (len(c), 64)
        np.testing.assert_allclose((h @ cache.head.weight.T).numpy(), logits.numpy(), atol=1e-5)
        assert logits.argmax(-1).tolist() == c  # the continuation is the teacher's greedy choice
    assert cache.vocab_size == VOCAB_SIZE and cache.eos_ids == [tiny.EOS_ID]
    # Saved without pickle, loaded back identical.
    cache.save(tmp_path / "cache")
    assert {f.name for f in (tmp_path / "cache").iterdir()} == {"teacher_cache.safetensors", "teacher_cache.json"}
    loaded = TeacherCache.load(tmp_path / "cache")
    assert loaded.prompt_ids == cache.prompt_ids and loaded.continuation_ids == cache.continuation_ids
    assert all(torch.equal(a, b) for a, b in zip(loaded.hidden, cache.hidden))
    assert torch.equal(loaded.head.weight, cache.head.weight)
    # Given continuations (re-scoring a round) give the same cache without generating.
    given = build_teacher_cache(teacher, PROMPTS, 5, continuations=cache.continuation_ids)
    assert "generate_s" not in given.timings
    assert all(torch.equal(a, b) for a, b in zip(given.hidden, cache.hidden))
