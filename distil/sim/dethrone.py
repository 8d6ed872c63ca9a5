"""`python -m distil.sim dethrone`: the dethrone rule's false-dethrone rate and power, measured.

Method. A round gives, for the king and each challenger, one KL per prompt, scored on
the same prompts. Resampling those prompts with replacement (`n` of them, `resamples`
times, one seeded generator; every model and scenario sees the same resampled prompt
indices, as the models of one round see the same prompts) imitates drawing other
rounds of the same kind. For each challenger and scenario the challenger's vector is
scaled so that its true mean (over the round's prompts) is exactly

* the king's mean: a challenger *truly equal* to the king. Every dethrone is then a
  false one; their share is the **false-dethrone rate**;
* (1 − x) × the king's mean for x = 1, 2, 3, 5, 10 %: a challenger truly better by x.
  The share of resamples where it takes the crown is the rule's **power** at x.

Scaling keeps the challenger's per-prompt shape (which prompts are hard for it) and its
pairing with the king, which is what the paired t-test feeds on.

The rule applied to each resample is `distil.scoring.rules.dethrones` (margin ε and the
paired one-sided t-test). It is evaluated over all resamples at once by `dethrone_mask`,
a numpy mirror of that function; every run also calls the real function on the first
`verify` resamples of every challenger and scenario and stops with an error if a
single decision differs (tests/test_sim.py checks the mirror on thousands of cases).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from distil.scoring.rules import ALPHA, EPSILON, KL_LIMIT, dethrones
from distil.sim.rounds import RoundVectors, read_round_file, round_vectors

IMPROVEMENTS = (0.01, 0.02, 0.03, 0.05, 0.10)
RESAMPLES = 10_000
VERIFY = 200
RELIABLE_POWER = 0.95


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


def scaled(vector: np.ndarray, target_mean: float) -> np.ndarray:
    """`vector` scaled so that its mean is `target_mean` (its per-prompt shape kept)."""
    mean = float(np.mean(vector))
    if not mean > 0:
        raise ValueError(f"cannot scale a per-prompt KL vector of mean {mean} to {target_mean}")
    return vector * (target_mean / mean)


@dataclass(frozen=True)
class ChallengerStats:
    key: str
    kl_mean: float
    false_dethrone_rate: float
    power: dict[float, float]
    reliable_improvement: float | None  # smallest x with power ≥ the reliable level (None: not up to 50 %)


class DethroneSimulation:
    """The resampled rounds of one round file: `rate(challenger, improvement)` and friends."""

    def __init__(self, vectors: RoundVectors, n: int, resamples: int, seed: int,
                 epsilon: float = EPSILON, alpha: float = ALPHA, verify: int = VERIFY):
        if n < 1 or resamples < 1:
            raise ValueError(f"--n and --resamples must be positive (got {n}, {resamples})")
        self.vectors, self.epsilon, self.alpha, self.verify = vectors, epsilon, alpha, min(verify, resamples)
        self.king = np.asarray(vectors.king_kl, dtype=np.float64)
        self.king_mean = float(np.mean(self.king))
        if not self.king_mean > 0:
            raise ValueError(f"the king's KL is {self.king_mean}: no challenger can be better by a fraction of it")
        rng = np.random.default_rng(seed)
        self.index = rng.integers(0, len(self.king), size=(resamples, n))
        self.king_rows = self.king[self.index]
        self.verified = 0

    def mask(self, challenger: tuple[float, ...], improvement: float) -> np.ndarray:
        """Per resample: does a challenger of this shape, truly better by `improvement`, dethrone?"""
        vector = scaled(np.asarray(challenger, dtype=np.float64), (1.0 - improvement) * self.king_mean)
        rows = vector[self.index]
        fired = dethrone_mask(self.king_rows, rows, self.epsilon, self.alpha)
        self._check_against_rules(rows, fired)
        return fired

    def _check_against_rules(self, rows: np.ndarray, fired: np.ndarray) -> None:
        for r in range(self.verify):
            king, challenger = self.king_rows[r], rows[r]
            real = dethrones(float(np.mean(challenger)), challenger.tolist(), float(np.mean(king)), king.tolist(),
                             self.epsilon, self.alpha)
            if real.dethrones != bool(fired[r]):
                raise RuntimeError(f"the vectorised rule differs from distil.scoring.rules.dethrones on resample {r} "
                                   f"({real.reason}); this is a bug in distil.sim")
        self.verified += self.verify

    def reliable_improvement(self, challenger: tuple[float, ...], level: float, upper: float = 0.5,
                             steps: int = 12) -> float | None:
        """Smallest improvement (to 1/2^steps of `upper`) whose power reaches `level`; None if not by `upper`."""
        if self.mask(challenger, upper).mean() < level:
            return None
        low, high = 0.0, upper
        for _ in range(steps):
            mid = (low + high) / 2
            if self.mask(challenger, mid).mean() >= level:
                high = mid
            else:
                low = mid
        return high

    def run(self, improvements=IMPROVEMENTS, reliable_level: float = RELIABLE_POWER) -> dict:
        per_challenger: list[ChallengerStats] = []
        any_false = np.zeros(len(self.index), dtype=bool)
        for key, vector in self.vectors.challengers:
            equal = self.mask(vector, 0.0)
            any_false |= equal
            power = {x: float(self.mask(vector, x).mean()) for x in improvements}
            per_challenger.append(ChallengerStats(key, float(np.mean(vector)), float(equal.mean()), power,
                                                  self.reliable_improvement(vector, reliable_level)))
        return self._report(per_challenger, float(any_false.mean()), improvements, reliable_level)

    def _report(self, stats: list[ChallengerStats], round_false: float, improvements, reliable_level) -> dict:
        resamples, n = self.index.shape
        v = self.vectors
        reliable = [s.reliable_improvement for s in stats]
        return {
            "format": "distil-sim-dethrone",
            "scoring_version": v.scoring_version,
            "seed_block": v.seed_block,
            "king": v.king,
            "king_source": v.king_source,
            "king_kl": self.king_mean,
            "n_round_prompts": v.n_round_prompts,
            "n": n,
            "resamples": resamples,
            "epsilon": self.epsilon,
            "alpha": self.alpha,
            "verified_against_rules": self.verified,
            # one round with all of these challengers, each truly equal to the king: P(someone is crowned)
            "false_dethrone_rate": round_false,
            "false_dethrone_se": math.sqrt(round_false * (1 - round_false) / resamples),
            # a typical challenger of this round (mean over challengers), truly better by x: P(crowned)
            "power": {f"{x:g}": float(np.mean([s.power[x] for s in stats])) for x in improvements},
            "reliable_power": reliable_level,
            "reliable_improvement": None if None in reliable else max(reliable),
            "challengers": [
                {"key": s.key, "kl_mean": s.kl_mean, "false_dethrone_rate": s.false_dethrone_rate,
                 "power": {f"{x:g}": p for x, p in s.power.items()}, "reliable_improvement": s.reliable_improvement}
                for s in stats
            ],
            "skipped": [{"key": k, "reason": why} for k, why in v.skipped],
        }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def format_table(report: dict) -> str:
    """The report as a plain-text table: one row per challenger, then the round."""
    xs = list(report["power"])
    header = ["challenger", "KL", "false dethrone"] + [f"power @{100 * float(x):g}%" for x in xs] + [
        f"needs (power {report['reliable_power']:g})"]
    rows = [header]
    for c in report["challengers"]:
        rows.append([c["key"][:16], f"{c['kl_mean']:.6f}", _pct(c["false_dethrone_rate"])]
                    + [_pct(c["power"][x]) for x in xs] + [_pct(c["reliable_improvement"])])
    rows.append(["round (any)", "", _pct(report["false_dethrone_rate"])] + [_pct(report["power"][x]) for x in xs]
                + [_pct(report["reliable_improvement"])])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [f"king {report['king'][:16]} ({report['king_source']}) KL {report['king_kl']:.6f}; "
             f"{report['resamples']} resamples of n={report['n']} of the round's {report['n_round_prompts']} prompts; "
             f"epsilon {report['epsilon']:g}, alpha {report['alpha']:g}"]
    for i, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j]) for j, cell in enumerate(r)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for s in report["skipped"]:
        lines.append(f"skipped {s['key']}: {s['reason']}")
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser("dethrone", help="false-dethrone rate and power of the dethrone rule on a round",
                              description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--round", required=True, help="round JSON (distil-eval --json, or a validator's round.json)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--n", type=int, default=None, help="prompts per simulated round (default: the round spec's n_prompts)")
    p.add_argument("--resamples", type=int, default=RESAMPLES, help="simulated rounds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="resampling seed (default: %(default)s)")
    p.add_argument("--king", default=None, help="the king's key (default: the round's `king`, else its best model)")
    p.add_argument("--epsilon", type=float, default=EPSILON, help="dethrone margin (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=ALPHA, help="paired t-test level (default: %(default)s)")
    p.add_argument("--kl-limit", type=float, default=KL_LIMIT, help="models above it are left out (default: %(default)s)")
    p.add_argument("--verify", type=int, default=VERIFY,
                   help="resamples per challenger and scenario also decided by the real rule (default: %(default)s)")
    p.set_defaults(run=run)


def run(args) -> int:
    doc = read_round_file(args.round)  # its errors name the file
    try:
        vectors = round_vectors(doc, args.king, args.kl_limit)
    except ValueError as e:  # a document that is not a usable round: say which file
        raise ValueError(f"--round {args.round}: {e}") from None
    n = args.n if args.n is not None else vectors.n_prompts
    report = DethroneSimulation(vectors, n, args.resamples, args.seed, args.epsilon, args.alpha, args.verify).run()
    report["round"] = str(args.round)
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    return 0
