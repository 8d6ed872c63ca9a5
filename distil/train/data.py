"""Training prompts, held-out prompts, which prompts each step reads, and batch tensors.

Prompts come from the validators' own sources and tokenisation (`distil.eval.prompts`):
a JSONL prompts file or the corpus, cut to `max_prompt_chars` characters, tokenised with
the teacher's tokenizer adding no special tokens (`distil.eval.prompts.tokenize_prompts`),
cut to `max_prompt_tokens` ids.

The held-out set is what `distil-eval` samples for `held_out_seed`; the training set is
sampled with `train_seed` and excludes every held-out prompt, so the final predicted KL is
measured on prompts the student never trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from distil.eval.prompts import PromptSource, seed_from_block_hash, tokenize_prompts


def derived_seed(seed: int, purpose: str) -> str:
    """A hex sampler seed for `purpose` ("train", "held-out") derived from the run's integer seed."""
    return hashlib.sha256(f"distil-train|{purpose}|{seed}".encode()).hexdigest()


@dataclass(frozen=True)
class PromptSets:
    """Token ids of the training and held-out prompts, and where they came from."""

    train: list[list[int]]
    held_out: list[list[int]]
    held_out_seed: str
    description: dict


def load_prompt_sets(source: PromptSource, tokenizer, spec, n_train: int, n_held_out: int, seed: int,
                     held_out_seed: str | None = None) -> PromptSets:
    """Sample and tokenise both sets as validators do (`spec`: an EvalSpec)."""
    held_seed = seed_from_block_hash(held_out_seed) if held_out_seed else derived_seed(seed, "held-out")
    held = source.sample(held_seed, n_held_out)
    excluded = {p.source_id for p in held}
    try:  # held-out prompts may be in the pool: sample enough to drop them
        pool = source.sample(derived_seed(seed, "train"), n_train + n_held_out)
    except ValueError as e:
        raise ValueError(f"{e} (--train-prompts {n_train} + --held-out-prompts {n_held_out}): "
                         f"lower --train-prompts or use a larger prompt source") from None
    train = [p for p in pool if p.source_id not in excluded][:n_train]
    if len(train) < n_train:
        raise ValueError(f"only {len(train)} training prompts remain after setting aside {n_held_out} held-out ones; "
                         f"lower --train-prompts or use a larger prompt source")
    tok = lambda prompts: tokenize_prompts(prompts, tokenizer, spec.max_prompt_chars,  # noqa: E731
                                           spec.max_prompt_tokens, spec.vocab_size)
    return PromptSets(tok(train), tok(held), held_seed, source.describe())


def micro_batch_indices(step: int, micro: int, rank: int, world: int, batch_size: int, accumulation: int,
                        n_prompts: int) -> list[int]:
    """Prompt indices of one process's micro-batch: the data order is a pure function of the
    step, so a resumed run reads exactly what the interrupted one would have read."""
    start = ((step * accumulation + micro) * world + rank) * batch_size
    return [(start + k) % n_prompts for k in range(batch_size)]


def is_on_policy(step: int, fraction: float) -> bool:
    """Whether optimizer step `step` trains on the student's own samples: spread evenly, so
    that any window of k steps holds ⌊k·fraction⌋ or ⌈k·fraction⌉ on-policy steps."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"on-policy fraction must be in [0, 1], got {fraction}")
    return int((step + 1) * fraction) > int(step * fraction)


@dataclass(frozen=True)
class Batch:
    """A micro-batch ready for the student: right-padded ids [B, T], mask, the flat indices
    [N] of the scored positions in [B·T], teacher hidden [N, Ht] at them, and row weights [N]
    (1 / (L_i · B): the loss is the mean over prompts of the mean over their positions)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    positions: torch.Tensor
    teacher_hidden: torch.Tensor
    row_weights: torch.Tensor
    n_tokens: int


def collate(prompts: list[list[int]], continuations: list[list[int]], teacher_hidden: list[torch.Tensor],
            pad_id: int, device) -> Batch:
    """The Batch of prompts + continuations (right padding: a causal model's real positions never see it)."""
    rows = [p + c[:-1] for p, c in zip(prompts, continuations)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    positions, weights = [], []
    for i, (row, p, c) in enumerate(zip(rows, prompts, continuations)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        first = i * width + len(p) - 1
        positions.append(torch.arange(first, first + len(c)))
        weights.append(torch.full((len(c),), 1.0 / (len(c) * len(rows))))
    return Batch(ids.to(device), mask.to(device), torch.cat(positions).to(device),
                 torch.cat(teacher_hidden).to(device), torch.cat(weights).to(device),
                 sum(map(len, continuations)))
