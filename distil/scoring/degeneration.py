"""The degeneration guard's statistics and verdict (scoring spec v3), pure: token ids in, a verdict out.

Forward KL on teacher-written text measures how well a student predicts the teacher; it
says nothing of what the student writes by itself. A student can match the teacher's
next-token distributions on the teacher's text and still, left to generate, repeat
itself forever, or say nothing at all. So before a model is crowned it generates
greedily on the round's first K prompts, and its continuations are compared with the
teacher's own continuations of the same prompts (docs/scoring.md, "Degeneration guard"):

* length: the tokens generated before the EOS (a model that stops at once says nothing);
* repeated-4-gram share: 1 − distinct 4-grams / all 4-grams of a continuation (0 for
  varied text, → 1 for a loop);
* loop: anywhere in the continuation, its tail included, one block of at most
  `MAX_PERIOD` tokens repeats back to back at least `MIN_REPEATS` times over at least
  `loop_min_tokens(len)` tokens (64 for a continuation of 128 tokens or more), whether or
  not the model stopped afterwards: a user reads the repetition either way;
* whether the continuation stopped with an EOS.

A trailing EOS is not content: it is left out of the length, the 4-grams and the loops.

Spec v2 looked for loops only in the last min(128, len // 2) tokens, and only when the
model did not stop: a 92-token loop at the end of a 512-token continuation, or a model
that stopped at once on every prompt, passed. Spec v3 closes both.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

NGRAM = 4
MAX_PERIOD = 32
# A loop repeats its block at least this many times back to back: two copies of a phrase
# (a refrain, "New York, New York") is text; three in a row of the same block is a habit.
MIN_REPEATS = 3
# A repeated stretch covering this many tokens is a loop (about three sentences of
# English); shorter continuations need half their length, never under MIN_LOOP_TOKENS.
LOOP_TOKENS = 64
# A stretch shorter than this is never called a loop: "!!!" at the end of a short answer is not one.
MIN_LOOP_TOKENS = 16


def loop_min_tokens(n_tokens: int) -> int:
    """Tokens a repeated stretch must cover to be a loop in a continuation of `n_tokens`:
    min(LOOP_TOKENS, max(MIN_LOOP_TOKENS, n_tokens // 2)) (64 from 128 tokens up, 16 at 32)."""
    return min(LOOP_TOKENS, max(MIN_LOOP_TOKENS, n_tokens // 2))


@dataclass(frozen=True)
class ContinuationStats:
    """One continuation: its length (EOS excluded), repeated-4-gram share, longest loop, EOS."""

    n_tokens: int
    repeated_ngram_share: float
    loop_tokens: int  # tokens covered by the longest repeated stretch (0: none)
    loop_period: int | None  # its block length (≤ MAX_PERIOD); None: none
    stopped_with_eos: bool

    @property
    def loops(self) -> bool:
        return self.loop_period is not None and self.loop_tokens >= loop_min_tokens(self.n_tokens)


def repeated_ngram_share(tokens: Sequence[int], n: int = NGRAM) -> float:
    """1 − distinct n-grams / all n-grams; 0.0 when there are none (fewer than n tokens)."""
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    distinct = len({tuple(tokens[i : i + n]) for i in range(total)})
    return 1.0 - distinct / total


def longest_loop(tokens: Sequence[int], max_period: int = MAX_PERIOD, min_repeats: int = MIN_REPEATS) -> tuple[int, int | None]:
    """(tokens covered, period) of the longest stretch, anywhere in `tokens`, where a block
    of p ≤ max_period tokens repeats back to back at least `min_repeats` times:
    x[i] == x[i + p] for every i of the stretch but its last p tokens, and the stretch covers
    ≥ min_repeats × p tokens (a partial last copy counts). (0, None) when there is none. The
    longest stretch wins; of equally long ones, the smallest period.

    Cost: O(max_period × len) comparisons (16 prompts × 512 tokens × 32 periods ≈ 0.3 M).
    """
    x = list(tokens)
    best, best_p = 0, None
    for p in range(1, min(max_period, len(x)) + 1):
        run = 0  # consecutive i with x[i] == x[i + p]; the stretch covers run + p tokens
        for i in range(len(x) - p):
            if x[i] == x[i + p]:
                run += 1
                covered = run + p
                if covered > best and covered >= min_repeats * p:
                    best, best_p = covered, p
            else:
                run = 0
    return best, best_p


def continuation_stats(continuation: Sequence[int], eos_ids: Iterable[int]) -> ContinuationStats:
    """The statistics of one greedy continuation (cut after its first EOS, as generated)."""
    tokens = list(continuation)
    eos = set(eos_ids)
    stopped = bool(tokens) and tokens[-1] in eos
    if stopped:
        tokens = tokens[:-1]
    covered, period = longest_loop(tokens)
    return ContinuationStats(len(tokens), repeated_ngram_share(tokens), covered, period, stopped)


@dataclass(frozen=True)
class ProbeStats:
    """One model's continuations of the K probe prompts, aggregated."""

    n: int  # continuations (K)
    loops: int  # continuations with a loop (ContinuationStats.loops)
    mean_repeated_ngram_share: float
    eos: int  # continuations that stopped with EOS
    mean_tokens: float  # generated tokens per continuation, EOS excluded

    def to_dict(self) -> dict:
        return asdict(self)


def aggregate(stats: Sequence[ContinuationStats]) -> ProbeStats:
    if not stats:
        raise ValueError("no continuations to aggregate: the probe needs at least one prompt")
    n = len(stats)
    return ProbeStats(
        n=n,
        loops=sum(s.loops for s in stats),
        mean_repeated_ngram_share=math.fsum(s.repeated_ngram_share for s in stats) / n,
        eos=sum(s.stopped_with_eos for s in stats),
        mean_tokens=math.fsum(s.n_tokens for s in stats) / n,
    )


def probe_stats(continuations: Sequence[Sequence[int]], eos_ids: Iterable[int]) -> ProbeStats:
    eos = list(eos_ids)
    return aggregate([continuation_stats(c, eos) for c in continuations])


@dataclass(frozen=True)
class DegenerationThresholds:
    """When a model's own generations are clearly worse than the teacher's (EvalSpec fields
    `probe_min_loops`, `probe_loop_margin`, `probe_repeat_margin`, `probe_length_ratio`;
    reasons in docs/scoring.md).

    DEGENERATE when loops ≥ max(min_loops, teacher loops + ⌈loop_margin × K⌉), or when
    the mean repeated-4-gram share > the teacher's + repeat_margin, or when the mean
    generated length < length_ratio × the teacher's (0 turns the length rule off).
    """

    min_loops: int = 2
    loop_margin: float = 0.25
    repeat_margin: float = 0.2
    length_ratio: float = 0.25

    def __post_init__(self):
        if not isinstance(self.min_loops, int) or isinstance(self.min_loops, bool) or self.min_loops < 1:
            raise ValueError(f"min_loops must be a positive integer, got {self.min_loops!r}")
        for name in ("loop_margin", "repeat_margin", "length_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")

    def loop_limit(self, k: int, teacher_loops: int) -> int:
        # the small epsilon keeps 0.25 × 16 = 4 from becoming 5 through rounding
        return max(self.min_loops, teacher_loops + math.ceil(self.loop_margin * k - 1e-9))

    def length_limit(self, teacher_mean_tokens: float) -> float:
        return self.length_ratio * teacher_mean_tokens


def degenerate(model: ProbeStats, teacher: ProbeStats,
               thresholds: DegenerationThresholds = DegenerationThresholds()) -> tuple[bool, str]:
    """(is the model DEGENERATE, a detail naming its statistics, the teacher's and the limits)."""
    if model.n != teacher.n:
        raise ValueError(f"model probed on {model.n} prompts but teacher statistics cover {teacher.n}")
    loop_limit = thresholds.loop_limit(model.n, teacher.loops)
    share_limit = teacher.mean_repeated_ngram_share + thresholds.repeat_margin
    length_limit = thresholds.length_limit(teacher.mean_tokens)
    loops_bad = model.loops >= loop_limit
    share_bad = model.mean_repeated_ngram_share > share_limit
    short = model.mean_tokens < length_limit
    detail = (
        f"loops on {model.loops}/{model.n} probe prompts (teacher {teacher.loops}; DEGENERATE at ≥ {loop_limit}), "
        f"repeated 4-gram share {model.mean_repeated_ngram_share:.3f} (teacher "
        f"{teacher.mean_repeated_ngram_share:.3f}; DEGENERATE above {share_limit:.3f}), "
        f"mean {model.mean_tokens:.1f} tokens generated (teacher {teacher.mean_tokens:.1f}; DEGENERATE below "
        f"{length_limit:.1f}), EOS on {model.eos}/{model.n} (teacher {teacher.eos})"
    )
    return loops_bad or share_bad or short, detail
