"""Tiny random models at the real vocabulary, for tests, benchmarks and the mock demo.

The teacher is a `Qwen3_5MoeForCausalLM` and the students `Qwen3_5ForCausalLM` (or
`Qwen3ForCausalLM`) with hidden size 64 and 2 layers, but the real 248,320-token
vocabulary, so every full-vocabulary code path runs at its real width (~32M parameters,
well under a second to save and load). Weights come from transformers' init under a fixed seed
(bit-identical for the same seed) and saved in bf16, as the dtype check requires.

The tokenizer is a byte-level BPE over the 256 byte symbols plus the Qwen special tokens
at high ids: light, deterministic, and a real `tokenizers` tokenizer that
`AutoTokenizer` loads from `tokenizer.json`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from distil import VOCAB_SIZE

EOS_ID = 248_044  # <|endoftext|>
IM_START_ID = 248_045
IM_END_ID = 248_046
SPECIAL_TOKENS = {"<|endoftext|>": EOS_ID, "<|im_start|>": IM_START_ID, "<|im_end|>": IM_END_ID}

_LINEAR = dict(
    linear_num_value_heads=4,
    linear_num_key_heads=2,
    linear_key_head_dim=16,
    linear_value_head_dim=16,
    layer_types=["linear_attention", "full_attention"],
)
_ATTENTION = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16)


def teacher_config(vocab_size: int = VOCAB_SIZE, **overrides):
    """A tiny `Qwen3_5MoeTextConfig`: the teacher's architecture, 2 layers, 4 experts."""
    from transformers import Qwen3_5MoeTextConfig

    kwargs = dict(
        **_ATTENTION,
        **_LINEAR,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
        num_experts=4,
        num_experts_per_tok=2,
        vocab_size=vocab_size,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    return Qwen3_5MoeTextConfig(**kwargs)


def student_config(arch: str = "qwen3_5", vocab_size: int = VOCAB_SIZE, **overrides):
    """A tiny dense student: `qwen3_5` (Qwen3.5 text, with linear attention) or `qwen3`."""
    if arch == "qwen3_5":
        from transformers import Qwen3_5TextConfig

        kwargs = dict(**_ATTENTION, **_LINEAR, intermediate_size=128)
        cls = Qwen3_5TextConfig
    elif arch == "qwen3":
        from transformers import Qwen3Config

        kwargs = dict(**_ATTENTION, intermediate_size=128)
        cls = Qwen3Config
    else:
        raise ValueError(f"unknown tiny student architecture {arch!r}")
    kwargs.update(vocab_size=vocab_size, eos_token_id=EOS_ID, tie_word_embeddings=False)
    kwargs.update(overrides)
    return cls(**kwargs)


def build_model(config, seed: int = 0, dtype: torch.dtype = torch.bfloat16, logit_scale: float = 1.0):
    """A model of `config` with transformers' own random init drawn from `seed`, in `dtype`.

    The same seed and config give bit-identical weights. `logit_scale` multiplies the
    output projection, so the model's next-token distributions are more peaked (a random
    model at the default init is nearly uniform over 248,320 tokens).
    """
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    if logit_scale != 1.0:
        with torch.no_grad():
            model.get_output_embeddings().weight.mul_(logit_scale)
    model = model.to(dtype)
    model.eval()
    return model


def build_tokenizer():
    """A byte-level BPE `PreTrainedTokenizerFast` with the Qwen special tokens at high ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    # Qwen's specials sit far above the BPE vocabulary, as they do in the real tokenizer.
    vocab.update(SPECIAL_TOKENS)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # NFC as the real tokenizer does; carried in tokenizer.json so that every loader class
    # (AutoTokenizer picks one from the model's config) encodes alike.
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def save_tokenizer(path: str | Path) -> None:
    build_tokenizer().save_pretrained(str(path))


def save_model(path: str | Path, config, seed: int = 0, tokenizer: bool = True, model=None, logit_scale: float = 1.0):
    """Build (or take) a model, save it as bf16 safetensors with its tokenizer; returns the model."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else build_model(config, seed=seed, logit_scale=logit_scale)
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.pad_token_id = EOS_ID
    model.save_pretrained(str(path))
    if tokenizer:
        save_tokenizer(path)
    return model


def save_teacher(path: str | Path, seed: int = 0, **overrides):
    return save_model(path, teacher_config(**overrides), seed=seed)


def save_student(path: str | Path, seed: int = 1, arch: str = "qwen3_5", **overrides):
    return save_model(path, student_config(arch, **overrides), seed=seed)


def perturbed_copy(model, seed: int, scale: float):
    """A copy of `model` with every weight moved by `scale` × its std in N(0, 1) noise.

    Gives students of controlled quality: the smaller `scale`, the closer to `model`.
    """
    import copy

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in clone.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            std = param.float().std() if param.numel() > 1 else torch.tensor(0.0)
            param.copy_((param.float() + noise * std * scale).to(param.dtype))
    return clone


def looping_copy(model, strength: float = 50.0):
    """A copy of `model` that, left to generate greedily, repeats the token it just read.

    For the degeneration guard's tests: every output-head row v gains `strength` × the
    unit-length input embedding of v. The residual stream carries the embedding of the
    token being read up to the final norm, so the logit of that same token rises by about
    `strength` × its (normalised) self-similarity, and once it is the argmax the model
    feeds itself the token again: a period-1 loop. The architecture, shapes and files are
    those of `model` (it passes every pre-check); a smaller `strength` keeps more of the
    original predictions (and a lower KL on teacher text) but loops on fewer prompts.
    """
    import copy

    clone = copy.deepcopy(model)
    with torch.no_grad():
        embedding = clone.get_input_embeddings().weight.float()
        unit = embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-12)
        head = clone.get_output_embeddings().weight
        if head.data_ptr() == clone.get_input_embeddings().weight.data_ptr():
            raise ValueError("looping_copy needs an untied output head (tie_word_embeddings=False)")
        head.copy_((head.float() + strength * unit).to(head.dtype))
    return clone


