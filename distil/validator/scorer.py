"""Scoring a round on the GPU: prompts from the seed, pinned downloads, the engine, results.

`EngineScorer.score(models, seed_block, seed)` is the only place where models reach the
GPU: everything before it (pre-checks, integrity, the round plan) runs on CPU, and what
it returns is plain data for `distil.scoring.epoch.apply_round`. Tests swap it for a
stub to count which models would reach the GPU.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

from loguru import logger

from distil.checks.clock import Deadlines
from distil.commitment import Commitment
from distil.eval.engine import run_round
from distil.eval.results import ModelFailure, ModelScore, RoundResult
from distil.eval.prefetch import Prefetch
from distil.eval.prompts import PromptSource, tokenize_prompts
from distil.eval.report import round_to_json
from distil.eval.spec import EvalSpec
from distil.hub.store import LocalStorageError, ModelStore, RepoUnavailable
from distil.scoring.crowning import DEGENERATE, PASSED, PROBE_INVALID, PROBE_TRANSIENT, ProbeVerdict
from distil.fingerprint import FingerprintInputs
from distil.scoring.epoch import FailedModel, RoundFingerprints, ScoredModel



@dataclass
class RoundScores:
    """What a scored round hands back: one result per model, the round document, timings."""

    results: dict[str, ScoredModel | FailedModel]
    round_json: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # The degeneration probe of this round (scoring spec v2): hotkey → verdict. None: this
    # scorer does not generate (models are crowned unprobed).
    probe: Callable[[str], ProbeVerdict] | None = None
    # Spec v3's fingerprints of this round (None: this scorer computes none, nothing is judged).
    fingerprints: RoundFingerprints | None = None


class RoundScorer(Protocol):
    def score(self, models: Sequence[tuple[str, Commitment]], seed_block: int, seed: str) -> RoundScores: ...


def to_scored(score: ModelScore) -> ScoredModel:
    copy_vector = tuple(float(x) for prompt in score.position_kl for x in prompt)
    return ScoredModel(
        kl_mean=score.kl_mean,
        kl_se=score.kl_se if score.kl_se is not None else 0.0,
        kl_median=score.kl_median,
        kl_p99=score.kl_p99,
        top1_agreement=score.top1_agreement,
        per_prompt_kl=tuple(score.per_prompt_kl),
        copy_vector=copy_vector,
        fingerprint=score.fingerprint,
    )


def to_failed(failure: ModelFailure) -> FailedModel:
    """The engine's failure as the scoring rules see it: its code (EVAL_<PHASE> unless it says
    more: CHECK_TIMEOUT, EVAL_WORKER, LOCAL_IO_ERROR...) and whether it was ours (never a strike)."""
    return FailedModel(failure.kind, failure.check_code, failure.detail, ours=failure.ours)


class EngineScorer:
    """Score king and challengers on the same block-seeded prompts and teacher continuations.

    `teacher_dir` is a local directory holding the teacher (downloaded once at start-up
    for the real hub); `prompt_source` draws the round's prompts from the seed; `devices`
    (runtime only, `--neuron.devices`): two or more score students in parallel, one worker
    process per device. Snapshots are (re)downloaded in the background while the teacher
    runs; a failed download fails that model alone (transient).

    Spec v3's fingerprints: `fingerprint_inputs` are the validator's (from its state; the
    validator sets them before each round). While they are None, each round draws private
    fingerprint prompts (a seed that is not kept) and the teacher builds the inputs from
    them; the round hands them back in `RoundScores.fingerprints` for the state to keep.
    """

    fingerprint_inputs: FingerprintInputs | None = None

    def __init__(self, store: ModelStore, spec: EvalSpec, teacher_dir: str | Path, teacher_name: str, prompt_source: PromptSource,
                 devices: Sequence[str] | None = None, deadlines: Deadlines | None = None, score_target: str | None = None):
        self.store = store
        self.deadlines = deadlines
        self.score_target = score_target  # the scoring workers' function (tests inject faults in front of it)
        self.devices = list(devices) if devices else None
        self.spec = spec
        self.teacher_dir = str(teacher_dir)
        self.teacher_name = teacher_name
        self.prompt_source = prompt_source
        self._tokenizer = None

    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.teacher_dir, trust_remote_code=False)
        return self._tokenizer

    def score(self, models: Sequence[tuple[str, Commitment]], seed_block: int, seed: str) -> RoundScores:
        with pinned(self.store, [c for _, c in models]):  # a tight cache must not evict a student before it is scored
            return self._score(models, seed_block, seed)

    def _score(self, models: Sequence[tuple[str, Commitment]], seed_block: int, seed: str) -> RoundScores:
        timings: dict[str, float] = {}
        # Snapshots the pre-check evicted (a tight cache) download again while the teacher runs.
        with Prefetch([(hotkey, functools.partial(self.store.download, c)) for hotkey, c in models]) as prefetch:
            started = time.perf_counter()
            prompts = self.prompt_source.sample(seed, self.spec.n_prompts)
            prompt_ids = tokenize_prompts(
                prompts, self.tokenizer(), self.spec.max_prompt_chars, self.spec.max_prompt_tokens, self.spec.vocab_size
            )
            timings["prompts_s"] = time.perf_counter() - started
            logger.info(f"round {seed_block}: {len(prompt_ids)} prompts from seed {seed[:18]}…")
            result = run_round(self.teacher_dir, prefetch.sources, prompt_ids, self.spec, devices=self.devices,
                               deadlines=self.deadlines, score_target=self.score_target,
                               fingerprint_inputs=self.fingerprint_inputs,
                               fingerprint_prompts=None if self.fingerprint_inputs else self.fingerprint_prompts())
        timings["download_s"] = prefetch.download_s
        timings.update({k: float(v) for k, v in result.timings.items() if not k.startswith("student_s.")})

        results: dict[str, ScoredModel | FailedModel] = {}
        for key, outcome in result.results.items():
            if isinstance(outcome, ModelScore):
                results[key] = to_scored(outcome)
            elif key in prefetch.errors:
                results[key] = download_failed(dict(models)[key], prefetch.errors[key])
            else:
                results[key] = to_failed(outcome)
        doc = round_to_json(
            seed,
            self.spec.to_dict(),
            self.prompt_source.describe(),
            self.teacher_name,
            [p.source_id for p in prompts],
            result,
        )
        doc["seed_block"] = seed_block
        doc["commitments"] = {hotkey: str(c) for hotkey, c in models}
        doc["timings"] = dict(timings)  # a record of this round (the validator adds its pre-check downloads)
        fingerprints = None
        if result.fingerprint_inputs is not None:
            fingerprints = RoundFingerprints(result.fingerprint_inputs.to_dict(), result.fingerprint_reference.to_dict())
        return RoundScores(results, doc, timings, probe=RoundProbe(self, dict(models), result, doc), fingerprints=fingerprints)

    def fingerprint_prompts(self) -> list[list[int]] | None:
        """Private fingerprint prompts for a validator that has no fingerprint inputs yet; None
        (a round without fingerprints, logged) when the prompt source cannot give them."""
        from distil.eval.fingerprint import draw_fingerprint_prompts

        try:
            return draw_fingerprint_prompts(self.prompt_source, self.tokenizer(), self.spec)
        except Exception as e:  # noqa: BLE001 - the round is scored all the same; tried again next round
            logger.warning(f"no fingerprint prompts this round ({type(e).__name__}: {e}); tried again next round")
            return None


class RoundProbe:
    """The degeneration probe of one scored round: `probe(hotkey)` loads that model again
    (its snapshot pinned meanwhile), generates greedily on the round's first K prompts, and
    judges it against the teacher's cached continuations of them. Its token ids and
    statistics go into the round JSON (the model's `probe` object); `probed` lists the
    models probed, in order (one per round when the best candidate passes)."""

    def __init__(self, scorer: EngineScorer, commitments: dict[str, Commitment], result: RoundResult, doc: dict):
        self.scorer = scorer
        self.commitments = commitments
        self.result = result
        self.doc = doc
        self.probed: list[str] = []

    def __call__(self, hotkey: str) -> ProbeVerdict:
        from distil.eval.probe import probe_one

        self.probed.append(hotkey)
        commitment = self.commitments[hotkey]
        spec = self.scorer.spec.replace(device=(self.scorer.devices or [self.scorer.spec.device])[0])
        started = time.perf_counter()
        with pinned(self.scorer.store, [commitment]):
            try:
                path = str(self.scorer.store.download(commitment))
            except Exception as e:  # the hub or our disk, not the model: decided in a later round
                self._record(hotkey, {"verdict": "failed", "failure": {"kind": "transient", "phase": "download",
                                                                      "detail": f"{type(e).__name__}: {e}"}})
                return ProbeVerdict(PROBE_TRANSIENT, f"download of {commitment}: {e}", code="DOWNLOAD", ours=True)
            outcome = probe_one(hotkey, path, self.result.prompt_ids, self.result.continuation_ids, self.result.eos_ids,
                                spec, self.scorer.deadlines)
        self.doc.setdefault("timings", {})[f"probe_s.{hotkey}"] = time.perf_counter() - started
        if isinstance(outcome, ModelFailure):
            self._record(hotkey, {"verdict": "failed", "failure": outcome.to_dict()["failure"]})
            kind = PROBE_INVALID if outcome.kind == "invalid" else PROBE_TRANSIENT
            code = outcome.code or "EVAL_PROBE"
            return ProbeVerdict(kind, f"probe {outcome.phase}: {outcome.detail}", code=code, ours=outcome.ours)
        self._record(hotkey, outcome.to_dict())
        return ProbeVerdict(DEGENERATE if outcome.degenerate else PASSED, outcome.detail, outcome.summary())

    def _record(self, hotkey: str, probe: dict) -> None:
        for model in self.doc.get("models", []):
            if model.get("key") == hotkey:
                model["probe"] = probe


def download_failed(commitment: Commitment, error: BaseException) -> FailedModel:
    """A round download that failed: transient (integrity passed moments ago: a hub hiccup,
    decided next epoch). A strike when the hub served the round's other models; never when
    our own disk failed (LocalStorageError)."""
    code = "DOWNLOAD_UNAVAILABLE" if isinstance(error, RepoUnavailable) else "DOWNLOAD"
    if isinstance(error, LocalStorageError):
        return FailedModel("transient", "LOCAL_IO_ERROR", f"download of {commitment}: {error}", ours=True)
    return FailedModel("transient", code, f"download of {commitment}: {error}")


@contextmanager
def pinned(store: ModelStore, commitments: Sequence[Commitment]):
    """Keep these snapshots out of cache eviction for the duration of the block."""
    for commitment in commitments:
        store.pin(commitment)
    try:
        yield
    finally:
        for commitment in commitments:
            store.unpin(commitment)
