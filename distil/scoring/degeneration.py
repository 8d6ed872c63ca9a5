"""The degeneration guard's statistics and verdict (scoring spec v2), pure: token ids in, a verdict out.

Forward KL on teacher-written text measures how well a student predicts the teacher; it
says nothing of what the student writes by itself. A student can match the teacher's
next-token distributions on the teacher's text and still, left to generate, repeat
itself forever. So before a model is crowned it generates greedily on the round's
first K prompts, and its continuations are compared with the teacher's own
continuations of the same prompts (docs/scoring.md, "Degeneration guard (spec v2)"):

* repeated-4-gram share: 1 − distinct 4-grams / all 4-grams of a continuation (0 for
  varied text, → 1 for a loop);
* loop: the last min(`LOOP_TAIL`, half the continuation) tokens repeat one period of at
  most `MAX_PERIOD` tokens to the end, at least twice over, and the model did not stop
  (no EOS): the unbounded repetition the guard exists for;
* whether the continuation stopped with an EOS.

A trailing EOS is not content: it is left out of the 4-grams and the tail.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

NGRAM = 4
MAX_PERIOD = 32
LOOP_TAIL = 128
# A tail shorter than this is never called a loop: "!!!" at the end of a short answer is not one.
MIN_LOOP_TAIL = 16


@dataclass(frozen=True)
class ContinuationStats:
    """One continuation: its length (EOS excluded), repeated-4-gram share, tail period, EOS."""

    n_tokens: int
    repeated_ngram_share: float
    tail_period: int | None  # smallest period (≤ MAX_PERIOD) the tail repeats; None: not periodic
    stopped_with_eos: bool

    @property
    def loops(self) -> bool:
        return self.tail_period is not None and not self.stopped_with_eos


def repeated_ngram_share(tokens: Sequence[int], n: int = NGRAM) -> float:
    """1 − distinct n-grams / all n-grams; 0.0 when there are none (fewer than n tokens)."""
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    distinct = len({tuple(tokens[i : i + n]) for i in range(total)})
    return 1.0 - distinct / total


def tail_period(tokens: Sequence[int], max_period: int = MAX_PERIOD, tail: int = LOOP_TAIL,
                min_tail: int = MIN_LOOP_TAIL) -> int | None:
    """The smallest p ≤ max_period such that the last w = min(tail, len // 2) tokens satisfy
    x[i] == x[i + p] throughout (the period repeats to the end) and hold it at least twice
    (2p ≤ w); None when there is none or w < min_tail.
    """
    w = min(tail, len(tokens) // 2)
    if w < min_tail:
        return None
    window = list(tokens[-w:])
    for p in range(1, min(max_period, w // 2) + 1):
        if all(window[i] == window[i + p] for i in range(w - p)):
            return p
    return None


def continuation_stats(continuation: Sequence[int], eos_ids: Iterable[int]) -> ContinuationStats:
    """The statistics of one greedy continuation (cut after its first EOS, as generated)."""
    tokens = list(continuation)
    eos = set(eos_ids)
    stopped = bool(tokens) and tokens[-1] in eos
    if stopped:
        tokens = tokens[:-1]
    return ContinuationStats(len(tokens), repeated_ngram_share(tokens), tail_period(tokens), stopped)


@dataclass(frozen=True)
class ProbeStats:
    """One model's continuations of the K probe prompts, aggregated."""

    n: int  # continuations (K)
    loops: int  # continuations whose tail loops without stopping
    mean_repeated_ngram_share: float
    eos: int  # continuations that stopped with EOS
    mean_tokens: float

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
    `probe_min_loops`, `probe_loop_margin`, `probe_repeat_margin`; reasons in docs/scoring.md).

    DEGENERATE when loops ≥ max(min_loops, teacher loops + ⌈loop_margin × K⌉), or when
    the mean repeated-4-gram share > the teacher's + repeat_margin.
    """

    min_loops: int = 2
    loop_margin: float = 0.25
    repeat_margin: float = 0.2

    def __post_init__(self):
        if not isinstance(self.min_loops, int) or isinstance(self.min_loops, bool) or self.min_loops < 1:
            raise ValueError(f"min_loops must be a positive integer, got {self.min_loops!r}")
        for name in ("loop_margin", "repeat_margin"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")

    def loop_limit(self, k: int, teacher_loops: int) -> int:
        # the small epsilon keeps 0.25 × 16 = 4 from becoming 5 through rounding
        return max(self.min_loops, teacher_loops + math.ceil(self.loop_margin * k - 1e-9))


def degenerate(model: ProbeStats, teacher: ProbeStats,
               thresholds: DegenerationThresholds = DegenerationThresholds()) -> tuple[bool, str]:
    """(is the model DEGENERATE, a detail naming its statistics, the teacher's and the limits)."""
    if model.n != teacher.n:
        raise ValueError(f"model probed on {model.n} prompts but teacher statistics cover {teacher.n}")
    loop_limit = thresholds.loop_limit(model.n, teacher.loops)
    share_limit = teacher.mean_repeated_ngram_share + thresholds.repeat_margin
    loops_bad = model.loops >= loop_limit
    share_bad = model.mean_repeated_ngram_share > share_limit
    detail = (
        f"loops on {model.loops}/{model.n} probe prompts (teacher {teacher.loops}; DEGENERATE at ≥ {loop_limit}), "
        f"repeated 4-gram share {model.mean_repeated_ngram_share:.3f} (teacher "
        f"{teacher.mean_repeated_ngram_share:.3f}; DEGENERATE above {share_limit:.3f}), "
        f"EOS on {model.eos}/{model.n} (teacher {teacher.eos}), mean {model.mean_tokens:.1f} tokens"
    )
    return loops_bad or share_bad, detail