def stopping_copy(model, trigger_ids=None, strength: float = 1.0, shift: float = 8.0, seed: int = 0):
    """A copy of `model` that ends its text (greedy EOS) right after reading any of `trigger_ids`
    (None: every token, so it stops before writing anything).

    For the degeneration guard's length rule: a fixed random unit direction u of the residual
    stream is added, at `shift` × the mean input-embedding norm, to the input embedding of
    every trigger token, and the EOS row of the output head gains `strength` × the mean
    output-row norm × u. The residual stream carries the embedding of the token being read up
    to the final norm, so after a trigger the EOS logit dominates, and elsewhere u is one
    random direction among 64 (at the defaults, measured on the demo's teacher: every stop
    follows a trigger). With triggers = ids the model writes but never reads in a prompt (ids
    ≥ 256 for byte-level prompts) it writes one token, then EOS; with a random 1 % of those it
    stops after a variable length, like a model that ends its answers.
    """
    import copy

    clone = copy.deepcopy(model)
    with torch.no_grad():
        embedding = clone.get_input_embeddings().weight
        head = clone.get_output_embeddings().weight
        if head.data_ptr() == embedding.data_ptr():
            raise ValueError("stopping_copy needs an untied output head (tie_word_embeddings=False)")
        generator = torch.Generator().manual_seed(seed)
        u = torch.randn(embedding.shape[1], generator=generator)
        u /= u.norm()
        ids = slice(None) if trigger_ids is None else torch.as_tensor(list(trigger_ids), dtype=torch.long)
        push = shift * embedding.float().norm(dim=1).mean() * u
        embedding[ids] = (embedding[ids].float() + push).to(embedding.dtype)
        eos = clone.config.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        head[eos] = (head[eos].float() + strength * head.float().norm(dim=1).mean() * u).to(head.dtype)
    return clone


# ---- functional copies: other bits, the same function (the fingerprint's attacks) ----


def _norm_gain_is_offset(norm) -> bool:
    """Whether an RMSNorm multiplies by (1 + weight) (Qwen3.5) rather than by weight (Qwen3)."""
    with torch.no_grad():
        out = norm(torch.ones(1, norm.weight.shape[0], dtype=norm.weight.dtype)).float()[0]
    return bool(torch.allclose(out, 1.0 + norm.weight.float(), atol=1e-2)) and not bool(
        torch.allclose(out, norm.weight.float(), atol=1e-2))


def _scale_norm(norm, c: float) -> None:
    w = norm.weight
    gain = (1.0 + w.float()) if _norm_gain_is_offset(norm) else w.float()
    new = gain * c - (1.0 if _norm_gain_is_offset(norm) else 0.0)
    w.copy_(new.to(w.dtype))


