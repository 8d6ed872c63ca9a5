"""Pure pieces of distil-train: data order, on-policy schedule, batches, held-out split."""

from __future__ import annotations

import json

import pytest
import torch

from distil import tiny
from distil.eval.prompts import JsonlPromptSource, tokenize_prompts
from distil.eval.spec import EvalSpec
from distil.train.data import collate, is_on_policy, load_prompt_sets, micro_batch_indices


def test_every_process_and_micro_batch_reads_different_prompts_in_a_step():
    seen = [micro_batch_indices(3, m, r, 2, 4, 3, 1000) for m in range(3) for r in range(2)]
    flat = [i for batch in seen for i in batch]
    assert len(set(flat)) == 24 and min(flat) == 3 * 24  # steps 0-2 read the first 72 prompts
    assert micro_batch_indices(0, 0, 0, 1, 4, 1, 6) == [0, 1, 2, 3]
    assert micro_batch_indices(1, 0, 0, 1, 4, 1, 6) == [4, 5, 0, 1]  # wraps into the next epoch


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.3, 1.0])
def test_on_policy_steps_are_the_fraction_and_spread_out(fraction):
    flags = [is_on_policy(s, fraction) for s in range(100)]
    assert sum(flags) == round(100 * fraction)
    for a in range(0, 90):
        assert abs(sum(flags[a : a + 10]) - 10 * fraction) <= 1
    with pytest.raises(ValueError):
        is_on_policy(0, 1.5)


def test_collate_scores_exactly_the_continuation_positions():
    prompts, conts = [[5, 6, 7], [8]], [[1, 2], [3, 4, 9]]
    hidden = [torch.full((2, 3), 1.0), torch.full((3, 3), 2.0)]
    b = collate(prompts, conts, hidden, pad_id=0, device="cpu")
    assert b.input_ids.tolist() == [[5, 6, 7, 1], [8, 3, 4, 0]]
    assert b.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    # row i's position p predicts token p + 1: prompt 0 scores positions 2, 3; prompt 1 positions 0, 1, 2
    assert b.positions.tolist() == [2, 3, 4, 5, 6]
    flat = b.input_ids.reshape(-1)
    assert [int(flat[p + 1]) for p in b.positions.tolist()[:1]] == [1]
    torch.testing.assert_close(b.row_weights, torch.tensor([1 / 4, 1 / 4, 1 / 6, 1 / 6, 1 / 6]))
    assert float(b.row_weights.sum()) == pytest.approx(1.0) and b.n_tokens == 5


def test_held_out_prompts_are_distil_evals_and_never_trained_on(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"text": f"prompt number {i}"}) + "\n" for i in range(30)))
    spec = EvalSpec(n_prompts=6)
    tokenizer = tiny.build_tokenizer()
    seed = "ab" * 16
    sets = load_prompt_sets(JsonlPromptSource(path), tokenizer, spec, 20, 6, seed=0, held_out_seed=seed)
    expected = tokenize_prompts(JsonlPromptSource(path).sample(seed, 6), tokenizer, spec.max_prompt_chars,
                                spec.max_prompt_tokens, spec.vocab_size)
    assert sets.held_out == expected  # what `distil-eval --seed <seed>` scores
    assert len(sets.train) == 20 and not {tuple(p) for p in sets.train} & {tuple(p) for p in sets.held_out}
    with pytest.raises(ValueError, match="lower --train-prompts"):
        load_prompt_sets(JsonlPromptSource(path), tokenizer, spec, 25, 6, seed=0, held_out_seed=seed)
