"""Reading a loaded model's output: its head and its final hidden states, and whether its
logits are a plain projection of them.

Every model is loaded by the one load function, `distil.checks.loading.load_causal_lm`,
beside the guards it calls.
"""

from __future__ import annotations

import torch

from distil.checks.loading import text_config
from distil.eval.kl import Head

# Model types whose causal-LM logits are exactly `lm_head(final hidden state)` (read in
# transformers' modeling code). Anything else is scored from its own logits.
PLAIN_HEAD_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next",
    "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "phi3", "olmo2", "smollm3",
})
# Config entries that change logits after the projection (soft-capping, scaling).
_HEAD_TRANSFORMS = {
    "final_logit_softcapping": None,  # gemma2/3: tanh(x / c) · c
    "logit_scale": 1.0,  # cohere: x · s
    "logits_scaling": 1.0,  # granite: x / s
    "scale_width": 1.0,  # minicpm: lm_head(h / (hidden / dim_model_base))
    "output_multiplier_scale": 1.0,
}


def own_logits_reason(config) -> str | None:
    """Why this model's logits are not a plain projection of its last hidden state (None: they are)."""
    for cfg in {id(config): config, id(text_config(config)): text_config(config)}.values():
        for key, neutral in _HEAD_TRANSFORMS.items():
            value = getattr(cfg, key, neutral)
            if value is not None and value != neutral:
                return f"config {key}={value!r}"
    model_type = getattr(text_config(config), "model_type", None)
    if model_type not in PLAIN_HEAD_MODEL_TYPES:
        return f"model_type {model_type!r} is not known to use a plain lm_head"
    return None


def head_of(model) -> Head:
    """The model's output projection as a `Head` (weight [V, H], bias [V] or None)."""
    lm_head = model.get_output_embeddings()
    return Head(lm_head.weight.detach(), None if getattr(lm_head, "bias", None) is None else lm_head.bias.detach())


def final_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states (after the final norm: the input of `lm_head`) of ids [1, T] → [T, H]."""
    return model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state[0]