def _mlp_inputs(mlp) -> list[torch.Tensor]:
    """The weights an MLP block applies to its (normed) input: all linear in it."""
    names = ("gate_proj", "up_proj", "gate", "shared_expert_gate")
    found = [getattr(mlp, n).weight for n in names if hasattr(mlp, n) and hasattr(getattr(mlp, n), "weight")]
    if hasattr(mlp, "experts"):
        found.append(mlp.experts.gate_up_proj)
    if hasattr(mlp, "shared_expert"):
        found += _mlp_inputs(mlp.shared_expert)
    return found


def rescaled_copy(model, c: float = 1.7):
    """A copy of `model` with every post-attention norm's gain and the final norm's gain
    multiplied by `c`, and the weights that read their output (the MLP's input projections
    and router; the output head) divided by `c`: the same function up to rounding (RMSNorm
    output is linear in its gain, the next layers linear in their input)."""
    import copy

    clone = copy.deepcopy(model)
    with torch.no_grad():
        for layer in clone.get_decoder().layers:
            _scale_norm(layer.post_attention_layernorm, c)
            for w in _mlp_inputs(layer.mlp):
                w.copy_((w.float() / c).to(w.dtype))
        _scale_norm(clone.get_decoder().norm, c)
        head = clone.get_output_embeddings().weight
        head.copy_((head.float() / c).to(head.dtype))
    return clone


def _permute_mlp_neurons(mlp, generator) -> None:
    perm = torch.randperm(mlp.gate_proj.weight.shape[0], generator=generator)
    mlp.gate_proj.weight.copy_(mlp.gate_proj.weight[perm])
    mlp.up_proj.weight.copy_(mlp.up_proj.weight[perm])
    mlp.down_proj.weight.copy_(mlp.down_proj.weight[:, perm])


def _permute_heads(attn, config, generator) -> None:
    """Permute key/value groups, and query heads within each group (plain GQA attention)."""
    n_heads, n_kv = config.num_attention_heads, config.num_key_value_heads
    hd = attn.q_proj.weight.shape[0] // n_heads
    per_group = n_heads // n_kv
    kv_perm = torch.randperm(n_kv, generator=generator)
    q_order = torch.cat([g * per_group + torch.randperm(per_group, generator=generator) for g in kv_perm.tolist()])
    rows = lambda order: (order[:, None] * hd + torch.arange(hd)).reshape(-1)  # noqa: E731
    attn.q_proj.weight.copy_(attn.q_proj.weight[rows(q_order)])
    attn.k_proj.weight.copy_(attn.k_proj.weight[rows(kv_perm)])
    attn.v_proj.weight.copy_(attn.v_proj.weight[rows(kv_perm)])
    attn.o_proj.weight.copy_(attn.o_proj.weight[:, rows(q_order)])


def permuted_copy(model, seed: int = 0):
    """A copy of `model` with, in every layer, its experts permuted (router rows with them),
    the neurons of its dense or shared-expert MLP permuted, and, where the attention is plain
    GQA (q_proj = heads × head_dim: Qwen3, not Qwen3.5's gated attention), its key/value
    groups and the query heads within them permuted: the same function up to the order of
    sums."""
    import copy

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    config = clone.config
    with torch.no_grad():
        for layer in clone.get_decoder().layers:
            mlp = layer.mlp
            if hasattr(mlp, "experts"):
                perm = torch.randperm(mlp.gate.weight.shape[0], generator=generator)
                mlp.gate.weight.copy_(mlp.gate.weight[perm])
                mlp.experts.gate_up_proj.copy_(mlp.experts.gate_up_proj[perm])
                mlp.experts.down_proj.copy_(mlp.experts.down_proj[perm])
                _permute_mlp_neurons(mlp.shared_expert, generator)
            else:
                _permute_mlp_neurons(mlp, generator)
            attn = getattr(layer, "self_attn", None)
            if attn is not None and attn.q_proj.weight.shape[0] == config.num_attention_heads * getattr(attn, "head_dim", -1):
                _permute_heads(attn, config, generator)
    return clone


def fp16_round_trip(model):
    """A copy of `model` saved as float16 and read back in its own dtype (an allowed dtype)."""
    import copy

    clone = copy.deepcopy(model)
    dtype = next(clone.parameters()).dtype
    return clone.to(torch.float16).to(dtype)


def relative_noise_copy(model, seed: int, scale: float = 1e-3):
    """A copy of `model` with every weight w moved to w × (1 + scale × N(0, 1)), in its own dtype."""
    import copy

    clone = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in clone.parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            param.copy_((param.float() * (1.0 + scale * noise)).to(param.dtype))
    return clone
