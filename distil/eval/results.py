"""What scoring produces: a scored model, a failed one, a round; and their wire form.

The engine (`distil.eval.engine`), its scoring workers (`distil.eval.workers`) and the
validator all speak these types, so they live below all of them.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from loguru import logger

INVALID = "invalid"
TRANSIENT = "transient"
COPY_CHECK_PROMPTS = 2  # per-position KL vectors kept for the functional-copy check
# A student to score: its local directory, or a Future of it (a download in progress).
StudentSource = str | Future


class StudentTimeout(TimeoutError):
    """A student took longer than `spec.student_timeout_s` (transient)."""


@dataclass(frozen=True)
class ModelScore:
    """A scored model. KL in nats. per_prompt_kl[i] = mean KL over prompt i's positions;
    kl_mean = mean of per_prompt_kl; kl_se = sample std (ddof 1) / sqrt(n) (None if n < 2);
    kl_median, kl_p99 over all positions pooled (numpy linear interpolation);
    top1_agreement = fraction of positions with equal argmax; position_kl = per-position KL
    of the first COPY_CHECK_PROMPTS prompts (functional-copy check); head = "hidden"
    (cached teacher head × student lm_head) or "own_logits" (the student's logits);
    implementations = the attention / experts code paths it ran with (the validator's
    choice, `distil.checks.architecture.implementations_of`)."""

    key: str
    kl_mean: float
    kl_se: float | None
    kl_median: float
    kl_p99: float
    top1_agreement: float
    per_prompt_kl: list[float]
    n_positions: int
    position_kl: list[list[float]]
    head: str
    seconds: float
    implementations: dict = field(default_factory=dict)
    # Spec v3: `Fingerprint.to_dict()` on the validator's private fingerprint inputs, when the
    # round computed fingerprints (distil.eval.fingerprint). Not in the published round JSON.
    fingerprint: dict | None = None
    ok: bool = field(default=True, init=False)

    def to_dict(self) -> dict:
        """JSON form (without `seconds`, so the same round gives the same JSON, and without the
        fingerprint, which is the validator's own record)."""
        return {"key": self.key, "status": "ok",
                **{k: v for k, v in asdict(self).items() if k not in ("key", "ok", "seconds", "fingerprint")}}


@dataclass(frozen=True)
class ModelFailure:
    """A model that could not be scored: kind is "invalid" (disqualify) or "transient" (retry).

    `code`: the check code when the phase's default (`EVAL_<PHASE>`) does not say it
    (`CHECK_TIMEOUT`, `EVAL_WORKER`, `LOCAL_IO_ERROR`, ...). `ours`: the failure is the
    validator's (its disk, its stop), never counted against the model."""

    key: str
    kind: str
    phase: str
    detail: str
    seconds: float = 0.0
    code: str | None = None
    ours: bool = False
    ok: bool = field(default=False, init=False)

    @property
    def check_code(self) -> str:
        return self.code or f"EVAL_{self.phase.upper()}"

    def to_dict(self) -> dict:
        return {"key": self.key, "status": "failed",
                "failure": {"kind": self.kind, "phase": self.phase, "code": self.check_code, "ours": self.ours,
                            "detail": self.detail}}


def download_failure(key: str, exc: BaseException) -> ModelFailure:
    """A student whose download failed: our side or the hub's, never the model's verdict."""
    logger.warning(f"{key}: transient failure while downloading: {type(exc).__name__}: {exc}")
    return ModelFailure(key, TRANSIENT, "download", f"{type(exc).__name__}: {exc}", code="DOWNLOAD")


def check_unique(students: list[tuple[str, StudentSource]]) -> None:
    keys = [k for k, _ in students]
    if len(set(keys)) != len(keys):
        raise ValueError(f"student keys must be unique, got {keys}")


@dataclass
class RoundResult:
    """A scored round: the cache's ids, one result per student, phase timings (seconds),
    the devices it ran on (the teacher on the first) and the teacher's code paths."""

    prompt_ids: list[list[int]]
    continuation_ids: list[list[int]]
    eos_ids: list[int]
    results: dict[str, ModelScore | ModelFailure]
    timings: dict
    devices: list[str] = field(default_factory=list)
    teacher_implementations: dict = field(default_factory=dict)  # the teacher's code paths (see ModelScore)
    # Spec v3's fingerprints: the inputs every student of the round was fingerprinted on, and
    # the teacher's own fingerprint on them (the reference distances are measured against);
    # None when the round computed none.
    fingerprint_inputs: Any = None  # distil.fingerprint.FingerprintInputs
    fingerprint_reference: Any = None  # distil.fingerprint.Fingerprint


def result_to_wire(result: ModelScore | ModelFailure) -> dict:
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.init}
    return {"ok": result.ok, **fields}


def result_from_wire(data: dict) -> ModelScore | ModelFailure:
    data = dict(data)
    return (ModelScore if data.pop("ok") else ModelFailure)(**data)
