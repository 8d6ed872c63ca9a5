"""`python -m distil.sim dethrone`: the dethrone rule's false-dethrone rate, power and stability, measured.

Method. A round gives, for the king and each challenger, one KL per prompt, scored on
the same prompts. Resampling those prompts with replacement (`n` of them, `resamples`
times, one seeded generator; every model and scenario sees the same resampled prompt
indices, as the models of one round see the same prompts) imitates drawing other
rounds of the same kind. A second, independent resample of the same size is the *later
round* whose fresh prompts a win-twice contender is confirmed on. For each challenger
and scenario the challenger's vector is scaled so that its true mean (over the round's
prompts) is exactly

* the king's mean: a challenger *truly equal* to the king. Every crown is then a false
  one. With the round's first k challengers all equal to the king (k = 1 … the rule's
  `max_challengers`), the share of resampled rounds that end in a crown is the
  **false-dethrone rate per round** at k;
* (1 − x) × the king's mean for x = 1, 2, 3, 5, 10 %: a challenger truly better by x,
  alone in its round. The share of resamples where it takes the crown is the **power** at
  x; **needs** is the smallest x with power ≥ 95 % (found by bisection).

Scaling keeps the challenger's per-prompt shape (which prompts are hard for it) and its
pairing with the king, which is what the paired t-test feeds on.

Rules (`--rule`):

* `v3` (scoring spec v3, `distil.scoring.rules.WinTwice`): in the first round each
  challenger is tested at α = alpha / max_challengers; the passer with the lowest KL
  becomes the contender (the probe is not simulated: it passes); in the later round, on
  the second resample, the contender is tested against the king at `confirm_alpha`, beside
  k new challengers equal to the king (who can only become the next contender, so they
  never change this crown). The crown is the confirmation.
* `v2` and `one-round`: one round; the passer with the lowest KL is crowned. `v2` is
  ε 1 %, α 0.05 per challenger; `one-round` tests each challenger at α / max_challengers.

**Stability**: each decision is taken again on a second validator's view of the same
rounds, every per-prompt KL multiplied by (1 + `noise` × N(0, 1)) and, in each round,
`diverged` prompts whose teacher continuation differed from some token on: their KL, for
every model alike, becomes u × its own + (1 − u) × that of another prompt of the round (u
uniform). A **flip** is a resample where the two views differ in who was chosen or crowned;
measured with k = max_challengers equal challengers, and for a lone challenger at its
`needs`.

The rule applied to each resample is mirrored in numpy over all resamples at once; every
run also decides the first `verify` resamples of every scenario with the real pure
functions (`distil.scoring.rules.dethrones`; for `v3` `distil.scoring.contender.step`
for both rounds and `new_contender`) and stops with an error if a single decision differs.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from distil.scoring import contender as win_twice
from distil.scoring.rules import (
    ALPHA,
    CONFIRM_ALPHA,
    EPSILON,
    KL_LIMIT,
    MAX_CHALLENGERS,
    RELIABLE_POWER,
    V3_ALPHA,
    V3_EPSILON,
    WinTwice,
    dethrones,
    rank_key,
)
from distil.sim.rounds import RoundVectors, read_round_file, round_vectors

IMPROVEMENTS = (0.01, 0.02, 0.03, 0.05, 0.10)
RESAMPLES = 10_000
VERIFY = 200
NOISE = 1e-4
DIVERGED = 2


def dethrone_mask(king: np.ndarray, challenger: np.ndarray, epsilon: float = EPSILON, alpha: float = ALPHA) -> np.ndarray:
    """`dethrones(...)`.dethrones for every row of [R, n] per-prompt KL arrays at once.

    Mirrors `distil.scoring.rules.dethrones` with each model's KL the mean of its row
    (as `ModelScore.kl_mean` is the mean of its per-prompt KL): margin
    `mean(c) < mean(k) × (1 − ε)`; one-sided paired t-test on d = k − c with the sign
    deciding when every d is equal (or n = 1).
    """
    from scipy.stats import t as student_t

    king = np.asarray(king, dtype=np.float64)
    challenger = np.asarray(challenger, dtype=np.float64)
    if king.shape != challenger.shape or king.ndim != 2:
        raise ValueError(f"king and challenger must be [R, n] arrays of one shape, got {king.shape} and {challenger.shape}")
    n = king.shape[1]
    margin_ok = challenger.mean(axis=1) < king.mean(axis=1) * (1.0 - epsilon)
    if alpha >= 1.0:
        return margin_ok
    d = king - challenger
    mean = d.mean(axis=1)
    sign_decides = np.all(d == d[:, :1], axis=1)
    if n > 1:
        var = np.square(d - mean[:, None]).sum(axis=1) / (n - 1)
        sign_decides |= var == 0.0
    else:
        var = np.ones_like(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / np.sqrt(np.where(sign_decides, 1.0, var) / n)
    p = np.where(sign_decides, np.where(mean > 0, 0.0, 1.0), student_t.sf(t, max(n - 1, 1)))
    return margin_ok & (p < alpha)


@dataclass(frozen=True)
class OneRound:
    """A one-round rule: each challenger tested once; the passer with the lowest KL is crowned.

    `alpha` is per challenger, or (`divided`) per round and split over `max_challengers`.
    """

    epsilon: float
    alpha: float
    divided: bool = False
    max_challengers: int = MAX_CHALLENGERS
    name: str = "one-round"

    rounds = 1

    @property
    def challenger_alpha(self) -> float:
        return self.alpha / self.max_challengers if self.divided else self.alpha

    def describe(self) -> str:
        level = f"{self.alpha:g}/{self.max_challengers}" if self.divided else f"{self.alpha:g}"
        head = "v2: " if self.name == "v2" else ""
        return f"{head}one round: epsilon {self.epsilon:g}, alpha {level} per challenger"

    def params(self) -> dict:
        return {"rule": self.name, "epsilon": self.epsilon, "alpha": self.alpha, "challenger_alpha": self.challenger_alpha,
                "max_challengers": self.max_challengers}


@dataclass(frozen=True)
class TwoRounds:
    """Win twice (`WinTwice`) as the simulation applies it."""

    rule: WinTwice

    rounds = 2

    @property
    def max_challengers(self) -> int:
        return self.rule.max_challengers

    def describe(self) -> str:
        r = self.rule
        return (f"win twice: epsilon {r.epsilon:g}, alpha {r.alpha:g}/{r.max_challengers}, then {r.confirm_alpha:g} "
                "on a later round's fresh prompts")

    def params(self) -> dict:
        r = self.rule
        return {"rule": "v3", "epsilon": r.epsilon, "alpha": r.alpha, "first_alpha": r.first_alpha,
                "confirm_alpha": r.confirm_alpha, "max_challengers": r.max_challengers}


def make_rule(name: str, epsilon: float | None = None, alpha: float | None = None, confirm_alpha: float | None = None,
              max_challengers: int = MAX_CHALLENGERS):
    """`v3` (win twice), `v2` (ε 1 %, α 0.05 per challenger) or `one-round` (α / max_challengers per challenger)."""
    if name == "v3":
        return TwoRounds(WinTwice(V3_EPSILON if epsilon is None else epsilon, V3_ALPHA if alpha is None else alpha,
                                  CONFIRM_ALPHA if confirm_alpha is None else confirm_alpha, max_challengers))
    if name == "v2":
        return OneRound(EPSILON if epsilon is None else epsilon, ALPHA if alpha is None else alpha, False,
                        max_challengers, "v2")
    if name == "one-round":
        return OneRound(V3_EPSILON if epsilon is None else epsilon, V3_ALPHA if alpha is None else alpha, True,
                        max_challengers)
    raise ValueError(f"unknown rule {name!r} (v3, v2 or one-round)")


def candidates(max_challengers: int = MAX_CHALLENGERS) -> list:
    """The rules issue 23 compared (`--candidates`), divisors fixed at `max_challengers`.

    (Its paired-bootstrap rule is left out: a bootstrap inside each of 10,000 resamples,
    at a level of 0.01/8, costs thousands of inner resamples each, and it already broke the
    1 % bound on the noise-copy round.)
    """
    m = max_challengers
    return [
        OneRound(0.01, 0.05, False, m, "v2"),
        OneRound(0.01, 0.01, False, m),
        OneRound(0.03, 0.05, True, m),
        OneRound(0.0, 0.01, True, m),
        OneRound(0.0, 0.001, False, m),
        TwoRounds(WinTwice(0.0, 0.1, 0.1, m)),
        TwoRounds(WinTwice(0.0, 0.05, 0.05, m)),
        TwoRounds(WinTwice(0.0, 0.1, 0.025, m)),  # spec v3's defaults
    ]


def scaled(vector: np.ndarray, target_mean: float) -> np.ndarray:
    """`vector` scaled so that its mean is `target_mean` (its per-prompt shape kept)."""
    mean = float(np.mean(vector))
    if not mean > 0:
        raise ValueError(f"cannot scale a per-prompt KL vector of mean {mean} to {target_mean}")
    return vector * (target_mean / mean)


@dataclass
class _Tested:
    """One challenger's tests on every resample: per round, the test mask and its mean KL (round 1)."""

    passed: list[np.ndarray]  # [round] -> [R] bool (round 1: first stage / one-round test; round 2: confirmation)
    mean: np.ndarray  # [R] mean KL in round 1


