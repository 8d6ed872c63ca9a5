"""Physical limits of a round's work on one device (pure arithmetic, for `bench gpu`).

Weight census (`WeightCensus`, bytes as loaded): input embedding (only the rows of the
batch's tokens are read: not counted as read), lm_head, routed experts (names with
`.experts.`; per layer `n_experts` experts of equal size), and everything else (`dense`:
attention, linear attention, shared experts, routers, norms).

Generation, per batch of b sequences (prompt P tokens, N new tokens):
- prefill: compute-bound, 2 × active_params × b × P FLOPs / peak;
- each of the N decode steps: max(bytes / bandwidth, 2 × active_params × b / peak), with
  bytes = dense + lm_head + moe_layers × touched(b) × expert_bytes
          + KV read (full-attention layers, b × (P + N/2) tokens on average)
          + 2 × linear-attention state (read and written),
  touched(b) = E × (1 − (1 − k/E)^b): the expected number of distinct experts that b
  tokens with k of E experts each select (uniform routing; b = 1 → k).
active_params = dense + lm_head + moe_layers × k × expert_params (per token).

Teacher forward (hidden states, one prompt of T = P + L − 1 tokens at a time): per prompt
max(2 × active_nonhead × T / peak, (dense + all experts) bytes / bandwidth).
Each student, per prompt: forward max(2 × params_nonembed_nonhead × T / peak,
weight bytes / bandwidth) + KL: 2 × V × (H_teacher + H_student) × L / peak (the two
lm_head projections; the reduction itself is memory-light).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# name fragment → (memory bandwidth bytes/s, dense bf16 FLOP/s), vendors' datasheets.
DEVICE_PEAKS = (
    ("H200", 4.8e12, 989e12),
    ("H100 PCIe", 2.0e12, 756e12),
    ("H100 NVL", 3.9e12, 835e12),
    ("H100", 3.35e12, 989e12),  # SXM
    ("GH200", 4.0e12, 989e12),
    ("B200", 8.0e12, 2250e12),
    ("A100-SXM4-80GB", 2.039e12, 312e12),
    ("A100 80GB PCIe", 1.935e12, 312e12),
    ("A100", 1.555e12, 312e12),  # 40 GB
    ("L40S", 0.864e12, 362e12),
    ("A10G", 0.6e12, 70e12),
)


def device_peaks(name: str) -> tuple[float, float] | None:
    for fragment, bandwidth, flops in DEVICE_PEAKS:
        if fragment.lower() in name.lower():
            return bandwidth, flops
    return None


@dataclass(frozen=True)
class WeightCensus:
    bytes_per_param: int
    embed_params: int
    head_params: int
    expert_params: int  # all routed experts of all layers
    dense_params: int  # everything else
    moe_layers: int = 0
    n_experts: int = 0
    top_k: int = 0
    hidden: int = 0
    full_attention_layers: int = 0
    kv_width: int = 0  # 2 × kv_heads × head_dim per token per full-attention layer
    linear_layers: int = 0
    linear_state_bytes: int = 0  # per sequence per linear-attention layer

    @property
    def expert_params_each(self) -> float:
        return self.expert_params / (self.moe_layers * self.n_experts) if self.moe_layers else 0.0

    def active_params(self, with_head: bool = True) -> float:
        return self.dense_params + (self.head_params if with_head else 0) + self.moe_layers * self.top_k * self.expert_params_each

    def touched_experts(self, batch: int) -> float:
        if not self.n_experts:
            return 0.0
        return self.n_experts * (1 - (1 - self.top_k / self.n_experts) ** batch)

    def decode_step_bytes(self, batch: int, context: float) -> float:
        b = self.bytes_per_param
        weights = (self.dense_params + self.head_params + self.moe_layers * self.touched_experts(batch) * self.expert_params_each) * b
        kv = self.full_attention_layers * self.kv_width * batch * context * b
        state = 2 * self.linear_layers * batch * self.linear_state_bytes
        return weights + kv + state

    def to_dict(self) -> dict:
        return asdict(self)


def generation_limit(c: WeightCensus, batches: list[int], prompt: int, new: int, bandwidth: float, flops: float) -> float:
    total = 0.0
    for b in batches:
        total += 2 * c.active_params(with_head=False) * b * prompt / flops
        step = max(c.decode_step_bytes(b, prompt + new / 2) / bandwidth, 2 * c.active_params() * b / flops)
        total += new * step
    return total


def teacher_forward_limit(c: WeightCensus, lengths: list[int], bandwidth: float, flops: float) -> float:
    weights = (c.dense_params + c.expert_params) * c.bytes_per_param
    return sum(max(2 * c.active_params(with_head=False) * t / flops, weights / bandwidth) for t in lengths)


def student_limit(s: WeightCensus, teacher_hidden: int, vocab: int, lengths: list[int], scored: list[int],
                  bandwidth: float, flops: float) -> float:
    body = s.dense_params + s.expert_params
    weights = (body + s.head_params) * s.bytes_per_param
    forward = sum(max(2 * body * t / flops, weights / bandwidth) for t in lengths)
    kl = sum(2 * vocab * (teacher_hidden + s.hidden) * n / flops for n in scored)
    return forward + kl
