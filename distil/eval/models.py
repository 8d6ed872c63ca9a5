"""Loading teacher and student models for scoring, and reading their output heads.

Models load from a pinned local directory only: `AutoModelForCausalLM.from_pretrained`
with `trust_remote_code=False`, safetensors only (never pickle), no hub access. Missing,
unexpected or mismatched weights and a vocabulary other than the teacher's are the
model's fault (`InvalidModel`).
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import torch
from loguru import logger

from distil.eval.kl import Head


class InvalidModel(Exception):
    """The model itself is at fault (config, weights, vocabulary, non-finite output): final."""


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


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def vocab_size_of(config) -> int | None:
    return getattr(text_config(config), "vocab_size", None) or getattr(config, "vocab_size", None)


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


def load_causal_lm(path: str | os.PathLike, device: str, dtype: torch.dtype, vocab_size: int,
                   allow_unexpected: bool = False):
    """A model from a local directory, checked, in eval mode on `device` in `dtype`.

    `allow_unexpected` is for the teacher only: the hub checkpoint of Qwen3.5-35B-A3B is
    a multimodal model whose vision (and multi-token-prediction) weights the causal-LM
    class does not use; they are logged, not fatal. Students never get it.

    Raises InvalidModel (naming the problem) for remote code, a vocabulary other than
    `vocab_size`, missing/unexpected/mismatched weights or weights that are not
    safetensors; FileNotFoundError when `path` is not a directory (our download, not
    the model). Out-of-memory propagates as is.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}: not a downloaded model directory")
    raw = json.loads((path / "config.json").read_text())
    if "auto_map" in raw or "auto_map" in raw.get("text_config", {}):
        raise InvalidModel("config.json has auto_map (remote code), which is never run")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    vocab = vocab_size_of(config)
    if vocab != vocab_size:
        raise InvalidModel(f"vocab_size {vocab} in config.json, the teacher's is {vocab_size}")
    if not any(path.glob("*.safetensors")):
        raise InvalidModel("no *.safetensors weights (other weight formats are never loaded)")
    kwargs = dict(config=config, dtype=dtype, trust_remote_code=False, local_files_only=True,
                  use_safetensors=True, output_loading_info=True)
    if device != "cpu":
        kwargs["device_map"] = device
    model, info = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    problems = {k: sorted(info.get(k) or []) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if allow_unexpected and problems["unexpected_keys"]:
        keys = problems["unexpected_keys"]
        logger.warning(f"{path}: ignoring {len(keys)} weights the causal LM does not use (e.g. {keys[0]})")
        problems["unexpected_keys"] = []
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        del model
        free_memory()
        detail = "; ".join(f"{k}: {', '.join(map(str, v[:5]))}{' …' if len(v) > 5 else ''}" for k, v in problems.items())
        raise InvalidModel(f"weights do not match the architecture ({detail})")
    for name, module in (("output", model.get_output_embeddings()), ("input", model.get_input_embeddings())):
        rows = None if module is None else module.weight.shape[0]
        if rows != vocab_size:
            raise InvalidModel(f"{name} embedding has {rows} rows, the teacher's vocabulary is {vocab_size}")
    model.eval()
    model.requires_grad_(False)
    n = sum(p.numel() for p in model.parameters())
    logger.info(f"loaded {type(model).__name__} ({n / 1e6:.1f}M params, {dtype}) from {path} on {device}")
    return model


def head_of(model) -> Head:
    """The model's output projection as a `Head` (weight [V, H], bias [V] or None)."""
    lm_head = model.get_output_embeddings()
    return Head(lm_head.weight.detach(), None if getattr(lm_head, "bias", None) is None else lm_head.bias.detach())


def final_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states (after the final norm: the input of `lm_head`) of ids [1, T] → [T, H]."""
    return model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state[0]


def free_memory() -> None:
    """Collect garbage and return freed GPU memory (callers drop their references first)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
