"""The training loss: the validators' KL at the scored positions, in chunks, with gradients.

For student hidden states h [N, H] at the scored positions, the student's output
projection W [V, H] (+ b), and the teacher's logits t [N, V] (from its cached hidden
states and lm_head), the loss is

    loss = Σ_n w_n · KL_n,   KL_n = KL(p_t ‖ p_s)  (forward, the validators' metric)
                                 or KL(p_s ‖ p_t)  (reverse, on-policy batches)

with p = softmax over the full vocabulary in fp32 and w_n the row weights (1 / (L_i · B)
for a position of prompt i of a batch of B prompts: the batch's validator score).

`ChunkedKL` never holds more than a few [chunk, V] fp32 blocks: the forward pass keeps
only (h, W, teacher hidden, teacher head) and computes KL block by block with the
validators' own kernel (`distil.eval.kl.kl_block`); the backward pass recomputes each
block's logits and applies the closed-form gradient with respect to the student logits

    forward KL:  ∂KL_n/∂s = p_s − p_t
    reverse KL:  ∂KL_n/∂s = p_s ⊙ (log p_s − log p_t − KL_n)

then ∂h = g W, ∂W = gᵀ h, ∂b = Σ g, accumulated in fp32. The naive loss (full [N, V]
logits, `log_softmax`, autograd) is `naive_kl_loss`, the reference of the tests and the
benchmark.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distil.eval.kl import kl_block

FORWARD, REVERSE = "forward", "reverse"


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """fp32 logits of a block, computed in the weight's dtype (what the model's lm_head does)."""
    return F.linear(hidden.to(weight.dtype), weight, bias).float()


def _block_kl(t: torch.Tensor, s: torch.Tensor, direction: str) -> torch.Tensor:
    """Per-row KL of fp32 logit blocks (inputs untouched)."""
    if direction == FORWARD:
        return kl_block(t.clone(), s)[0]
    return kl_block(s.clone(), t)[0]


class ChunkedKL(torch.autograd.Function):
    """Σ_n w_n KL_n and the per-row KL [N] (no gradient), chunk by chunk; see the module doc."""

    @staticmethod
    def forward(ctx, s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias, row_weights, chunk_size, direction):
        if direction not in (FORWARD, REVERSE):
            raise ValueError(f"direction must be {FORWARD!r} or {REVERSE!r}, got {direction!r}")
        n = s_hidden.shape[0]
        kl = torch.zeros(n, dtype=torch.float32, device=s_hidden.device)
        with torch.no_grad():
            for a in range(0, n, chunk_size):
                t = _logits(t_hidden[a : a + chunk_size], t_weight, t_bias).to(s_hidden.device)
                s = _logits(s_hidden[a : a + chunk_size], s_weight, s_bias)
                kl[a : a + chunk_size] = _block_kl(t, s, direction)
        ctx.save_for_backward(s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias, row_weights, kl)
        ctx.chunk_size, ctx.direction = chunk_size, direction
        ctx.mark_non_differentiable(kl)
        return (kl * row_weights.to(kl.device)).sum(), kl

    @staticmethod
    def backward(ctx, grad_loss, _grad_kl):
        s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias, row_weights, kl = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], s_bias is not None and ctx.needs_input_grad[2]
        grad_h = torch.zeros_like(s_hidden) if need_h else None
        grad_w = torch.zeros(s_weight.shape, dtype=torch.float32, device=s_weight.device) if need_w else None
        grad_b = torch.zeros(s_bias.shape, dtype=torch.float32, device=s_bias.device) if need_b else None
        w_rows = row_weights.to(device=s_hidden.device, dtype=torch.float32) * grad_loss.float()
        size = ctx.chunk_size
        with torch.no_grad():
            for a in range(0, s_hidden.shape[0], size):
                h = s_hidden[a : a + size]
                log_p_s = torch.log_softmax(_logits(h, s_weight, s_bias), -1)
                log_p_t = torch.log_softmax(_logits(t_hidden[a : a + size], t_weight, t_bias).to(h.device), -1)
                p_s = log_p_s.exp()
                if ctx.direction == FORWARD:
                    g = p_s.sub_(log_p_t.exp_())
                else:
                    g = log_p_s.sub_(log_p_t).sub_(kl[a : a + size, None]).mul_(p_s)
                g.mul_(w_rows[a : a + size, None])
                if need_h:
                    grad_h[a : a + size] = (g.to(s_weight.dtype) @ s_weight).to(grad_h.dtype)
                if need_w:
                    grad_w.addmm_(g.t(), h.to(torch.float32))
                if need_b:
                    grad_b.add_(g.sum(0))
        grad_w = grad_w.to(s_weight.dtype) if need_w else None
        grad_b = grad_b.to(s_bias.dtype) if need_b else None
        return grad_h, grad_w, grad_b, None, None, None, None, None, None


def chunked_kl_loss(s_hidden: torch.Tensor, s_weight: torch.Tensor, s_bias: torch.Tensor | None,
                    t_hidden: torch.Tensor, t_weight: torch.Tensor, t_bias: torch.Tensor | None,
                    row_weights: torch.Tensor, chunk_size: int = 32,
                    direction: str = FORWARD) -> tuple[torch.Tensor, torch.Tensor]:
    """(Σ w_n KL_n, KL [N] detached): gradients reach s_hidden, s_weight and s_bias only."""
    if s_hidden.shape[0] != t_hidden.shape[0] or row_weights.shape != (s_hidden.shape[0],):
        raise ValueError(f"rows differ: student {s_hidden.shape[0]}, teacher {t_hidden.shape[0]}, "
                         f"weights {tuple(row_weights.shape)}")
    if s_weight.shape[0] != t_weight.shape[0]:
        raise ValueError(f"vocabulary sizes differ: teacher {t_weight.shape[0]}, student {s_weight.shape[0]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return ChunkedKL.apply(s_hidden, s_weight, s_bias, t_hidden.detach(), t_weight.detach(),
                           None if t_bias is None else t_bias.detach(), row_weights.detach(), chunk_size, direction)


def naive_kl_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, row_weights: torch.Tensor,
                  direction: str = FORWARD) -> tuple[torch.Tensor, torch.Tensor]:
    """The same loss from full [N, V] logits with autograd (the reference; O(N·V) memory)."""
    log_p_s = torch.log_softmax(s_logits.float(), -1)
    log_p_t = torch.log_softmax(t_logits.float(), -1)
    if direction == FORWARD:
        kl = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(-1)
    else:
        kl = F.kl_div(log_p_t, log_p_s, reduction="none", log_target=True).sum(-1)
    return (kl * row_weights).sum(), kl.detach()