def spread(king: np.ndarray, challenger: np.ndarray) -> float:
    """sd of king − challenger per-prompt KL, the challenger scaled to the king's mean, over the king's mean KL.

    What a paired test sees of a challenger truly equal to the king: the larger, the larger the
    improvement a rule needs to tell them apart."""
    king = np.asarray(king, dtype=np.float64)
    d = king - scaled(np.asarray(challenger, dtype=np.float64), float(king.mean()))
    return float(d.std(ddof=1) / king.mean()) if len(d) > 1 else 0.0


def correlation(a, b) -> float:
    """Pearson correlation of two models' per-prompt KL (1: the same prompts are hard for both)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


@dataclass(frozen=True)
class ChallengerStats:
    key: str
    kl_mean: float
    false_dethrone_rate: float
    power: dict[float, float]
    reliable_improvement: float | None  # smallest x with power ≥ the reliable level (None: not up to 50 %)
    flips_equal: tuple[float, float]  # (crown, first stage) flips of this challenger alone, truly equal to the king
    flips_at_reliable: tuple[float | None, float | None]  # the same, truly better by its reliable improvement


class DethroneSimulation:
    """The resampled rounds of one round file under one rule: rates, power, needs and flips."""

    def __init__(self, vectors: RoundVectors, n: int, resamples: int, seed: int, rule=None, verify: int = VERIFY,
                 noise: float = NOISE, diverged: int = DIVERGED):
        if n < 1 or resamples < 1:
            raise ValueError(f"--n and --resamples must be positive (got {n}, {resamples})")
        if noise < 0 or diverged < 0 or diverged > n:
            raise ValueError(f"--noise must be ≥ 0 and --diverged in [0, n] (got {noise}, {diverged})")
        self.vectors, self.rule, self.verify = vectors, rule or make_rule("v3"), min(verify, resamples)
        self.noise, self.diverged = noise, diverged
        self.king = np.asarray(vectors.king_kl, dtype=np.float64)
        self.king_mean = float(np.mean(self.king))
        if not self.king_mean > 0:
            raise ValueError(f"the king's KL is {self.king_mean}: no challenger can be better by a fraction of it")
        rng = np.random.default_rng(seed)
        size = len(self.king)
        self.index = [rng.integers(0, size, size=(resamples, n)) for _ in range(2)]
        # the second validator's view: which prompts diverged, from where, and the noise stream's seed
        self.div_pos = [rng.integers(0, n, size=(resamples, diverged)) for _ in range(2)]
        self.div_other = [rng.integers(0, size, size=(resamples, diverged)) for _ in range(2)]
        self.div_u = [rng.uniform(0.0, 1.0, size=(resamples, diverged)) for _ in range(2)]
        self.noise_seed = int(rng.integers(0, 2**63))
        self.king_rows = [self._rows(self.king, r) for r in range(2)]
        self.king_view = [self._view(self.king, r, slot=0) for r in range(2)]
        self.verified = 0

    # -- the rounds as each validator sees them --------------------------------------------

    def _rows(self, vector: np.ndarray, r: int) -> np.ndarray:
        return vector[self.index[r]]

    def _view(self, vector: np.ndarray, r: int, slot: int) -> np.ndarray:
        """Round r's rows of `vector` as a second validator scores them (noise, diverged prompts)."""
        rows = self._rows(vector, r)
        if self.noise:
            g = np.random.default_rng([self.noise_seed, r, slot])
            rows = rows * (1.0 + self.noise * g.standard_normal(rows.shape))
        if self.diverged:
            rows = rows.copy()
            at = np.arange(rows.shape[0])[:, None]
            u = self.div_u[r]
            rows[at, self.div_pos[r]] = u * rows[at, self.div_pos[r]] + (1.0 - u) * vector[self.div_other[r]]
        return rows

    # -- the rule on every resample ---------------------------------------------------------

    def _levels(self) -> list[tuple[float, float]]:
        rule = self.rule
        if isinstance(rule, TwoRounds):
            return [(rule.rule.epsilon, rule.rule.first_alpha), (rule.rule.epsilon, rule.rule.confirm_alpha)]
        return [(rule.epsilon, rule.challenger_alpha)]

    def _test(self, vector: np.ndarray, slot: int, perturbed: bool) -> _Tested:
        passed = []
        mean = None
        for r, (epsilon, alpha) in enumerate(self._levels()):
            rows = self._view(vector, r, slot) if perturbed else self._rows(vector, r)
            king = self.king_view[r] if perturbed else self.king_rows[r]
            passed.append(dethrone_mask(king, rows, epsilon, alpha))
            if r == 0:
                mean = rows.mean(axis=1)
        return _Tested(passed, mean)

    def _outcomes(self, tested: list[_Tested]) -> list[tuple[np.ndarray, np.ndarray]]:
        """For k = 1 … len(tested): (chosen index or −1, crowned) per resample, with challengers 0 … k−1."""
        resamples = len(self.index[0])
        best_mean = np.full(resamples, np.inf)
        chosen = np.full(resamples, -1)
        out = []
        for i, t in enumerate(tested):
            better = t.passed[0] & (t.mean < best_mean)  # exact ties keep the earlier (commit order)
            chosen = np.where(better, i, chosen)
            best_mean = np.where(better, t.mean, best_mean)
            if self.rule.rounds == 1:
                crowned = chosen >= 0
            else:
                confirm = np.stack([x.passed[1] for x in tested[: i + 1]], axis=1)
                crowned = (chosen >= 0) & confirm[np.arange(resamples), np.maximum(chosen, 0)]
            out.append((chosen.copy(), crowned))
        return out

    def _verify(self, vectors: list[np.ndarray], outcome: tuple[np.ndarray, np.ndarray]) -> None:
        """The first `verify` resamples decided by the real pure functions must agree with the mirror."""
        chosen, crowned = outcome
        for r in range(self.verify):
            real_chosen, real_crowned = self._real_decision([self._rows(v, 0)[r] for v in vectors], self.king_rows[0][r],
                                                            [self._rows(v, 1)[r] for v in vectors], self.king_rows[1][r])
            if (real_chosen, real_crowned) != (int(chosen[r]), bool(crowned[r])):
                raise RuntimeError(f"the vectorised rule differs from distil.scoring on resample {r} (real: chosen "
                                   f"{real_chosen}, crowned {real_crowned}; mirror: {int(chosen[r])}, {bool(crowned[r])}); "
                                   "this is a bug in distil.sim")
        self.verified += self.verify

    def _real_decision(self, rows1, king1, rows2, king2) -> tuple[int, bool]:
        def scored(row):
            return SimpleNamespace(kl_mean=float(np.mean(row)), per_prompt_kl=row.tolist())

        keys = [f"c{i}" for i in range(len(rows1))]
        blocks = {k: i + 1 for i, k in enumerate(keys)} | {"king": 0}
        if isinstance(self.rule, OneRound):
            k = scored(king1)
            passers = [key for key, row in zip(keys, rows1)
                       if dethrones(float(np.mean(row)), row.tolist(), k.kl_mean, k.per_prompt_kl, self.rule.epsilon,
                                    self.rule.challenger_alpha).dethrones]
            if not passers:
                return -1, False
            best = min(passers, key=lambda key: rank_key(float(np.mean(rows1[keys.index(key)])), blocks[key], key))
            return keys.index(best), True
        rule = self.rule.rule
        first = {"king": scored(king1)} | {key: scored(row) for key, row in zip(keys, rows1)}
        step1 = win_twice.step(None, "king", first, blocks, 1, rule)
        if not step1.candidates:
            return -1, False
        held = win_twice.new_contender(step1.candidates[0], "king", first, blocks, 1, rule)
        # the later round: king, contender, and as many newcomers (equal to the king) on the fresh prompts
        index = keys.index(held.hotkey)
        later = {"king": scored(king2), held.hotkey: scored(rows2[index])}
        later |= {f"new{i}": scored(row) for i, row in enumerate(rows2)}
        blocks2 = blocks | {f"new{i}": 100 + i for i in range(len(rows2))}
        step2 = win_twice.step(held, "king", later, blocks2, 2, rule)
        return index, step2.crowned == held.hotkey

    # -- the measures ------------------------------------------------------------------------

    def _lone(self, vector: np.ndarray, improvement: float, perturbed: bool = False, slot: int = 1,
              verify: bool = True):
        target = scaled(np.asarray(vector, dtype=np.float64), (1.0 - improvement) * self.king_mean)
        outcome = self._outcomes([self._test(target, slot, perturbed)])[0]
        if verify and not perturbed:
            self._verify([target], outcome)
        return target, outcome

    def power(self, vector, improvement: float, verify: bool = True) -> float:
        return float(self._lone(vector, improvement, verify=verify)[1][1].mean())

    def reliable_improvement(self, vector, level: float = RELIABLE_POWER, upper: float = 0.5,
                             steps: int = 12) -> float | None:
        """Smallest improvement (to 1/2^steps of `upper`) whose power reaches `level`; None if not by `upper`."""
        if self.power(vector, upper) < level:
            return None
        low, high = 0.0, upper
        for _ in range(steps):  # the same decisions as `power`, which verified them at the listed improvements
            mid = (low + high) / 2
            if self.power(vector, mid, verify=False) >= level:
                high = mid
            else:
                low = mid
        return high

    def flips_lone(self, vector, improvement: float) -> tuple[float, float]:
        _, exact = self._lone(vector, improvement)
        _, seen = self._lone(vector, improvement, perturbed=True)
        return _flips(exact, seen)

    def run(self, improvements=IMPROVEMENTS, reliable_level: float = RELIABLE_POWER, power: bool = True) -> dict:
        """Every measure; `power=False` leaves out power, needs and the flips at needs (the false rates are quick)."""
        challengers = self.vectors.challengers[: self.rule.max_challengers]
        equal = [scaled(np.asarray(v, dtype=np.float64), self.king_mean) for _, v in challengers]
        exact = self._outcomes([self._test(v, i + 1, False) for i, v in enumerate(equal)])
        seen = self._outcomes([self._test(v, i + 1, True) for i, v in enumerate(equal)])
        self._verify(equal, exact[-1])
        false_by_k = [float(crowned.mean()) for _, crowned in exact]
        round_flips = _flips(exact[-1], seen[-1])
        stats = []
        for (key, vector), alone in zip(self.vectors.challengers, equal):
            false_alone = float(self._outcomes([self._test(alone, 1, False)])[0][1].mean())
            powers = {x: self.power(vector, x) for x in improvements} if power else {}
            needs = self.reliable_improvement(vector, reliable_level) if power else None
            flips = (None, None) if needs is None else self.flips_lone(vector, needs)
            stats.append(ChallengerStats(key, float(np.mean(vector)), false_alone, powers, needs,
                                         self.flips_lone(vector, 0.0), flips))
        return self._report(stats, false_by_k, round_flips, improvements, reliable_level)

    def _report(self, stats, false_by_k, round_flips, improvements, reliable_level) -> dict:
        resamples, n = self.index[0].shape
        v = self.vectors
        models = [v.king_kl] + [vec for _, vec in v.challengers]
        pairs = [correlation(models[i], models[j]) for i in range(len(models)) for j in range(i)]
        by_key = dict(v.challengers)
        reliable = [s.reliable_improvement for s in stats]
        improvements = [x for x in improvements if stats and x in stats[0].power]
        def worst_of(values):
            values = [v for v in values if v is not None]
            return max(values) if values else None

        worst = max(false_by_k)
        return {
            "format": "distil-sim-dethrone",
            "scoring_version": v.scoring_version,
            "seed_block": v.seed_block,
            "king": v.king,
            "king_source": v.king_source,
            "king_kl": self.king_mean,
            "n_round_prompts": v.n_round_prompts,
            # every pair of the round's valid models: how alike their per-prompt KL is
            "correlation_median": float(np.nanmedian(pairs)) if pairs else None,
            "correlation_range": [float(np.nanmin(pairs)), float(np.nanmax(pairs))] if pairs else None,
            "n": n,
            "resamples": resamples,
            "rule": self.rule.params(),
            "rule_text": self.rule.describe(),
            "verified_against_rules": self.verified,
            # the round's first k challengers, all truly equal to the king: P(the round ends in a crown), k = 1, 2, …
            "false_dethrone_by_challengers": false_by_k,
            "false_dethrone_rate": worst,
            "false_dethrone_se": math.sqrt(worst * (1 - worst) / resamples),
            # a typical challenger of this round (mean over challengers), alone, truly better by x: P(crowned)
            "power": {f"{x:g}": float(np.mean([s.power[x] for s in stats])) for x in improvements},
            "reliable_power": reliable_level,
            "reliable_improvement": None if None in reliable else max(reliable),
            "noise": self.noise,
            "diverged": self.diverged,
            # a second validator's view of the same rounds, per decision (one challenger alone), worst challenger:
            # P(a different crown) and P(a different first-stage verdict); and per round with every challenger equal
            "flips_equal": worst_of(s.flips_equal[0] for s in stats),
            "stage_flips_equal": worst_of(s.flips_equal[1] for s in stats),
            "flips_at_reliable": worst_of(s.flips_at_reliable[0] for s in stats),
            "stage_flips_at_reliable": worst_of(s.flips_at_reliable[1] for s in stats),
            "round_flips_equal": round_flips[0],
            "round_stage_flips_equal": round_flips[1],
            "challengers": [
                {"key": s.key, "kl_mean": s.kl_mean, "spread": spread(v.king_kl, by_key[s.key]),
                 "correlation": correlation(v.king_kl, by_key[s.key]), "false_dethrone_rate": s.false_dethrone_rate,
                 "power": {f"{x:g}": p for x, p in s.power.items()}, "reliable_improvement": s.reliable_improvement,
                 "flips_equal": s.flips_equal[0], "stage_flips_equal": s.flips_equal[1],
                 "flips_at_reliable": s.flips_at_reliable[0], "stage_flips_at_reliable": s.flips_at_reliable[1]}
                for s in stats
            ],
            "skipped": [{"key": k, "reason": why} for k, why in v.skipped],
        }


