"""Model layouts for the architecture-guard tests: the teacher as the hub stores it (the
multimodal `Qwen3_5MoeForConditionalGeneration` with vision and MTP weights), tiny and, as
headers only, at full size.

The hub checkpoint of Qwen/Qwen3.5-35B-A3B is the multimodal model: text weights under
`model.language_model.`, the vision tower under `model.visual.`, per-expert MoE tensors
(`mlp.experts.<i>.{gate,up,down}_proj.weight`) and a multi-token-prediction head under
`mtp.`. transformers writes exactly that layout when it saves the multimodal class (its
conversion mapping reverts the fused experts on save), so the layouts here come from
transformers' own save path, plus MTP tensors named as the hub's are.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from distil import tiny

TINY_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                   num_position_embeddings=16, patch_size=4)


def tiny_hub_config():
    from transformers import Qwen3_5MoeConfig

    return Qwen3_5MoeConfig(text_config=tiny.teacher_config().to_dict(), vision_config=TINY_VISION,
                            tie_word_embeddings=False)


def mtp_tensors(hidden: int, experts: int, moe: int, dtype=torch.bfloat16, device=None) -> dict[str, torch.Tensor]:
    """An MTP head in the hub's naming (fc, norms, one decoder layer with per-expert MoE)."""
    make = lambda *shape: torch.zeros(shape, dtype=dtype, device=device)  # noqa: E731
    out = {"mtp.fc.weight": make(hidden, 2 * hidden), "mtp.norm.weight": make(hidden),
           "mtp.pre_fc_norm_embedding.weight": make(hidden), "mtp.pre_fc_norm_hidden.weight": make(hidden),
           "mtp.layers.0.input_layernorm.weight": make(hidden),
           "mtp.layers.0.mlp.gate.weight": make(experts, hidden)}
    for e in range(experts):
        for proj, shape in (("gate_proj", (moe, hidden)), ("up_proj", (moe, hidden)), ("down_proj", (hidden, moe))):
            out[f"mtp.layers.0.mlp.experts.{e}.{proj}.weight"] = make(*shape)
    return out


def save_tiny_hub_teacher(path: Path, seed: int = 0) -> Path:
    """The tiny teacher saved as the hub stores the real one (multimodal class + MTP)."""
    from transformers import Qwen3_5MoeForConditionalGeneration

    config = tiny_hub_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3_5MoeForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(str(path))
    state = load_file(str(path / "model.safetensors"))
    text = config.text_config
    state.update(mtp_tensors(text.hidden_size, text.num_experts, text.moe_intermediate_size))
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    tiny.save_tokenizer(path)
    return path


def real_teacher_headers() -> tuple[object, dict[str, tuple[str, tuple[int, ...]]]]:
    """(config, name → ("BF16", shape)) of Qwen3.5-35B-A3B in its hub layout, from transformers'
    own config defaults (= the real repo's values) on the meta device: no weight is created."""
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration
    from transformers.core_model_loading import revert_weight_conversion

    config = Qwen3_5MoeConfig()
    with torch.device("meta"):
        model = Qwen3_5MoeForConditionalGeneration(config)
    state = revert_weight_conversion(model, model.state_dict())
    text = config.text_config
    state.update(mtp_tensors(text.hidden_size, text.num_experts, text.moe_intermediate_size, device="meta"))
    return config, {k: ("BF16", tuple(v.shape)) for k, v in state.items()}
