"""The memory plan of a round: what must fit on the scoring device, term by term (pure).

A round has two phases that never hold memory at the same time (`engine.run_round`
frees the teacher before the first student loads):

- teacher phase: the teacher's weights; its generation cache for `generation_batch_size`
  sequences of `max_prompt_tokens + max_new_tokens` tokens; the activations of the
  largest step (the batched prefill); the teacher cache being filled.
- student phase: the largest student allowed (`max_params` at the spec's dtype), upcast
  to float32 for its fingerprint (spec v3: 4 bytes per parameter for a moment); the
  teacher cache (final hidden states of every continuation position + the lm_head); the
  activations of one student forward and the KL blocks.

Generation cache of a hybrid model (Qwen3.5: `layer_types`, or every
`full_attention_interval`-th layer full attention): only full-attention layers keep a
key/value cache that grows with the length, 2 × kv_heads × head_dim values per token;
a linear-attention layer keeps a fixed state per sequence: the conv state
(conv_dim × kernel, model dtype) and the recurrent state (v_heads × k_dim × v_dim,
float32, as transformers' and fla's kernels keep it).

Activations are an estimate, stated so it can be checked: per token of the step,
16 hidden-sized vectors (residual, norms, attention in/out, router) plus the MLP's
gate/up/activation (3 × intermediate; for an MoE, top-k experts + the shared expert), in
the model dtype; plus two float32 rows of the vocabulary per sequence (last logits and
the scores of generation). A student's shape is unknown before it is committed: it is
taken as hidden 4096 and MLP 12288 (Qwen3-8B's widths: generous for 5.25B parameters).

Margin: 1 GiB (CUDA context, kernels' workspaces) + 10% of the phase (allocator
fragmentation). The plan needs max(teacher phase, student phase) + margin.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
FIXED_MARGIN = 1 * GIB
MARGIN_FRACTION = 0.10
WARN_FRACTION = 0.90  # a plan above 90% of the memory is a warning
STUDENT_HIDDEN, STUDENT_MLP = 4096, 12288
RECURRENT_STATE_BYTES = 4  # float32


@dataclass(frozen=True)
class CacheShape:
    """What the generation cache and the activations need from a model config."""

    hidden: int
    full_attention_layers: int
    kv_heads: int
    head_dim: int
    linear_layers: int = 0
    conv_dim: int = 0
    conv_kernel: int = 0
    linear_v_heads: int = 0
    linear_k_dim: int = 0
    linear_v_dim: int = 0
    mlp_per_token: int = 0  # intermediate width a token passes through (top-k experts + shared)


def cache_shape(config) -> CacheShape:
    """The shape of a (text) config; hybrid layers read from `layer_types` or `full_attention_interval`."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = int(text.num_hidden_layers)
    types = list(getattr(text, "layer_types", None) or [])
    if not types:
        interval = getattr(text, "full_attention_interval", None)
        types = [("full_attention" if interval is None or (i + 1) % int(interval) == 0 else "linear_attention")
                 for i in range(n)]
    linear = sum(t == "linear_attention" for t in types)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    k_heads = int(getattr(text, "linear_num_key_heads", 0) or 0)
    k_dim = int(getattr(text, "linear_key_head_dim", 0) or 0)
    v_heads = int(getattr(text, "linear_num_value_heads", 0) or 0)
    v_dim = int(getattr(text, "linear_value_head_dim", 0) or 0)
    experts = getattr(text, "num_experts", None)
    if experts:
        mlp = int(text.num_experts_per_tok) * int(text.moe_intermediate_size) + int(
            getattr(text, "shared_expert_intermediate_size", 0) or 0)
    else:
        mlp = int(getattr(text, "intermediate_size", 0) or 0)
    return CacheShape(
        hidden=int(text.hidden_size), full_attention_layers=n - linear,
        kv_heads=int(getattr(text, "num_key_value_heads", None) or heads), head_dim=head_dim,
        linear_layers=linear, conv_dim=2 * k_heads * k_dim + v_heads * v_dim,
        conv_kernel=int(getattr(text, "linear_conv_kernel_dim", 0) or 0),
        linear_v_heads=v_heads, linear_k_dim=k_dim, linear_v_dim=v_dim, mlp_per_token=mlp,
    )


def generation_cache_bytes(shape: CacheShape, batch: int, tokens: int, dtype_bytes: int) -> int:
    """KV cache of the full-attention layers + the fixed state of the linear-attention layers."""
    kv = shape.full_attention_layers * 2 * shape.kv_heads * shape.head_dim * batch * tokens * dtype_bytes
    conv = shape.conv_dim * shape.conv_kernel * dtype_bytes
    recurrent = shape.linear_v_heads * shape.linear_k_dim * shape.linear_v_dim * RECURRENT_STATE_BYTES
    return kv + shape.linear_layers * batch * (conv + recurrent)


