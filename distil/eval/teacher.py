"""The teacher pass: greedy continuations, then the teacher's final hidden states at the
scored positions and its `lm_head`, so the teacher body can be freed before students run.

Positions. For a prompt p (length P) and continuation c (length L ≥ 1), the model reads
x = p + c[:-1] (length P + L − 1); the hidden state at position P − 1 + j predicts c[j],
so the scored positions are P − 1 … P + L − 2, one per continuation token (the EOS
included when the teacher generated it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from loguru import logger

from distil.eval.kl import Head
from distil.eval.models import final_hidden, head_of, own_logits_reason

CACHE_FORMAT = 1


def eos_ids_of(model) -> list[int]:
    """The teacher's end-of-sequence ids: generation_config first, then config."""
    for cfg in (getattr(model, "generation_config", None), model.config):
        eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        if eos is not None:
            return sorted({int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])})
    raise ValueError("the teacher declares no eos_token_id")


def scored_input(prompt: list[int], continuation: list[int]) -> tuple[list[int], int]:
    """The ids a model reads (prompt + continuation[:-1]) and the first scored position."""
    if not prompt or not continuation:
        raise ValueError("prompt and continuation must both be non-empty")
    return prompt + continuation[:-1], len(prompt) - 1


def cut_at_eos(tokens: list[int], eos_ids: list[int]) -> list[int]:
    """tokens up to and including the first EOS (all of them if there is none)."""
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: i + 1]
    return tokens


@torch.no_grad()
def greedy_generate(model, prompts: list[list[int]], max_new_tokens: int, eos_ids: list[int],
                    batch_size: int = 16, who: str = "teacher") -> list[list[int]]:
    """Greedy continuations (argmax at every step) of each prompt, stopped after an EOS.

    Prompts are batched `batch_size` at a time, LEFT-padded with an attention mask, so
    each row equals its unbatched step-by-step argmax (up to the rounding of batched
    matmuls). The model's own generation_config (sampling, penalties, min length...) is
    replaced by a bare greedy one for the call, so a repo cannot change decoding. The
    degeneration probe (distil.eval.probe) runs students through this same function;
    `who` names the model in the progress log.
    """
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    pad = eos_ids[0]
    saved = model.generation_config
    model.generation_config = GenerationConfig(eos_token_id=list(eos_ids), pad_token_id=pad)
    out: list[list[int]] = []
    try:
        for b in range(0, len(prompts), batch_size):
            batch = prompts[b : b + batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=device)
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1,
                                 max_new_tokens=max_new_tokens, min_new_tokens=0)
            for row in gen[:, width:].tolist():
                out.append(cut_at_eos(row, eos_ids))
            logger.info(f"{who} generated {min(b + batch_size, len(prompts))}/{len(prompts)} continuations")
    finally:
        model.generation_config = saved
    return out


@dataclass
class TeacherCache:
    """What scoring needs from the teacher, on one device.

    prompt_ids[i], continuation_ids[i]: token ids; hidden[i]: [L_i, H] final hidden
    states at the scored positions (L_i = len(continuation_ids[i])); head: the teacher's
    lm_head (weight [V, H]); eos_ids: the stop ids used; timings: seconds per phase.
    """

    prompt_ids: list[list[int]]
    continuation_ids: list[list[int]]
    hidden: list[torch.Tensor]
    head: Head
    eos_ids: list[int]
    timings: dict = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return self.head.weight.shape[0]

    def to(self, device: str) -> "TeacherCache":
        head = Head(self.head.weight.to(device), None if self.head.bias is None else self.head.bias.to(device))
        return TeacherCache(self.prompt_ids, self.continuation_ids, [h.to(device) for h in self.hidden], head,
                            self.eos_ids, dict(self.timings))

    def save(self, directory: str | Path) -> None:
        """`directory/teacher_cache.safetensors` (tensors) + `teacher_cache.json` (ids); no pickle."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"hidden.{i}": h.contiguous().cpu() for i, h in enumerate(self.hidden)}
        tensors["lm_head.weight"] = self.head.weight.contiguous().cpu()
        if self.head.bias is not None:
            tensors["lm_head.bias"] = self.head.bias.contiguous().cpu()
        save_file(tensors, str(directory / "teacher_cache.safetensors"))
        meta = {"format": CACHE_FORMAT, "prompt_ids": self.prompt_ids, "continuation_ids": self.continuation_ids,
                "eos_ids": self.eos_ids, "timings": self.timings}
        (directory / "teacher_cache.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "TeacherCache":
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / "teacher_cache.json").read_text())
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"teacher cache format {meta.get('format')!r}, expected {CACHE_FORMAT}")
        tensors = load_file(str(directory / "teacher_cache.safetensors"), device=device)
        hidden = [tensors[f"hidden.{i}"] for i in range(len(meta["prompt_ids"]))]
        head = Head(tensors["lm_head.weight"], tensors.get("lm_head.bias"))
        return cls(meta["prompt_ids"], meta["continuation_ids"], hidden, head, meta["eos_ids"], meta.get("timings", {}))


@torch.no_grad()
def build_teacher_cache(model, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16,
                        continuations: list[list[int]] | None = None) -> TeacherCache:
    """Greedy-generate (unless `continuations` are given: re-scoring a published round),
    then one forward per prompt over prompt + continuation[:-1] keeping the final hidden
    states at the scored positions, and the lm_head. The caller may then free `model`.
    """
    reason = own_logits_reason(model.config)
    if reason is not None:
        raise ValueError(f"teacher logits must be a plain lm_head projection ({reason})")
    eos_ids = eos_ids_of(model)
    timings = {}
    started = time.perf_counter()
    if continuations is None:
        logger.info(f"teacher: greedy generation of {len(prompts)} prompts, ≤{max_new_tokens} new tokens, eos {eos_ids}")
        continuations = greedy_generate(model, prompts, max_new_tokens, eos_ids, batch_size)
        timings["generate_s"] = time.perf_counter() - started
    elif len(continuations) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    started = time.perf_counter()
    device = next(model.parameters()).device
    hidden = []
    for p, c in zip(prompts, continuations):
        x, first = scored_input(p, c)
        hidden.append(final_hidden(model, torch.tensor([x], device=device))[first:].clone())
    timings["teacher_forward_s"] = time.perf_counter() - started
    head = head_of(model)  # keeps only the lm_head tensors alive once the caller drops the model
    n_tokens = sum(map(len, continuations))
    logger.info(f"teacher: cached {n_tokens} scored positions of {len(prompts)} prompts "
                f"(hidden {hidden[0].shape[-1]}, {hidden[0].dtype})")
    return TeacherCache([list(p) for p in prompts], [list(c) for c in continuations], hidden, head, eos_ids, timings)
