"""Computing fingerprints (scoring spec v3): the fixed inputs once, then one per scored model.

`build_fingerprint_inputs(teacher, prompt_ids)` runs once per validator, with the teacher
loaded for a round's teacher pass: the teacher continues each fingerprint prompt greedily
for `FINGERPRINT_TOKENS` tokens (the teacher pass's own `greedy_generate`), and returns the
inputs and the teacher's own fingerprint on them, the reference the comparison measures
distances against (`distil.scoring.fingerprints`). The prompts should be private to the
validator: a copier who knew them could tune a copy on exactly those positions.
`draw_fingerprint_prompts(source, tokenizer, spec)` draws them from the validator's prompt
source with a random seed that is not kept (round prompts are published; these are not).

`compute_fingerprint(model, inputs)` runs while a student is loaded for scoring (the
same worker, one extra forward of 8 short sequences, after its KL is computed): the model's
log-probability of each continuation token, from its own logits (soft-capped heads
included), on its device, in float32 (the model is upcast for the call and cast back).
"""

from __future__ import annotations

import torch

from distil.checks.loading import InvalidModel
from distil.eval.teacher import eos_ids_of, greedy_generate, scored_input
from distil.fingerprint import (FINGERPRINT_PROMPT_TOKENS, FINGERPRINT_PROMPTS, FINGERPRINT_TOKENS, Fingerprint,
                                FingerprintInputs, MIN_LOGPROB)

# Rows of [rows, V] fp32 logits upcast at a time (32 × 248,320 × 4 B = 32 MB).
_ROWS = 32


def device_kind(device: torch.device) -> str:
    """What the numbers depend on: the device's name where its torch backend names devices
    ("NVIDIA H200" for CUDA, XPU's likewise), else its type ("cpu"). The same line on every
    device: no device-specific branch."""
    name = getattr(getattr(torch, device.type, None), "get_device_name", None)
    return str(name(device)) if callable(name) else device.type


@torch.no_grad()
def fingerprint_values(model, inputs: FingerprintInputs) -> torch.Tensor:
    """[inputs.n_positions] float64: log p_model(c_j | p, c_<j) at every continuation position,
    prompts in order, clamped to [MIN_LOGPROB, 0]. Raises InvalidModel on a NaN log-probability
    (NaN or +inf logits: the model's fault, as in scoring)."""
    device = next(model.parameters()).device
    out = []
    for prompt, continuation in zip(inputs.prompt_ids, inputs.continuation_ids):
        x, _ = scored_input(list(prompt), list(continuation))
        logits = model(input_ids=torch.tensor([x], device=device), use_cache=False,
                       logits_to_keep=len(continuation)).logits[0]
        targets = torch.tensor(continuation, device=device)
        for a in range(0, len(continuation), _ROWS):
            block = logits[a : a + _ROWS].float()
            picked = block.gather(1, targets[a : a + _ROWS, None])[:, 0]
            out.append((picked - torch.logsumexp(block, dim=-1)).double().cpu())
    values = torch.cat(out)
    if torch.isnan(values).any():  # inf or NaN logits; -inf alone (an impossible token) is clamped
        raise InvalidModel("NaN log-probability on the fingerprint inputs (non-finite logits)")
    return values.clamp(min=MIN_LOGPROB, max=0.0)  # > 0 only by the rounding of a certain token


def compute_fingerprint(model, inputs: FingerprintInputs, dtype: torch.dtype | None = torch.float32) -> Fingerprint:
    """The fingerprint of a loaded model on `inputs`, computed in `dtype` (None: the model's own).

    By default in float32 whatever dtype the model was loaded in: the model is upcast in place
    and cast back afterwards (exact: bf16 and fp16 values are float32 values), so on a bf16
    GPU validator this needs the student's float32 size (4 bytes per parameter) for a moment.
    Measured (docs/performance.md): in bf16 the rounding of the forward pass alone puts copies
    up to 0.31 from their original; in float32, 0.09; independent models stay at 1.25 or more
    in both.
    """
    import transformers

    param = next(model.parameters())
    own = param.dtype
    if dtype is not None and dtype != own:
        model.to(dtype)
    try:
        values = fingerprint_values(model, inputs).numpy()
        computed = next(model.parameters()).dtype
    finally:
        if dtype is not None and dtype != own:
            model.to(own)
    return Fingerprint.of(values, inputs.digest, device_kind(param.device), str(computed).removeprefix("torch."),
                          torch.__version__, transformers.__version__)


def draw_fingerprint_prompts(source, tokenizer, spec, seed: str | None = None) -> list[list[int]]:
    """`FINGERPRINT_PROMPTS` prompts from `source` (a PromptSource), tokenized like a round's
    and cut to `FINGERPRINT_PROMPT_TOKENS` ids. The seed defaults to 32 random bytes that are
    not kept: the prompts are stored with the inputs, and nobody can draw them again."""
    import secrets

    from distil.eval.prompts import tokenize_prompts

    prompts = source.sample(seed if seed is not None else secrets.token_hex(32), FINGERPRINT_PROMPTS)
    return tokenize_prompts(prompts, tokenizer, spec.max_prompt_chars, min(spec.max_prompt_tokens, FINGERPRINT_PROMPT_TOKENS),
                            spec.vocab_size)


def build_fingerprint_inputs(teacher, prompt_ids: list[list[int]], max_new_tokens: int = FINGERPRINT_TOKENS,
                             batch_size: int = 16) -> tuple[FingerprintInputs, Fingerprint]:
    """The fingerprint inputs (prompts cut to `FINGERPRINT_PROMPT_TOKENS` ids and the teacher's
    greedy continuations of them, EOS kept as in scoring) and the teacher's fingerprint on
    them, in the teacher's own dtype (the reference: `reference_key` matches the students'
    float32 fingerprints on the same device kind). When the device kind changes, recompute
    the reference with `compute_fingerprint(teacher, inputs, dtype=None)` on the same inputs. Raises FingerprintError when the continuations hold too few positions to compare
    (`MIN_POSITIONS`: a teacher that stopped at once on most prompts; pick other prompts)."""
    prompts = [list(p)[:FINGERPRINT_PROMPT_TOKENS] for p in prompt_ids]
    continuations = greedy_generate(teacher, prompts, max_new_tokens, eos_ids_of(teacher), batch_size,
                                    who="teacher (fingerprint inputs)")
    inputs = FingerprintInputs.of(prompts, continuations)
    return inputs, compute_fingerprint(teacher, inputs, dtype=None)  # the teacher in its own dtype: never upcast
