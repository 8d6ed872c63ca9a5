"""The KL kernel: forward KL(teacher ‖ student) over the full vocabulary, in row blocks.

For one position with teacher logits t ∈ R^V and student logits s ∈ R^V (fp32):

    KL = Σ_v p_t(v) · (log p_t(v) − log p_s(v)),   p_t = softmax(t)
       = Σ_v p_t(v) · ((t_v − s_v) − (lse(t) − lse(s)))

evaluated in a centred form whose error scales with the KL itself, see `kl_block`.
Top-1 agreement is `argmax t == argmax s` (first index on ties).

Positions are processed `chunk_size` rows at a time, so at most a few [chunk, V] fp32
blocks live at once and [T, V] logits are never materialised. From hidden states, each
block's logits are `h @ W.T (+ b)` in the weights' dtype (bf16 on GPU: exactly what the
model's own `lm_head` returns) and upcast to fp32 before any softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Head:
    """An output projection: logits = hidden @ weight.T + bias. weight [V, H], bias [V] or None."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[n, H] → [n, V] in the weight's dtype."""
        return F.linear(hidden.to(self.weight.dtype), self.weight, self.bias)


def kl_block(t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row KL and top-1 agreement of fp32 logit blocks t, s [n, V]. OVERWRITES t and s.

    With max-shifted logits t' = t − max t, s' = s − max s, d = t' − s', e = exp(t'),
    Z_t = Σ e, Z_s = Σ exp(s'), p = e / Z_t and d̄ = Σ p·d:

        KL = Σ p·d − log Z_t + log Z_s                 (direct)
           = log(Σ p·exp(d̄ − d)) = log1p(Σ p·expm1(d̄ − d))   (centred)

    The direct form is a difference of O(log V) terms: ~1e-7·log V absolute error, i.e.
    ~1% on the KL ≈ 1e-5 of a near-copy. The centred form subtracts the p-mean of d
    first, so its error scales with the KL itself (~1e-5 relative at KL 1e-5); it is
    used wherever it is finite (expm1 can overflow where the student's log-probability
    exceeds the teacher's by > 88 nats; the direct form, exact enough for such large
    KLs, is kept there). All sums over the vocabulary go through torch's cascade
    summation (`sum`, `vecdot`): on CPU a BLAS fp32 dot (`bmm`) was measured 4e-4 off,
    and torch's fp32 `logsumexp` / `log_softmax` ~1e-5 off.
    Returns (kl [n] fp32, agree [n] bool); costs three [n, V] fp32 buffers (t, s, d).
    """
    m_t, i_t = t.max(-1, keepdim=True)
    m_s, i_s = s.max(-1, keepdim=True)
    d = t.sub_(m_t) - s.sub_(m_s)  # t ← t', s ← s', d = t' − s'
    log_z_s = s.exp_().sum(-1, keepdim=True).log()
    z_t = t.exp_().sum(-1, keepdim=True)  # t ← e
    d_mean = torch.linalg.vecdot(t, d).view(-1, 1) / z_t
    direct = d_mean - z_t.log() + log_z_s
    torch.sub(d_mean, d, out=d).expm1_()  # d ← expm1(d̄ − d)
    centred = torch.log1p(torch.linalg.vecdot(t, d).view(-1, 1) / z_t)
    kl = torch.where(torch.isfinite(centred), centred, direct)
    return kl.view(-1), (i_t == i_s).view(-1)


def _kl_block_pure(t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-place twin of `kl_block` for `torch.compile` (same formulas; inputs any float dtype)."""
    t = t.float()
    s = s.float()
    m_t, i_t = t.max(-1, keepdim=True)
    m_s, i_s = s.max(-1, keepdim=True)
    t = t - m_t
    s = s - m_s
    d = t - s
    e = torch.exp(t)
    z_t = e.sum(-1, keepdim=True)
    d_mean = (e * d).sum(-1, keepdim=True) / z_t
    direct = d_mean - z_t.log() + torch.exp(s).sum(-1, keepdim=True).log()
    centred = torch.log1p((e * torch.expm1(d_mean - d)).sum(-1, keepdim=True) / z_t)
    kl = torch.where(torch.isfinite(centred), centred, direct)
    return kl.view(-1), (i_t == i_s).view(-1)


_compiled = None


def compiled_kl_block():
    """`torch.compile` of the pure block function (compiled once per process, lazily)."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_kl_block_pure, dynamic=True)
    return _compiled


def _block(t: torch.Tensor, s: torch.Tensor, compile: bool):
    if compile:
        return compiled_kl_block()(t, s)
    # .float() copies bf16/fp16 input; fp32 input must be copied too since kl_block overwrites it.
    t32 = t.float() if t.dtype != torch.float32 else t.clone()
    s32 = s.float() if s.dtype != torch.float32 else s.clone()
    return kl_block(t32, s32)


def kl_from_logits(t_logits: torch.Tensor, s_logits: torch.Tensor, chunk_size: int = 32,
                   compile: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(t ‖ s) per row of logits [T, V] (any float dtype; inputs untouched), chunk by chunk.

    Returns (kl [T] fp32, agree [T] bool) on the logits' device.
    """
    if t_logits.shape != s_logits.shape or t_logits.dim() != 2:
        raise ValueError(f"logits must both be [T, V], got {tuple(t_logits.shape)} and {tuple(s_logits.shape)}")
    kls, agrees = [], []
    for a in range(0, t_logits.shape[0], chunk_size):
        kl, agree = _block(t_logits[a : a + chunk_size], s_logits[a : a + chunk_size], compile)
        kls.append(kl)
        agrees.append(agree)
    return _cat(kls, agrees, t_logits.device)


def kl_from_hidden(t_hidden: torch.Tensor, t_head: Head, s_hidden: torch.Tensor, s_head: Head,
                   chunk_size: int = 32, compile: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(teacher ‖ student) per position from final hidden states, never materialising [T, V].

    t_hidden [T, Ht] and s_hidden [T, Hs] are the inputs of the two `lm_head`s at the same
    positions; each block's logits are t_head.logits(t_hidden[a:b]) and
    s_head.logits(s_hidden[a:b]), [chunk, V] each. Returns (kl [T] fp32, agree [T] bool).
    """
    if t_hidden.shape[0] != s_hidden.shape[0]:
        raise ValueError(f"teacher has {t_hidden.shape[0]} positions, student {s_hidden.shape[0]}")
    if t_head.weight.shape[0] != s_head.weight.shape[0]:
        raise ValueError(f"vocabulary sizes differ: teacher {t_head.weight.shape[0]}, student {s_head.weight.shape[0]}")
    kls, agrees = [], []
    for a in range(0, t_hidden.shape[0], chunk_size):
        t = t_head.logits(t_hidden[a : a + chunk_size])
        s = s_head.logits(s_hidden[a : a + chunk_size].to(s_head.weight.device))
        kl, agree = _block(t, s, compile) if compile else kl_block(t.float(), s.float())
        kls.append(kl)
        agrees.append(agree)
    return _cat(kls, agrees, t_hidden.device)


def _cat(kls, agrees, device):
    if not kls:
        return torch.zeros(0, device=device), torch.zeros(0, dtype=torch.bool, device=device)
    return torch.cat(kls).float(), torch.cat(agrees)


def kl_naive(t_logits: torch.Tensor, s_logits: torch.Tensor) -> torch.Tensor:
    """The naive reference: upcast the full [T, V] tensors, log_softmax, kl_div. Returns kl [T]."""
    log_p_t = torch.log_softmax(t_logits.float(), -1)
    log_p_s = torch.log_softmax(s_logits.float(), -1)
    return F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(-1)
