"""What the student is trained to match: the teacher at the positions validators score.

Off-policy batches: the teacher's GREEDY continuations of the prompts (the validators'
own `greedy_generate`), and the teacher's final hidden states over prompt +
continuation (the validators' own `build_teacher_cache`). A prompt's greedy continuation
never changes, so it is generated once per run and kept (token ids only).

On-policy batches: the student SAMPLES a continuation (temperature 1, no top-k/top-p),
and the teacher's hidden states are taken over it with the same `build_teacher_cache`
(continuations given), so the loss sees the student where it goes on its own — the
remedy for students that loop when they generate alone.
"""

from __future__ import annotations

import torch

from distil.eval.teacher import TeacherCache, build_teacher_cache, cut_at_eos, eos_ids_of, greedy_generate


class TeacherTargets:
    """The teacher model with a memo of greedy continuations keyed by prompt index."""

    def __init__(self, teacher, max_new_tokens: int, generation_batch_size: int):
        self.teacher = teacher
        self.max_new_tokens = max_new_tokens
        self.generation_batch_size = generation_batch_size
        self.eos_ids = eos_ids_of(teacher)
        self.continuations: dict[int, list[int]] = {}

    def greedy(self, indices: list[int], prompts: list[list[int]]) -> TeacherCache:
        """The teacher cache of prompts[indices] on their greedy continuations. A miss generates
        a full generation batch: the missing prompts and the next ones in data order."""
        missing = sorted({i for i in indices if i not in self.continuations})
        following = (max(indices) + k for k in range(1, len(prompts)))
        for i in following:
            if not missing or len(missing) >= self.generation_batch_size:
                break
            if i % len(prompts) not in self.continuations and i % len(prompts) not in missing:
                missing.append(i % len(prompts))
        if missing:
            generated = greedy_generate(self.teacher, [prompts[i] for i in missing], self.max_new_tokens,
                                        self.eos_ids, self.generation_batch_size)
            self.continuations.update(zip(missing, generated))
        return self.over([prompts[i] for i in indices], [self.continuations[i] for i in indices])

    def over(self, prompts: list[list[int]], continuations: list[list[int]]) -> TeacherCache:
        """The teacher cache on given continuations (the student's samples)."""
        return build_teacher_cache(self.teacher, prompts, self.max_new_tokens, self.generation_batch_size,
                                   continuations=continuations)


@torch.no_grad()
def sample_continuations(model, prompts: list[list[int]], max_new_tokens: int, eos_ids: list[int],
                         generator_seed: int) -> list[list[int]]:
    """The student's own continuations: ancestral sampling at temperature 1 over the full
    vocabulary (the distribution the KL compares), stopped after an EOS; left-padded batch."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    pad = eos_ids[0]
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    saved, was_training = model.generation_config, model.training
    model.generation_config = GenerationConfig(eos_token_id=list(eos_ids), pad_token_id=pad)
    model.eval()
    try:
        torch.manual_seed(generator_seed)  # per step: a resumed run samples what the first one would have
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, num_beams=1, max_new_tokens=max_new_tokens, min_new_tokens=1)
    finally:
        model.generation_config = saved
        model.train(was_training)
    return [cut_at_eos(row, eos_ids) for row in out[:, width:].tolist()]
