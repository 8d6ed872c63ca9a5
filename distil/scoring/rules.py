"""The scoring spec's decision rules (DESIGN.md §2), each a small pure function.

The dethrone rule is one test, `dethrones` (a margin and a one-sided paired t-test at a
level), applied as each scoring spec says:

* spec v2: once, ε = `EPSILON` (1 %), α = `ALPHA` (0.05) per challenger;
* spec v3, **win twice** (`WinTwice`): a challenger becomes the *contender* when it passes
  at α = `V3_ALPHA` / `max_challengers` (a fixed divisor: the round's size limit, never the
  number scored), and takes the crown only when it passes again, at α = `CONFIRM_ALPHA`,
  on the fresh prompts of a later round (`distil.scoring.contender`). Both stages use the
  margin `V3_EPSILON` (0). docs/scoring.md has the arithmetic, docs/performance.md the
  measured error rates.

`required_gain` tells a miner how far below a king's KL a model of a given per-prompt
profile must come to pass a stage on a given round, and about how far to pass both stages
in 95 % of rounds like it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from distil.precedence import precedence

KL_LIMIT = 2.0
EPSILON = 0.01  # spec v2's margin
ALPHA = 0.05  # spec v2's level, per challenger
COPY_COSINE = 0.9999
# spec v3 (win twice)
V3_EPSILON = 0.0
V3_ALPHA = 0.1  # first stage, per round: each challenger is tested at V3_ALPHA / max_challengers
CONFIRM_ALPHA = 0.025  # second stage, on the fresh prompts of a later round
MAX_CHALLENGERS = 8
RELIABLE_POWER = 0.95


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


@dataclass(frozen=True)
class WinTwice:
    """Scoring spec v3's dethrone rule: its margin and the levels of its two stages.

    `alpha` is the first stage's level for a whole round: with `max_challengers`
    challengers all truly equal to the king, at most about `alpha` of rounds make one of
    them the contender, and `confirm_alpha` of those confirm, so about `alpha ×
    confirm_alpha` (0.25 %) of rounds end in a false crown if the t-test held its level.
    On skewed per-prompt KL it does not (a challenger much worse on a few prompts passes
    more often than α), and the recorded rounds measure up to 0.66 % (docs/performance.md):
    the defaults keep that under the 1 % bound. The divisor is the round's size limit, so
    one validator's transient failure (fewer models scored) does not change anyone's test.
    """

    epsilon: float = V3_EPSILON
    alpha: float = V3_ALPHA
    confirm_alpha: float = CONFIRM_ALPHA
    max_challengers: int = MAX_CHALLENGERS

    def __post_init__(self):
        if not (isinstance(self.max_challengers, int) and self.max_challengers >= 1):
            raise ValueError(f"max_challengers must be a positive integer, got {self.max_challengers!r}")
        for name in ("alpha", "confirm_alpha"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")
        if not 0.0 <= self.epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {self.epsilon!r}")

    @property
    def first_alpha(self) -> float:
        """The level each challenger is tested at in the first stage."""
        return self.alpha / self.max_challengers

    def first_stage(self, challenger_kl: float, challenger_per_prompt: Sequence[float], king_kl: float,
                    king_per_prompt: Sequence[float]) -> DethroneDecision:
        """Does a challenger of this round become the contender (before the probe)?"""
        return dethrones(challenger_kl, challenger_per_prompt, king_kl, king_per_prompt, self.epsilon, self.first_alpha)

    def confirms(self, contender_kl: float, contender_per_prompt: Sequence[float], king_kl: float,
                 king_per_prompt: Sequence[float]) -> DethroneDecision:
        """Does the contender, scored beside the same king on a later round's fresh prompts, take the crown?"""
        return dethrones(contender_kl, contender_per_prompt, king_kl, king_per_prompt, self.epsilon, self.confirm_alpha)


def _t_critical(alpha: float, n: int) -> float:
    """t such that P(T_{n−1} ≥ t) = alpha: `dethrones` passes when the statistic exceeds it."""
    from scipy.stats import t as student_t

    return float(student_t.isf(alpha, n - 1))


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@dataclass(frozen=True)
class RequiredGain:
    """How far below a king a model of one per-prompt profile must come, on one round.

    `max_kl`: the largest KL, the model's per-prompt KL scaled together, at which it still
    passes the test of `level` against this king on this round's prompts (None: no KL
    does, e.g. one prompt); `gain` = 1 − max_kl / king_kl; `passes`: whether it passes
    at its own KL. `reliable_gain`: about how far below the king's KL a model of this
    profile must truly be to take the crown in `RELIABLE_POWER` of rounds like this one
    (both stages of `WinTwice`, each on fresh prompts; a normal approximation, which
    `python -m distil.sim dethrone` checks by resampling).
    """

    king_kl: float
    kl: float
    level: float
    max_kl: float | None
    gain: float | None
    passes: bool
    reliable_gain: float | None

    def line(self) -> str:
        """One sentence for a miner."""
        if self.max_kl is None:
            bar = f"no KL passes the first stage (alpha {self.level:.4g}) on this round"
        else:
            bar = (f"the first stage (alpha {self.level:.4g}) needs KL below {self.max_kl:.6f}, "
                   f"{100 * self.gain:.2f} % below the king's {self.king_kl:.6f}: yours {self.kl:.6f} "
                   + ("passes" if self.passes else "does not"))
        reliable = ("" if self.reliable_gain is None else
                    f"; to be crowned in {100 * RELIABLE_POWER:.0f} % of rounds like this one (twice, on fresh "
                    f"prompts) a model of this profile must be about {100 * self.reliable_gain:.1f} % below the king")
        return bar + reliable


