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
from template.text import printable

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
    at its own KL (`p_value` below `level` and `margin_ok`, the first stage of `rule`).
    `reliable_gain`: about how far below the king's KL a model of this
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
    n: int  # prompts both were scored on
    p_value: float  # the first stage's one-sided paired t-test: H0 the model is no better than the king
    margin_ok: bool  # kl < king_kl × (1 − ε)
    rule: WinTwice

    @property
    def measured_gain(self) -> float:
        """1 − kl / king_kl: how much lower the model's KL is on these prompts (negative: higher)."""
        return 1.0 - self.kl / self.king_kl if self.king_kl > 0 else 0.0

    @property
    def outcome(self) -> str:
        """What these prompts say at the first stage's level, both ways round:

        * ``"passes"``: the first stage passes (the model would become the contender, not the king);
        * ``"worse"``: the king is better, tested the other way at the same level (1 − p < level);
        * ``"margin"``: better at the level but not below the margin (ε > 0 only);
        * ``"cannot tell"``: neither is better at the level, or one prompt (no spread to weigh).
        """
        if self.n < 2:
            return "cannot tell"
        if self.passes:
            return "passes"
        if self.p_value < self.level:
            return "margin"
        return "worse" if 1.0 - self.p_value < self.level else "cannot tell"

    def line(self, challenger: str = "yours", king: str = "the king") -> str:
        """One sentence for a miner: the measured gain, the first stage's verdict (p against
        alpha / max_challengers, the margin), the largest KL that passes on these prompts,
        the gain that wins twice in `RELIABLE_POWER` of such rounds. `challenger` and `king`
        name the two models (escaped here: they may come from a repo or the chain), e.g.

        ``trained vs start: KL 0.191510 vs 0.205263 on 4 prompts (6.70 % lower); win twice,
        stage one (p < 0.1 / 8 = 0.0125, KL < 0.205263): p = 0.31, does not pass: these 4
        prompts cannot tell the two apart (neither p nor 1 − p is below 0.0125); ...``
        """
        ch, kg, n, rule = printable(challenger), printable(king), self.n, self.rule
        prompts = f"{n} prompt" + ("" if n == 1 else "s")
        change = self.measured_gain
        head = (f"{ch} vs {kg}: KL {self.kl:.6f} vs {self.king_kl:.6f} on {prompts} "
                f"({100 * abs(change):.2f} % {'lower' if change >= 0 else 'higher'})")
        stage = (f"win twice, stage one (p < {rule.alpha:g} / {rule.max_challengers} = {self.level:.4g}, "
                 f"KL < {self.king_kl * (1.0 - rule.epsilon):.6f}): p = {self.p_value:.3g}, ")
        outcome = self.outcome
        if outcome == "passes":
            stage += (f"passes: a contender, not yet a crown (it must pass again, at p < {rule.confirm_alpha:g}, "
                      "on a later round's fresh prompts)")
        elif outcome == "worse":
            stage += f"does not pass: {kg} is better on these prompts (1 − p < {self.level:.4g})"
        elif outcome == "margin":
            stage += "does not pass: lower at that level but not below the margin"
        elif n < 2:
            stage += ("passes" if self.passes else "does not pass") + ", but one prompt has no spread to weigh: it cannot tell"
        else:
            stage += (f"does not pass: these {prompts} cannot tell the two apart (neither p nor 1 − p is below "
                      f"{self.level:.4g})")
        if self.max_kl is None:
            bar = "no KL passes stage one on these prompts"
        else:
            bar = f"passing here needs KL < {self.max_kl:.6f} ({100 * self.gain:.2f} % lower)"
        parts = [head, stage, bar]
        if self.reliable_gain is not None:
            power = f"{100 * RELIABLE_POWER:.0f} %"
            parts.append(f"a crown in {power} of rounds of {prompts} like these needs about "
                         f"{100 * self.reliable_gain:.1f} % lower" if self.reliable_gain < 1.0 else
                         f"not even KL 0 is crowned in {power} of rounds of {prompts} like these: too few prompts")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        """The JSON form (`distil-eval --json`); gains are fractions (0.05 = 5 % below the king's KL)."""
        return {"n_prompts": self.n, "king_kl": self.king_kl, "kl": self.kl, "measured_gain": self.measured_gain,
                "p_value": self.p_value, "first_alpha": self.level, "margin_ok": self.margin_ok,
                "passes_first_stage": self.passes, "outcome": self.outcome, "confirm_alpha": self.rule.confirm_alpha,
                "max_kl": self.max_kl, "gain_to_pass": self.gain, "reliable_gain": self.reliable_gain,
                "reliable_power": RELIABLE_POWER}


def required_gain(king_per_prompt: Sequence[float], challenger_per_prompt: Sequence[float],
                  rule: WinTwice = WinTwice()) -> RequiredGain:
    """What a challenger with this per-prompt profile needs against this king on this round (pure).

    With king KL k_i and the challenger's c_i scaled by s (its profile kept), the first
    stage passes when mean(s·c) < (1 − ε)·mean(k) and the paired statistic
    t(s) = (K − sC) / √(V(s)/n) exceeds t* = the (1 − α) quantile of T_{n−1}, where
    K, C are the means and V(s) = var(k) − 2s·cov(k, c) + s²·var(c) (denominator n − 1).
    On K − sC > 0 that is Q(s) = n(K − sC)² − t*²·V(s) > 0; Q(0) > 0 ≥ Q(K/C) puts exactly
    one root of this quadratic in (0, K/C], the largest passing s (`max_kl` = s·C). When
    Q(0) ≤ 0 (few prompts, a spread-out king) the passing scales lie between two roots and
    `max_kl` is the larger: a KL below it is needed, not always enough.

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
        return RequiredGain(king_kl, kl, rule.first_alpha, None, None, decision.dethrones, None, n,
                            decision.p_value, decision.margin_ok, rule)
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
    elif a < 0 and b * b - 4 * a * q0 > 0:
        # Q(0) ≤ 0: on few prompts with a spread-out king (t*²·var(k) ≥ n·K²), scaling the
        # challenger towards 0 keeps the king's own spread in the differences and fails; a
        # concave Q is positive only between its two roots, the larger being the largest
        # passing scale (a challenger that passes has its own scale 1 in between)
        disc = math.sqrt(b * b - 4 * a * q0)
        low, high = sorted([(-b - disc) / (2 * a), (-b + disc) / (2 * a)])
        s = min(high, upper, upper * (1.0 - rule.epsilon))
        if 0.0 < low < s:
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
    return RequiredGain(king_kl, kl, rule.first_alpha, max_kl, gain, decision.dethrones, reliable, n,
                        decision.p_value, decision.margin_ok, rule)


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