def activation_bytes(tokens: int, hidden: int, mlp: int, dtype_bytes: int) -> int:
    return tokens * (16 * hidden + 3 * mlp) * dtype_bytes


@dataclass(frozen=True)
class PlanInputs:
    teacher_weight_bytes: int  # at the spec dtype, the tensors the causal LM keeps
    teacher: CacheShape
    vocab: int
    dtype_bytes: int  # the spec's compute dtype
    n_prompts: int
    max_prompt_tokens: int
    max_new_tokens: int
    generation_batch_size: int
    chunk_size: int
    own_logits_chunk: int
    max_student_params: int


@dataclass(frozen=True)
class MemoryPlan:
    teacher_phase: tuple[tuple[str, int], ...]
    student_phase: tuple[tuple[str, int], ...]

    @staticmethod
    def _sum(terms) -> int:
        return sum(b for _, b in terms)

    @property
    def peak_phase(self) -> str:
        return "teacher" if self._sum(self.teacher_phase) >= self._sum(self.student_phase) else "student"

    @property
    def peak_bytes(self) -> int:
        return max(self._sum(self.teacher_phase), self._sum(self.student_phase))

    @property
    def margin_bytes(self) -> int:
        return FIXED_MARGIN + int(MARGIN_FRACTION * self.peak_bytes)

    @property
    def need_bytes(self) -> int:
        return self.peak_bytes + self.margin_bytes

    def describe(self) -> str:
        def phase(terms):
            return " + ".join(f"{name} {b / GIB:.2f}" for name, b in terms) + f" = {self._sum(terms) / GIB:.2f}"

        return (f"teacher phase: {phase(self.teacher_phase)} GiB; student phase: {phase(self.student_phase)} GiB; "
                f"need max({self.peak_phase} phase) + margin {self.margin_bytes / GIB:.2f} "
                f"(1 GiB + 10%) = {self.need_bytes / GIB:.2f} GiB")


def plan_memory(p: PlanInputs) -> MemoryPlan:
    tokens = p.max_prompt_tokens + p.max_new_tokens
    teacher_cache = p.n_prompts * p.max_new_tokens * p.teacher.hidden * p.dtype_bytes
    lm_head = p.vocab * p.teacher.hidden * p.dtype_bytes
    vocab_rows = 2 * p.generation_batch_size * p.vocab * 4
    teacher = (
        ("teacher weights", p.teacher_weight_bytes),
        ("generation cache", generation_cache_bytes(p.teacher, p.generation_batch_size, tokens, p.dtype_bytes)),
        ("activations", activation_bytes(p.generation_batch_size * p.max_prompt_tokens, p.teacher.hidden,
                                         p.teacher.mlp_per_token, p.dtype_bytes) + vocab_rows),
        ("teacher cache", teacher_cache),
    )
    kl_rows = (3 * p.chunk_size + 2 * p.own_logits_chunk) * p.vocab * 4  # float32 KL blocks, own-logits chunks
    student = (
        ("student weights", p.max_student_params * p.dtype_bytes),
        # spec v3's fingerprint: the student upcast to float32 in place for one short forward
        ("fingerprint upcast", p.max_student_params * max(0, 4 - p.dtype_bytes)),
        ("teacher cache", teacher_cache + lm_head),
        ("activations", activation_bytes(tokens, STUDENT_HIDDEN, STUDENT_MLP, p.dtype_bytes) + kl_rows),
    )
    return MemoryPlan(teacher, student)


@dataclass(frozen=True)
class Verdict:
    level: str  # "ok", "warn" or "refuse"
    message: str


def judge_memory(plan: MemoryPlan, total_bytes: int, where: str, enforce: bool) -> Verdict:
    """Refuse (when `enforce`) a plan above the memory; warn above 90% of it."""
    need, total = plan.need_bytes, total_bytes
    text = f"memory plan needs {need / GIB:.2f} GiB, {where} has {total / GIB:.2f} GiB"
    if need > total:
        if enforce:
            return Verdict("refuse", f"{text}: it does not fit ({plan.peak_phase} phase is the larger)")
        return Verdict("warn", f"{text}: it may not fit (host memory: not enforced, the OS may swap)")
    if need > WARN_FRACTION * total:
        return Verdict("warn", f"{text}: within 10% of the limit")
    return Verdict("ok", text)


def judge_disk(free_bytes: int, need_bytes: int, where: str, reason: str) -> Verdict:
    text = f"model cache {where}: {free_bytes / GIB:.1f} GiB free, {need_bytes / GIB:.1f} GiB needed ({reason})"
    return Verdict("refuse" if free_bytes < need_bytes else "ok", text)