def required_gain(king_per_prompt: Sequence[float], challenger_per_prompt: Sequence[float],
                  rule: WinTwice = WinTwice()) -> RequiredGain:
    """What a challenger with this per-prompt profile needs against this king on this round (pure).

    With king KL k_i and the challenger's c_i scaled by s (its profile kept), the first
    stage passes when mean(s·c) < (1 − ε)·mean(k) and the paired statistic
    t(s) = (K − sC) / √(V(s)/n) exceeds t* = the (1 − α) quantile of T_{n−1}, where
    K, C are the means and V(s) = var(k) − 2s·cov(k, c) + s²·var(c) (denominator n − 1).
    On K − sC > 0 that is Q(s) = n(K − sC)² − t*²·V(s) > 0; Q(0) > 0 ≥ Q(K/C) puts exactly
    one root of this quadratic in (0, K/C], the largest passing s (`max_kl` = s·C).

    `reliable_gain`: the statistic's mean is about g·K·√n / sd(d) for a model truly better
    by g, with sd(d) taken at its profile scaled to the king's mean; both stages pass with
    probability Φ(δ − z₁)·Φ(δ − z₂) (z the t quantiles of the two levels), so
    δ* solves Φ(δ − z₁)·Φ(δ − z₂) = `RELIABLE_POWER`, and g = max(ε, δ*·sd(d) / (K·√n)).
    """
    if len(king_per_prompt) != len(challenger_per_prompt):
        raise ValueError(f"per-prompt KL of different lengths ({len(king_per_prompt)} vs {len(challenger_per_prompt)})")
    n = len(king_per_prompt)
    k = [float(x) for x in king_per_prompt]
    c = [float(x) for x in challenger_per_prompt]
    if n == 0 or not all(math.isfinite(x) for x in k + c):
        raise ValueError("per-prompt KL must be a non-empty list of finite numbers")
    king_kl, kl = math.fsum(k) / n, math.fsum(c) / n
    decision = rule.first_stage(kl, c, king_kl, k)
    if not (king_kl > 0 and kl > 0) or n < 2:
        return RequiredGain(king_kl, kl, rule.first_alpha, None, None, decision.dethrones, None)
    vk = math.fsum((x - king_kl) ** 2 for x in k) / (n - 1)
    vc = math.fsum((x - kl) ** 2 for x in c) / (n - 1)
    ckc = math.fsum((x - king_kl) * (y - kl) for x, y in zip(k, c)) / (n - 1)
    t2 = _t_critical(rule.first_alpha, n) ** 2
    a = n * kl * kl - t2 * vc
    b = -2.0 * (n * king_kl * kl - t2 * ckc)
    q0 = n * king_kl * king_kl - t2 * vk
    upper = king_kl / kl
    max_kl = gain = None
    if q0 > 0:
        if a == 0.0:
            root = -q0 / b
        else:
            disc = math.sqrt(max(b * b - 4 * a * q0, 0.0))
            roots = [(-b - disc) / (2 * a), (-b + disc) / (2 * a)]
            root = min((r for r in roots if 0.0 < r <= upper * (1 + 1e-12)), default=upper)
        s = min(root, upper * (1.0 - rule.epsilon))
        max_kl = s * kl
        gain = 1.0 - max_kl / king_kl
    # sd of the differences for the profile scaled to the king's mean
    s0 = upper
    sd = math.sqrt(max(vk - 2 * s0 * ckc + s0 * s0 * vc, 0.0))
    reliable = None
    if sd > 0:
        z1, z2 = _t_critical(rule.first_alpha, n), _t_critical(rule.confirm_alpha, n)
        low, high = 0.0, 50.0
        for _ in range(100):
            mid = (low + high) / 2
            if _normal_cdf(mid - z1) * _normal_cdf(mid - z2) >= RELIABLE_POWER:
                high = mid
            else:
                low = mid
        reliable = max(rule.epsilon, high * sd / (king_kl * math.sqrt(n)))
    return RequiredGain(king_kl, kl, rule.first_alpha, max_kl, gain, decision.dethrones, reliable)


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
