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

    def logits_into(self, hidden: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The logits of hidden [n, H], computed in the weight's dtype and upcast into the
        fp32 buffer `out` [n, V] (fp32 weights write there directly: no allocation)."""
        if self.weight.dtype == torch.float32:
            torch.mm(hidden.to(torch.float32), self.weight.t(), out=out)
            return out if self.bias is None else out.add_(self.bias)
        return out.copy_(self.logits(hidden))


def kl_block(t: torch.Tensor, s: torch.Tensor, work: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row KL and top-1 agreement of fp32 logit blocks t, s [n, V]. OVERWRITES t (not s).

    With e = exp(t − max t), Z_t = Σ e, p = e / Z_t, d = t − s and d̄ = Σ p·d:

        KL = log Σ p·exp(d̄ − d) = log1p(Σ p·expm1(d̄ − d))          (centred form)

    since Σ p·exp(−d) = Z_s / Z_t. Centring on d̄ makes every term small when the models
    are close, so the error scales with the KL itself (1e-5 relative at KL 1e-5), where
    the textbook Σ p·d − lse(t) + lse(s) is a difference of O(log V) numbers (~1e-6
    absolute: 10% at KL 1e-5). Where expm1 overflows (the student's log-probability above
    the teacher's by > ~88 nats somewhere, so the KL is huge anyway) that row takes the
    direct form. All sums over the vocabulary use torch's cascade summation (`sum`,
    `vecdot`): on CPU a BLAS fp32 dot (`bmm`) was measured 4e-4 off and fp32
    `logsumexp` / `log_softmax` ~1e-5 off. Top-1 agreement: first-index argmax of t and s
    are equal. Returns (kl [n] fp32, agree [n] bool). `work` is an optional fp32 [n, V]
    scratch buffer (else one is allocated): callers reuse it, and their t and s buffers,
    across blocks, so a CPU round does not grow the heap (glibc keeps freed 16-32 MB blocks).
    """
    m_t, i_t = t.max(-1, keepdim=True)
    i_s = s.argmax(-1, keepdim=True)
    d = torch.sub(t, s, out=work) if work is not None else t - s
    e = torch.sub(t, m_t, out=t).exp_()  # t ← e
    z_t = e.sum(-1, keepdim=True)
    d_mean = torch.linalg.vecdot(e, d).view(-1, 1) / z_t
    w = torch.sub(d_mean, d, out=d).expm1_()  # d ← expm1(d̄ − d)
    kl = torch.log1p(torch.linalg.vecdot(e, w).view(-1, 1) / z_t)
    bad = ~torch.isfinite(kl.view(-1))
    if bad.any():
        m_s = s[bad].amax(-1, keepdim=True)
        lse_s = m_s + (s[bad] - m_s).exp().sum(-1, keepdim=True).log()
        kl[bad] = d_mean[bad] - (m_t[bad] + z_t[bad].log()) + lse_s
    return kl.view(-1), (i_t == i_s).view(-1)


def _kl_block_pure(t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-place twin of `kl_block` for `torch.compile` (centred form only, inputs any float dtype)."""
    t = t.float()
    s = s.float()
    m_t, i_t = t.max(-1, keepdim=True)
    i_s = s.argmax(-1, keepdim=True)
    d = t - s
    e = torch.exp(t - m_t)
    z_t = e.sum(-1, keepdim=True)
    d_mean = (e * d).sum(-1, keepdim=True) / z_t
    kl = torch.log1p((e * torch.expm1(d_mean - d)).sum(-1, keepdim=True) / z_t)
    return kl.view(-1), (i_t == i_s).view(-1)


_compiled = None


def compiled_kl_block():
    """`torch.compile` of the pure block function (compiled once per process, lazily)."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_kl_block_pure, dynamic=True)
    return _compiled


def _buffers(rows: int, vocab: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.empty(rows, vocab, dtype=torch.float32, device=device) for _ in range(3))


def kl_from_logits(t_logits: torch.Tensor, s_logits: torch.Tensor, chunk_size: int = 32,
                   compile: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(t ‖ s) per row of logits [T, V] (any float dtype; inputs untouched), chunk by chunk.

    Each block is upcast into reused fp32 buffers [chunk_size, V]. Returns
    (kl [T] fp32, agree [T] bool) on the logits' device.
    """
    if t_logits.shape != s_logits.shape or t_logits.dim() != 2:
        raise ValueError(f"logits must both be [T, V], got {tuple(t_logits.shape)} and {tuple(s_logits.shape)}")
    kls, agrees = [], []
    if compile:
        for a in range(0, t_logits.shape[0], chunk_size):
            kl, agree = compiled_kl_block()(t_logits[a : a + chunk_size], s_logits[a : a + chunk_size])
            kls.append(kl)
            agrees.append(agree)
        return _cat(kls, agrees, t_logits.device)
    t_buf, s_buf, work = _buffers(min(chunk_size, t_logits.shape[0]), t_logits.shape[1], t_logits.device)
    for a in range(0, t_logits.shape[0], chunk_size):
        n = min(chunk_size, t_logits.shape[0] - a)
        t_buf[:n].copy_(t_logits[a : a + n])
        s_buf[:n].copy_(s_logits[a : a + n])
        kl, agree = kl_block(t_buf[:n], s_buf[:n], work[:n])
        kls.append(kl)
        agrees.append(agree)
    return _cat(kls, agrees, t_logits.device)


def kl_from_hidden(t_hidden: torch.Tensor, t_head: Head, s_hidden: torch.Tensor, s_head: Head,
                   chunk_size: int = 32, compile: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(teacher ‖ student) per position from final hidden states, never materialising [T, V].

    t_hidden [T, Ht] and s_hidden [T, Hs] are the inputs of the two `lm_head`s at the same
    positions; each block's logits are t_head.logits(t_hidden[a:b]) and
    s_head.logits(s_hidden[a:b]), [chunk, V] each, computed in the heads' dtype and
    upcast into reused fp32 buffers. Returns (kl [T] fp32, agree [T] bool).
    """
    if t_hidden.shape[0] != s_hidden.shape[0]:
        raise ValueError(f"teacher has {t_hidden.shape[0]} positions, student {s_hidden.shape[0]}")
    if t_head.weight.shape[0] != s_head.weight.shape[0]:
        raise ValueError(f"vocabulary sizes differ: teacher {t_head.weight.shape[0]}, student {s_head.weight.shape[0]}")
    T, V = t_hidden.shape[0], t_head.weight.shape[0]
    kls, agrees = [], []
    if T == 0:
        return _cat(kls, agrees, t_hidden.device)
    t_buf, s_buf, work = _buffers(min(chunk_size, T), V, t_head.weight.device)
    for a in range(0, T, chunk_size):
        n = min(chunk_size, T - a)
        t = t_head.logits_into(t_hidden[a : a + n], t_buf[:n])
        s = s_head.logits_into(s_hidden[a : a + n].to(s_head.weight.device), s_buf[:n])
        kl, agree = compiled_kl_block()(t, s) if compile else kl_block(t, s, work[:n])
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
