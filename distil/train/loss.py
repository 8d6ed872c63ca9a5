"""The training loss: the validators' KL at the scored positions, in chunks, with gradients.

For student hidden states h [N, H] at the scored positions, the student's output
projection W [V, H] (+ b), and the teacher's logits t [N, V] (from its cached hidden
states and lm_head), the loss is

    loss = Σ_n w_n · KL_n,   KL_n = KL(p_t ‖ p_s)  (forward, the validators' metric)
                                 or KL(p_s ‖ p_t)  (reverse, on-policy batches)

with p = softmax over the full vocabulary in fp32 and w_n the row weights (1 / (L_i · B)
for a position of prompt i of a batch of B prompts: the batch's validator score).

`ChunkedKL` never holds more than a few [chunk, V] fp32 blocks: block by block, it
computes the KL with the validators' own kernel (`distil.eval.kl.kl_block`) and the
closed-form gradient with respect to the student logits

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
    """Per-row KL of fp32 logit blocks (overwrites the first operand of the direction)."""
    return kl_block(t, s)[0] if direction == FORWARD else kl_block(s, t)[0]


class ChunkedKL(torch.autograd.Function):
    """Σ_n w_n KL_n and the per-row KL [N] (no gradient), chunk by chunk; see the module doc.

    The gradient is computed in the forward pass, block by block, while the block's logits
    exist (as fused linear cross-entropy kernels do): only ∂h [N, H], ∂W [V, H] and ∂b [V]
    are kept for the backward pass, which scales them by the upstream gradient. No block
    is computed twice.
    """

    @staticmethod
    def forward(ctx, s_hidden, s_weight, s_bias, t_hidden, t_weight, t_bias, row_weights, chunk_size, direction):
        if direction not in (FORWARD, REVERSE):
            raise ValueError(f"direction must be {FORWARD!r} or {REVERSE!r}, got {direction!r}")
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = s_bias is not None and ctx.needs_input_grad[2]
        n = s_hidden.shape[0]
        kl = torch.zeros(n, dtype=torch.float32, device=s_hidden.device)
        grad_h = torch.zeros_like(s_hidden) if need_h else None
        grad_w = torch.zeros(s_weight.shape, dtype=torch.float32, device=s_weight.device) if need_w else None
        grad_b = torch.zeros(s_bias.shape, dtype=torch.float32, device=s_bias.device) if need_b else None
        w_rows = row_weights.to(device=s_hidden.device, dtype=torch.float32)
        for a in range(0, n, chunk_size):
            h = s_hidden[a : a + chunk_size]
            t = _logits(t_hidden[a : a + chunk_size], t_weight, t_bias).to(h.device)
            s = _logits(h, s_weight, s_bias)
            if not (need_h or need_w or need_b):
                kl[a : a + chunk_size] = _block_kl(t, s, direction)
                continue
            log_p_s, log_p_t = torch.log_softmax(s, -1), torch.log_softmax(t, -1)
            if direction == FORWARD:
                kl[a : a + chunk_size] = kl_block(t, s)[0]  # the validators' kernel (overwrites t)
                g = log_p_s.exp_().sub_(log_p_t.exp_())  # p_s − p_t
            else:
                p_s = log_p_s.exp()
                block = kl_block(s, t)[0]  # KL(p_s ‖ p_t) (overwrites s)
                kl[a : a + chunk_size] = block
                g = log_p_s.sub_(log_p_t).sub_(block[:, None]).mul_(p_s)
            g.mul_(w_rows[a : a + chunk_size, None])
            if need_h:
                grad_h[a : a + chunk_size] = (g.to(s_weight.dtype) @ s_weight).to(grad_h.dtype)
            if need_w:
                grad_w.addmm_(g.t(), h.to(torch.float32))
            if need_b:
                grad_b.add_(g.sum(0))
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (s_weight.dtype, None if s_bias is None else s_bias.dtype)
        ctx.mark_non_differentiable(kl)
        return (kl * w_rows).sum(), kl

    @staticmethod
    def backward(ctx, grad_loss, _grad_kl):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        scale = lambda g, dtype: None if g is None else (g * grad_loss.to(g.dtype)).to(dtype)  # noqa: E731
        return (scale(grad_h, None if grad_h is None else grad_h.dtype), scale(grad_w, w_dtype), scale(grad_b, b_dtype),
                None, None, None, None, None, None)


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
