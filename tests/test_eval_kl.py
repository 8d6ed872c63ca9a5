"""The KL kernel against a float64 reference, at the real vocabulary width."""

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from distil import VOCAB_SIZE
from distil.eval.kl import Head, kl_block, kl_from_hidden, kl_from_logits, kl_naive


def reference(t: np.ndarray, s: np.ndarray):
    lt, ls = log_softmax(t.astype(np.float64), -1), log_softmax(s.astype(np.float64), -1)
    return np.sum(np.exp(lt) * (lt - ls), -1), t.argmax(-1) == s.argmax(-1)


@pytest.fixture(scope="module")
def logits():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(40, VOCAB_SIZE, generator=g) * 3
    # Rows of very different KL: near-copies (1e-5) to unrelated (≈10).
    noise = torch.randn(40, VOCAB_SIZE, generator=g) * torch.logspace(-3, 1, 40)[:, None]
    return t.bfloat16(), (t + noise).bfloat16()


def test_kl_from_logits_matches_float64_reference(logits):
    t, s = logits
    kl, agree = kl_from_logits(t, s, chunk_size=16)
    ref_kl, ref_agree = reference(t.float().numpy(), s.float().numpy())
    assert kl.dtype == torch.float32 and kl.shape == (40,)
    np.testing.assert_allclose(kl.numpy(), ref_kl, rtol=2e-5, atol=1e-6)  # floor: ~1e-7·|lse|, see kl_block
    assert (agree.numpy() == ref_agree).all()
    assert 0 < ref_agree.sum() < 40  # both outcomes occur, so agreement is really tested


def test_chunk_size_does_not_change_the_result(logits):
    t, s = logits
    base, _ = kl_from_logits(t, s, chunk_size=40)
    for chunk in (1, 7, 16, 32):
        kl, _ = kl_from_logits(t, s, chunk_size=chunk)
        np.testing.assert_allclose(kl.numpy(), base.numpy(), rtol=1e-6, atol=1e-6)  # 1e-6 absolute, or relative for KL > 1 (fp32 ulp(22) = 2e-6)


def test_inputs_are_left_untouched(logits):
    t, s = logits[0][:4].float(), logits[1][:4].float()
    t0, s0 = t.clone(), s.clone()
    kl_from_logits(t, s, chunk_size=2)
    assert torch.equal(t, t0) and torch.equal(s, s0)


def test_identical_logits_give_zero_and_full_agreement(logits):
    t = logits[0][:5]
    kl, agree = kl_from_logits(t, t.clone(), chunk_size=2)
    assert np.abs(kl.numpy()).max() < 1e-6 and agree.all()


def test_kl_from_hidden_matches_reference_and_chunking():
    g = torch.Generator().manual_seed(1)
    ht, hs = torch.randn(9, 64, generator=g), torch.randn(9, 48, generator=g)
    wt, ws = torch.randn(VOCAB_SIZE, 64, generator=g) * 0.3, torch.randn(VOCAB_SIZE, 48, generator=g) * 0.3
    bias = torch.randn(VOCAB_SIZE, generator=g)
    ref_kl, ref_agree = reference((ht.double() @ wt.double().T).numpy(), (hs.double() @ ws.double().T + bias.double()).numpy())
    for chunk in (1, 4, 32):
        kl, agree = kl_from_hidden(ht, Head(wt), hs, Head(ws, bias), chunk_size=chunk)
        np.testing.assert_allclose(kl.numpy(), ref_kl, rtol=2e-6, atol=1e-6)
        assert (agree.numpy() == ref_agree).all()


def test_kl_from_hidden_rejects_mismatched_vocabularies():
    h = torch.zeros(2, 8)
    with pytest.raises(ValueError, match="vocabulary sizes differ"):
        kl_from_hidden(h, Head(torch.zeros(100, 8)), h, Head(torch.zeros(99, 8)))


def test_non_finite_logits_give_non_finite_kl():
    t = torch.zeros(2, 1000)
    s = torch.zeros(2, 1000)
    s[1, 3] = float("nan")
    kl, _ = kl_block(t.clone(), s.clone())
    assert np.isfinite(kl[0].item()) and not np.isfinite(kl[1].item())


def test_naive_benchmark_reference_is_right_but_less_precise(logits):
    """The bench's naive fp32 pipeline computes the same KL, with a larger error than the engine."""
    t, s = logits
    ref_kl, _ = reference(t.float().numpy(), s.float().numpy())
    naive = kl_naive(t, s).numpy()
    engine, _ = kl_from_logits(t, s)
    np.testing.assert_allclose(naive, ref_kl, rtol=1e-4, atol=5e-6)
    assert np.abs(engine.numpy() - ref_kl).max() < np.abs(naive - ref_kl).max()


def test_rows_where_the_centred_form_overflows_use_the_direct_form():
    """Student far above the teacher on some token (> 88 nats): expm1 overflows there."""
    t = torch.zeros(2, 1000)
    t[:, 0] = 120.0  # the teacher is sure of token 0 ...
    s = torch.zeros(2, 1000)
    s[1, 5] = 50.0  # ... the student of token 5 in row 1
    kl, agree = kl_from_logits(t, s, chunk_size=1)
    ref_kl, ref_agree = reference(t.numpy(), s.numpy())
    assert np.isfinite(kl.numpy()).all()
    np.testing.assert_allclose(kl.numpy(), ref_kl, rtol=1e-5)
    assert agree.tolist() == ref_agree.tolist() == [True, False]
