"""The scoring spec's decision rules (DESIGN.md §2), each a small pure function."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from distil.precedence import precedence

KL_LIMIT = 2.0
EPSILON = 0.01
ALPHA = 0.05
COPY_COSINE = 0.9999


def kl_failure(kl: float | None, limit: float = KL_LIMIT) -> str | None:
    """Why a KL disqualifies (KL_TOO_HIGH), or None. Non-finite KL never sorts as a score."""
    if kl is None or not math.isfinite(kl):
        return f"KL is not a finite number ({kl})"
    if kl > limit:
        return f"KL {kl:.6f} is above the limit {limit}"
    return None


def paired_t_pvalue(king_per_prompt: Sequence[float], challenger_per_prompt: Sequence[float]) -> float:
    """One-sided paired t-test p-value for H0: mean(king_i − challenger_i) ≤ 0.

    d_i = king_i − challenger_i over the n prompts both were scored on;
    t = mean(d) / (sd(d) / √n) with sd the sample standard deviation (n − 1);
    p = P(T_{n−1} ≥ t). When every d_i is equal (zero variance, or n = 1) the sign
    decides: p = 0 if the challenger is better on every prompt, else 1.
    """
    if len(king_per_prompt) != len(challenger_per_prompt):
        raise ValueError(
            f"per-prompt KL of different lengths ({len(king_per_prompt)} vs {len(challenger_per_prompt)}): "
            "scores from different prompt sets are never compared"
        )
    n = len(king_per_prompt)
    if n == 0:
        raise ValueError("no prompts to compare")
    diffs = [float(k) - float(c) for k, c in zip(king_per_prompt, challenger_per_prompt)]
    if not all(math.isfinite(d) for d in diffs):
        raise ValueError("non-finite per-prompt KL")
    mean = math.fsum(diffs) / n
    if n == 1 or all(d == diffs[0] for d in diffs):
        return 0.0 if mean > 0 else 1.0
    var = math.fsum((d - mean) ** 2 for d in diffs) / (n - 1)
    if var == 0.0:
        return 0.0 if mean > 0 else 1.0
    t = mean / math.sqrt(var / n)
    from scipy.stats import t as student_t

    return float(student_t.sf(t, n - 1))


@dataclass(frozen=True)
class DethroneDecision:
    dethrones: bool
    margin_ok: bool
    p_value: float
    threshold: float
    reason: str


def dethrones(
    challenger_kl: float,
    challenger_per_prompt: Sequence[float],
    king_kl: float,
    king_per_prompt: Sequence[float],
    epsilon: float = EPSILON,
    alpha: float = ALPHA,
) -> DethroneDecision:
    """A challenger takes the crown only if both hold:

    * margin: ``challenger_kl < king_kl × (1 − epsilon)``;
    * significance: one-sided paired t-test on ``king_i − challenger_i`` gives
      ``p < alpha`` (``alpha ≥ 1`` turns the test off).
    """
    threshold = king_kl * (1.0 - epsilon)
    margin_ok = challenger_kl < threshold
    p = paired_t_pvalue(king_per_prompt, challenger_per_prompt)
    significant = alpha >= 1.0 or p < alpha
    if margin_ok and significant:
        reason = f"KL {challenger_kl:.6f} < {threshold:.6f} (king {king_kl:.6f} × (1 − {epsilon})) and p = {p:.3g} < {alpha}"
    elif not margin_ok:
        reason = f"KL {challenger_kl:.6f} is not below {threshold:.6f} (king {king_kl:.6f} × (1 − {epsilon}))"
    else:
        reason = f"KL {challenger_kl:.6f} beats the margin but p = {p:.3g} is not below alpha {alpha}"
    return DethroneDecision(margin_ok and significant, margin_ok, p, threshold, reason)


def rank_key(kl: float, commit_block: int, hotkey: str) -> tuple[float, int, str]:
    """Order of merit: lower KL first; exact ties go to the earlier commit block, then hotkey."""
    return (kl, commit_block, hotkey)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths ({len(a)} vs {len(b)})")
    dot = math.fsum(x * y for x, y in zip(a, b))
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return dot / (na * nb)


def functional_copies(
    vectors: Mapping[str, Sequence[float]],
    commit_blocks: Mapping[str, int],
    threshold: float = COPY_COSINE,
    block_hashes: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Models whose per-position KL vectors (first prompts of the round) are near-identical.

    Returns ``{copy_hotkey: original_hotkey}``: of two models with cosine above
    `threshold`, the later commitment is the copy; it copies the earliest model it matches.
    "Later" is the one tie rule of every copy (`distil.precedence`): the later commit block,
    and in one block the later draw from the block's hash (`block_hashes`; a hotkey
    without one keeps spec v2's hotkey order).
    """
    hashes = block_hashes or {}
    order = sorted(vectors, key=lambda h: precedence(commit_blocks[h], hashes.get(h), h))
    copies: dict[str, str] = {}
    for i, later in enumerate(order):
        for earlier in order[:i]:
            if earlier in copies:
                continue
            if len(vectors[earlier]) == len(vectors[later]) and cosine(vectors[earlier], vectors[later]) > threshold:
                copies[later] = earlier
                break
    return copies
