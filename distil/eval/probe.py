"""The degeneration probe (scoring spec v2): a would-be king generates on its own.

A model about to be crowned generates greedily on the round's first K =
`spec.probe_count` prompts, up to `spec.max_new_tokens`, with the teacher pass's own
batched bare-greedy code (`teacher.greedy_generate`: the repo's generation_config is
ignored, the teacher's EOS ids stop it), and its continuations are compared with the
teacher's cached continuations of the same prompts (`distil.scoring.degeneration`).

`probe_verdict` is pure (token ids in, verdict out): `distil-eval --round` recomputes the
verdict of a published round from the ids the round JSON holds. `probe_one` runs the
model's generation in its own worker process within a deadline, like scoring
(`distil.eval.workers`); it never raises (a failure is a `ModelFailure`, classified like a
scoring failure).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from loguru import logger

from distil.checks.clock import Deadlines, baseline, default_deadlines
from distil.checks.sandbox import ChildDied, ChildError, StepTimeout, run_step
from distil.eval.engine import with_loaded_model
from distil.eval.results import ModelFailure, result_from_wire, result_to_wire
from distil.eval.spec import EvalSpec
from distil.eval.teacher import greedy_generate
from distil.eval.workers import isolation_failure, model_size
from distil.scoring.degeneration import ProbeStats, degenerate, probe_stats

PASSED = "passed"
DEGENERATE = "DEGENERATE"
PROBE_TARGET = "distil.eval.probe:probe_child"


@dataclass(frozen=True)
class ProbeResult:
    """One model's probe: its K continuations, their statistics, the teacher's, the verdict."""

    key: str
    degenerate: bool
    detail: str
    stats: ProbeStats
    teacher_stats: ProbeStats
    continuation_ids: list[list[int]]
    seconds: float = 0.0
    ok: bool = True

    @property
    def verdict(self) -> str:
        return DEGENERATE if self.degenerate else PASSED

    def summary(self) -> str:
        """`passed (loops 0/8, repeated 4-grams 0.012 vs teacher 0.010)`."""
        return (f"{self.verdict} (loops {self.stats.loops}/{self.stats.n}, repeated 4-grams "
                f"{self.stats.mean_repeated_ngram_share:.3f} vs teacher {self.teacher_stats.mean_repeated_ngram_share:.3f})")

    def to_dict(self) -> dict:
        """The round JSON's `probe` object (no timing: the same round gives the same JSON)."""
        return {
            "verdict": self.verdict,
            "detail": self.detail,
            "k": self.stats.n,
            "stats": self.stats.to_dict(),
            "teacher_stats": self.teacher_stats.to_dict(),
            "continuation_ids": self.continuation_ids,
        }


def probe_verdict(key: str, continuations: list[list[int]], teacher_continuations: list[list[int]],
                  eos_ids: list[int], spec: EvalSpec, seconds: float = 0.0) -> ProbeResult:
    """The verdict on a model's K continuations against the teacher's first K (pure)."""
    k = spec.probe_count
    if len(continuations) != k or len(teacher_continuations) < k:
        raise ValueError(f"the probe needs {k} continuations of the model and of the teacher, "
                         f"got {len(continuations)} and {len(teacher_continuations)}")
    model_stats = probe_stats(continuations, eos_ids)
    teacher_stats = probe_stats(teacher_continuations[:k], eos_ids)
    flagged, detail = degenerate(model_stats, teacher_stats, spec.degeneration_thresholds())
    return ProbeResult(key, flagged, detail, model_stats, teacher_stats, [list(c) for c in continuations], seconds)


def probe_child(key: str, path: str, prompt_ids: list[list[int]], eos_ids: list[int], spec: dict) -> dict:
    """In a worker (distil.eval.workers): the model's greedy continuations of the probe prompts,
    or its failure. The verdict is the caller's: a pure function of the ids."""
    from distil.eval.workers import sync_device

    spec = EvalSpec(**spec)
    k = spec.probe_count
    logger.info(f"{key}: degeneration probe, greedy on {k} prompts, ≤{spec.max_new_tokens} new tokens")

    def generate(model) -> list[list[int]]:
        continuations = greedy_generate(model, prompt_ids[:k], spec.max_new_tokens, list(eos_ids),
                                        spec.generation_batch_size, who=key)
        sync_device(spec.device)
        return continuations

    outcome = with_loaded_model(key, path, spec, spec.vocab_size, "probe", generate)
    if isinstance(outcome, ModelFailure):
        return {"failure": result_to_wire(outcome)}
    return {"continuations": outcome}


def probe_one(key: str, path: str, prompt_ids: list[list[int]], teacher_continuations: list[list[int]],
              eos_ids: list[int], spec: EvalSpec, deadlines: Deadlines | None = None) -> ProbeResult | ModelFailure:
    """Probe the model at `path` in its own worker process, within its deadline (like scoring:
    `distil.eval.workers`). Never raises: a failed probe is that model's result, a `ModelFailure`
    (its load or generation failed, it ran past its deadline, its process died)."""
    deadlines = deadlines or default_deadlines()
    k = spec.probe_count
    size = model_size(path)
    deadline = deadlines.probe(baseline(spec.device), spec.student_timeout_s, weight_bytes=size.weight_bytes,
                               params=size.params, prompts=k, prompt_tokens=sum(map(len, prompt_ids[:k])),
                               max_new_tokens=spec.max_new_tokens, batch_size=spec.generation_batch_size,
                               vocab_size=spec.vocab_size, hidden_size=size.hidden_size, tensors=size.tensors)
    started = time.perf_counter()
    try:
        report = run_step(PROBE_TARGET, {"key": key, "path": path, "prompt_ids": prompt_ids[:k], "eos_ids": list(eos_ids),
                                         "spec": dataclasses.asdict(spec)}, step=f"probe of {key}", deadline_s=deadline)
    except (StepTimeout, ChildDied, ChildError) as e:
        failure = isolation_failure(key, "probe", e, time.perf_counter() - started)
        logger.warning(f"{key}: probe {failure.kind} failure ({failure.check_code}): {failure.detail}")
        return failure
    if "failure" in report.value:
        return result_from_wire(report.value["failure"])
    result = probe_verdict(key, report.value["continuations"], teacher_continuations, eos_ids, spec,
                           time.perf_counter() - started)
    log = logger.warning if result.degenerate else logger.info
    log(f"{key}: probe {result.summary()} in {result.seconds:.1f}s")
    return result