def _flips(exact: tuple[np.ndarray, np.ndarray], seen: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(share of resamples crowning a different model, or none; share choosing a different one) between two views."""
    crowned = np.where(exact[1], exact[0], -1), np.where(seen[1], seen[0], -1)
    return float(np.mean(crowned[0] != crowned[1])), float(np.mean(exact[0] != seen[0]))


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(r)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def format_table(report: dict) -> str:
    """The report as plain text: the rule, one row per challenger, then the round."""
    xs = list(report["power"])
    header = ["challenger", "KL", "spread", "corr", "false alone"] + [f"power @{100 * float(x):g}%" for x in xs] + [
        f"needs (power {report['reliable_power']:g})", "crown flips equal / at needs"]
    rows = [header]
    for c in report["challengers"]:
        rows.append([c["key"][:16], f"{c['kl_mean']:.6f}", _pct(c["spread"], 1), f"{c['correlation']:.2f}",
                     _pct(c["false_dethrone_rate"])]
                    + [_pct(c["power"][x]) for x in xs]
                    + [_pct(c["reliable_improvement"]), f"{_pct(c['flips_equal'])} / {_pct(c['flips_at_reliable'])}"])
    rows.append(["round", "", "", "", ""] + [_pct(report["power"][x]) for x in xs]
                + [_pct(report["reliable_improvement"]), f"{_pct(report['flips_equal'])} / {_pct(report['flips_at_reliable'])}"])
    by_k = report["false_dethrone_by_challengers"]
    lines = [f"king {report['king'][:16]} ({report['king_source']}) KL {report['king_kl']:.6f}; "
             f"{report['resamples']} resamples of n={report['n']} of the round's {report['n_round_prompts']} prompts; "
             f"per-prompt KL correlation between models: median {report['correlation_median']:.2f}, "
             f"range {report['correlation_range'][0]:.2f}–{report['correlation_range'][1]:.2f}",
             f"rule: {report['rule_text']}"]
    lines += _table(rows)
    lines.append(f"false dethrone per round, 1..{len(by_k)} challengers equal to the king: "
                 + " ".join(_pct(x) for x in by_k) + f" (worst {_pct(report['false_dethrone_rate'])} "
                 f"± {_pct(report['false_dethrone_se'])})")
    stage = "first stage" if report["rule"]["rule"] == "v3" else "test"
    lines.append(f"flips per decision (noise {report['noise']:g}, {report['diverged']} diverged prompts per round; "
                 f"worst challenger alone), crown / {stage}: {_pct(report['flips_equal'])} / "
                 f"{_pct(report['stage_flips_equal'])} at equal quality, {_pct(report['flips_at_reliable'])} / "
                 f"{_pct(report['stage_flips_at_reliable'])} at its needs; per round with {len(by_k)} equal "
                 f"challengers {_pct(report['round_flips_equal'])} / {_pct(report['round_stage_flips_equal'])}")
    for s in report["skipped"]:
        lines.append(f"skipped {s['key']}: {s['reason']}")
    return "\n".join(lines)


def format_candidates(reports: list[dict]) -> str:
    """One line per rule: the issue's comparison table, on one round."""
    rows = [["rule", "false 1 / max", "power @3%", "needs (95%)", "crown flips equal / at needs", "stage flips"]]
    for r in reports:
        by_k = r["false_dethrone_by_challengers"]
        rows.append([r["rule_text"], f"{_pct(by_k[0])} / {_pct(max(by_k))}", _pct(r["power"].get("0.03")),
                     _pct(r["reliable_improvement"]), f"{_pct(r['flips_equal'])} / {_pct(r['flips_at_reliable'])}",
                     f"{_pct(r['stage_flips_equal'])} / {_pct(r['stage_flips_at_reliable'])}"])
    first = reports[0]
    head = (f"king {first['king'][:16]} ({first['king_source']}) KL {first['king_kl']:.6f}; {first['resamples']} resamples "
            f"of n={first['n']} of the round's {first['n_round_prompts']} prompts; "
            f"{len(first['false_dethrone_by_challengers'])} challengers at most")
    return "\n".join([head, *_table(rows)])


def register(subparsers) -> None:
    p = subparsers.add_parser("dethrone", help="false-dethrone rate, power and stability of the dethrone rule on a round",
                              description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--round", required=True, action="append",
                   help="round JSON (distil-eval --json, a validator's round.json, benchmarks/rounds/*.json); repeatable")
    p.add_argument("--json", action="store_true", help="print the report as JSON (one object per round, in a list)")
    p.add_argument("--rule", choices=("v3", "v2", "one-round"), default="v3",
                   help="v3: win twice (scoring spec v3); v2: one round, epsilon 0.01, alpha 0.05 per challenger; "
                        "one-round: alpha / max_challengers per challenger (default: %(default)s)")
    p.add_argument("--power", action=argparse.BooleanOptionalAction, default=True,
                   help="measure power, needs and the flips at needs (--no-power: only the false-dethrone rates and "
                        "the flips at equal quality, much faster)")
    p.add_argument("--candidates", action="store_true", help="compare the rules issue 23 listed (distil.sim.dethrone.candidates) instead")
    p.add_argument("--n", type=int, default=None, help="prompts per simulated round (default: the round spec's n_prompts)")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help="simulated rounds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="resampling seed (default: %(default)s)")
    p.add_argument("--king", default=None, help="the king's key (default: the round's `king`, else its best model)")
    p.add_argument("--epsilon", type=float, default=None, help="dethrone margin (default: the rule's)")
    p.add_argument("--alpha", type=float, default=None,
                   help="v3 and one-round: level per round, divided by --max-challengers; v2: per challenger (default: the rule's)")
    p.add_argument("--confirm-alpha", type=float, default=None, help="v3: level of the confirmation (default: the rule's)")
    p.add_argument("--max-challengers", type=int, default=MAX_CHALLENGERS,
                   help="the divisor, and the most challengers per round simulated (default: %(default)s)")
    p.add_argument("--noise", type=float, default=NOISE, help="relative per-prompt KL noise of the second view (default: %(default)s)")
    p.add_argument("--diverged", type=int, default=DIVERGED,
                   help="prompts per round whose continuation diverged in the second view (default: %(default)s)")
    p.add_argument("--kl-limit", type=float, default=KL_LIMIT, help="models above it are left out (default: %(default)s)")
    p.add_argument("--verify", type=int, default=VERIFY,
                   help="resamples per scenario also decided by the real rule (default: %(default)s)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.max_challengers < 1:
        raise ValueError(f"--max-challengers must be at least 1, got {args.max_challengers}")
    rules = (candidates(args.max_challengers) if args.candidates else
             [make_rule(args.rule, args.epsilon, args.alpha, args.confirm_alpha, args.max_challengers)])
    reports, texts = [], []
    for path in args.round:
        doc = read_round_file(path)  # its errors name the file
        try:
            vectors = round_vectors(doc, args.king, args.kl_limit)
        except ValueError as e:  # a document that is not a usable round: say which file
            raise ValueError(f"--round {path}: {e}") from None
        n = args.n if args.n is not None else vectors.n_prompts
        mine = []
        for rule in rules:
            report = DethroneSimulation(vectors, n, args.resamples, args.seed, rule, args.verify, args.noise,
                                        args.diverged).run(power=args.power)
            report["round"] = str(path)
            mine.append(report)
        reports.extend(mine)
        texts.append(f"== {path}\n" + (format_candidates(mine) if args.candidates else format_table(mine[0])))
    print(json.dumps(reports, indent=1) if args.json else "\n\n".join(texts))
    return 0
