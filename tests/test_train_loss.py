"""The chunked training loss against a float64 full-logits autograd reference: value and
gradients (hidden, lm_head weight, bias), both KL directions, chunk sizes that do and do
not divide the rows."""

from __future__ import annotations

import pytest
import torch

from distil.train.loss import FORWARD, REVERSE, chunked_kl_loss, naive_kl_loss


def _case(n=13, h=16, ht=24, v=997, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    s_hidden = torch.randn(n, h, generator=g)
    s_weight = torch.randn(v, h, generator=g) * 0.7
    s_bias = torch.randn(v, generator=g) * 0.3 if bias else None
    t_hidden = torch.randn(n, ht, generator=g)
    t_weight = torch.randn(v, ht, generator=g) * 0.7
    weights = torch.rand(n, generator=g) + 0.1
    return s_hidden, s_weight, s_bias, t_hidden, t_weight, weights


def _reference(s_hidden, s_weight, s_bias, t_hidden, t_weight, weights, direction):
    """float64, full logits, torch autograd: shares only `naive_kl_loss`'s formula, in another dtype."""
    leaves = [x.double().requires_grad_() if x is not None else None for x in (s_hidden, s_weight, s_bias)]
    h, w, b = leaves
    s_logits = h @ w.t() + (b if b is not None else 0)
    t_logits = t_hidden.double() @ t_weight.double().t()
    log_p_s, log_p_t = torch.log_softmax(s_logits, -1), torch.log_softmax(t_logits, -1)
    if direction == FORWARD:
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    else:
        kl = (log_p_s.exp() * (log_p_s - log_p_t)).sum(-1)
    loss = (kl * weights.double()).sum()
    loss.backward()
    return loss.detach(), kl.detach(), [x.grad if x is not None else None for x in leaves]


@pytest.mark.parametrize("direction", [FORWARD, REVERSE])
@pytest.mark.parametrize("chunk_size,bias", [(4, False), (13, True), (5, True), (32, False)])
def test_value_and_gradients_match_float64(direction, chunk_size, bias):
    s_hidden, s_weight, s_bias, t_hidden, t_weight, weights = _case(bias=bias)
    ref_loss, ref_kl, ref_grads = _reference(s_hidden, s_weight, s_bias, t_hidden, t_weight, weights, direction)
    leaves = [x.clone().requires_grad_() if x is not None else None for x in (s_hidden, s_weight, s_bias)]
    loss, kl = chunked_kl_loss(leaves[0], leaves[1], leaves[2], t_hidden, t_weight, None, weights, chunk_size, direction)
    loss.backward()
    assert ref_loss > 0.5  # the case is far from trivial
    torch.testing.assert_close(loss.double(), ref_loss, rtol=2e-5, atol=0)
    torch.testing.assert_close(kl.double(), ref_kl, rtol=2e-5, atol=1e-7)
    for mine, ref in zip(leaves, ref_grads):
        if mine is None:
            continue
        scale = float(ref.abs().max())
        assert scale > 1e-3
        torch.testing.assert_close(mine.grad.double(), ref, rtol=0, atol=2e-5 * scale)


def test_naive_loss_agrees_and_upstream_gradient_scales():
    s_hidden, s_weight, _, t_hidden, t_weight, weights = _case(seed=3)
    h1 = s_hidden.clone().requires_grad_()
    loss, _ = chunked_kl_loss(h1, s_weight, None, t_hidden, t_weight, None, weights, 4)
    (3.0 * loss).backward()
    h2 = s_hidden.clone().requires_grad_()
    naive, _ = naive_kl_loss(h2 @ s_weight.t(), t_hidden @ t_weight.t(), weights)
    (3.0 * naive).backward()
    torch.testing.assert_close(loss, naive, rtol=1e-5, atol=0)
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-4, atol=1e-6)


def test_identical_models_have_zero_loss_and_zero_gradient():
    s_hidden, s_weight, _, _, _, weights = _case(seed=4)
    h = s_hidden.clone().requires_grad_()
    loss, kl = chunked_kl_loss(h, s_weight, None, s_hidden, s_weight, None, weights, 6, REVERSE)
    loss.backward()
    assert float(kl.abs().max()) < 1e-6 and float(h.grad.abs().max()) < 1e-6


def test_mismatched_inputs_are_refused():
    s_hidden, s_weight, _, t_hidden, t_weight, weights = _case()
    with pytest.raises(ValueError, match="vocabulary sizes differ"):
        chunked_kl_loss(s_hidden, s_weight[:-1], None, t_hidden, t_weight, None, weights)
    with pytest.raises(ValueError, match="rows differ"):
        chunked_kl_loss(s_hidden[:-1], s_weight, None, t_hidden, t_weight, None, weights[:-1].clone()[:-1])
    with pytest.raises(ValueError, match="direction"):
        chunked_kl_loss(s_hidden, s_weight, None, t_hidden, t_weight, None, weights, 4, "sideways")
