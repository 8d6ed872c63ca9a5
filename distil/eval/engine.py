"""Scoring a round: the teacher pass, then each student against the cached teacher.

`run_round` = load teacher → `build_teacher_cache` → free teacher → `score_models`.
`score_models` scores each student alone: a failure fails that student only, and is
classified `invalid` (the model is at fault: bad config, weights, vocabulary, non-finite
KL — the validator disqualifies) or `transient` (out of memory, timeout, missing local
files, any error we cannot pin on the model — retried later, never a disqualification).
Unattributable errors are transient on purpose: a transient failure never earns a
score, so it cannot crown a model, while an `invalid` is final and must be certain.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
import traceback
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from distil.checks.architecture import implementations_of
from distil.checks.clock import Deadlines
from distil.checks.loading import InvalidModel, free_memory, load_causal_lm
from distil.eval.fingerprint import build_fingerprint_inputs, compute_fingerprint
from distil.eval.kl import kl_block, kl_from_hidden
from distil.eval.models import final_hidden, head_of, own_logits_reason
from distil.eval.results import (COPY_CHECK_PROMPTS, INVALID, TRANSIENT, ModelFailure, ModelScore, RoundResult,
                                 StudentSource, StudentTimeout, check_unique, download_failure, result_to_wire)
from distil.eval.spec import EvalSpec
from distil.eval.teacher import TeacherCache, build_teacher_cache, scored_input
from distil.eval.workers import SCORE_TARGET, RoundShape, score_students, sync_device
from distil.fingerprint import Fingerprint, FingerprintError, FingerprintInputs, parse_fingerprint_inputs
from distil.hub.store import local_io_failure


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, (torch.OutOfMemoryError, MemoryError)) or "out of memory" in str(exc).lower()


def classify_failure(exc: BaseException, phase: str) -> str:
    """`invalid` if the model is at fault, else `transient`.

    InvalidModel ⇒ invalid. OOM, timeouts, connection errors, a missing local directory, our
    own disk or file table failing (EIO, ENOSPC, EMFILE, ENODEV...: `failure_code` says
    LOCAL_IO_ERROR) ⇒ transient. While loading ("load"), errors from reading the model's own
    files (bad or inconsistent config, unparseable weights: ValueError, KeyError, TypeError,
    other OSErrors, RuntimeError such as size mismatches, JSON and safetensors errors) ⇒
    invalid. Anything else, and any unexpected error while scoring ⇒ transient.
    """
    if isinstance(exc, InvalidModel):
        return INVALID
    if _is_oom(exc) or isinstance(exc, (TimeoutError, ConnectionError, FileNotFoundError)):
        return TRANSIENT
    if failure_code(exc) == LOCAL_IO_ERROR:
        return TRANSIENT
    if phase == "load":
        from safetensors import SafetensorError

        if isinstance(exc, (ValueError, KeyError, TypeError, OSError, RuntimeError, json.JSONDecodeError, SafetensorError)):
            return INVALID
    return TRANSIENT


LOCAL_IO_ERROR = "LOCAL_IO_ERROR"  # the check code of our own disk's failures (distil.checks.codes)


def failure_code(exc: BaseException) -> str | None:
    """LOCAL_IO_ERROR when `exc` is our own disk's or file table's failure (never a strike, never
    a verdict on the model): EIO, ENOSPC, EMFILE, ENODEV... anywhere in its causes, or a file
    of the checked snapshot missing (safetensors also says FileNotFoundError when the file
    table is full). Else None."""
    mine = isinstance(exc, FileNotFoundError) or local_io_failure("", exc) is not None
    return LOCAL_IO_ERROR if mine else None


def summarize(key: str, position_kl: list[np.ndarray], agree: list[np.ndarray], head: str, seconds: float) -> ModelScore:
    """Statistics of one model from per-prompt arrays of per-position KL and agreement."""
    per_prompt = [float(np.mean(k, dtype=np.float64)) for k in position_kl]
    pooled = np.concatenate(position_kl).astype(np.float64)
    n = len(per_prompt)
    se = float(np.std(per_prompt, ddof=1) / math.sqrt(n)) if n > 1 else None
    return ModelScore(
        key=key,
        kl_mean=float(np.mean(per_prompt)),
        kl_se=se,
        kl_median=float(np.median(pooled)),
        kl_p99=float(np.percentile(pooled, 99)),
        top1_agreement=float(np.concatenate(agree).mean()),
        per_prompt_kl=per_prompt,
        n_positions=int(pooled.size),
        position_kl=[k.astype(np.float64).tolist() for k in position_kl[:COPY_CHECK_PROMPTS]],
        head=head,
        seconds=seconds,
    )


@torch.no_grad()
def own_logits_kl(model, cache: TeacherCache, i: int, spec: EvalSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """KL of prompt i from the student's OWN logits, `spec.own_logits_chunk` positions per
    forward (prefill of the unscored prefix, then chunks with the KV cache), so [T, V]
    logits never exist; the teacher side is cached hidden × teacher lm_head."""
    device = cache.hidden[i].device
    x, first = scored_input(cache.prompt_ids[i], cache.continuation_ids[i])
    ids = torch.tensor([x], device=spec.device)
    past = None
    if first > 0:
        past = model(input_ids=ids[:, :first], use_cache=True, logits_to_keep=1).past_key_values
    kls, agrees = [], []
    for a in range(first, len(x), spec.own_logits_chunk):
        out = model(input_ids=ids[:, a : a + spec.own_logits_chunk], past_key_values=past, use_cache=True)
        past = out.past_key_values
        s_logits = out.logits[0]
        for r in range(0, s_logits.shape[0], spec.chunk_size):
            s = s_logits[r : r + spec.chunk_size].to(device).float()
            start = a - first + r  # scored-position index of this block's first row
            t = cache.head.logits(cache.hidden[i][start : start + s.shape[0]]).float()
            kl, agree = kl_block(t, s)
            kls.append(kl)
            agrees.append(agree)
    return torch.cat(kls), torch.cat(agrees)


@torch.no_grad()
def _probe_plain_head(model, cache: TeacherCache, spec: EvalSpec) -> str | None:
    """Check on prompt 0 that lm_head(final hidden) reproduces the model's own logits."""
    x, first = scored_input(cache.prompt_ids[0], cache.continuation_ids[0])
    k = min(8, len(x) - first)
    ids = torch.tensor([x], device=spec.device)
    own = model(input_ids=ids, use_cache=False, logits_to_keep=k).logits[0].float()
    mine = head_of(model).logits(final_hidden(model, ids)[-k:]).float()
    scale = max(1.0, float(own.abs().max()))
    tol = (1e-4 if model.dtype == torch.float32 else 2.0**-6) * scale
    diff = float((own - mine).abs().max())
    if not diff <= tol:
        return f"lm_head(final hidden) differs from the model's logits by {diff:.3g} (tolerance {tol:.3g})"
    return None


@torch.no_grad()
def score_student(model, cache: TeacherCache, spec: EvalSpec, key: str, deadline: float) -> ModelScore:
    """Score one loaded student on every cached prompt (raises on failure)."""
    started = time.perf_counter()
    reason = own_logits_reason(model.config) or _probe_plain_head(model, cache, spec)
    head = "hidden" if reason is None else "own_logits"
    if reason:
        logger.info(f"{key}: scoring from its own logits ({reason})")
    s_head = head_of(model)
    kls, agrees = [], []
    for i in range(len(cache.prompt_ids)):
        if time.monotonic() > deadline:
            raise StudentTimeout(f"{key} exceeded {spec.student_timeout_s}s after {i} of {len(cache.prompt_ids)} prompts")
        if head == "hidden":
            x, first = scored_input(cache.prompt_ids[i], cache.continuation_ids[i])
            s_hidden = final_hidden(model, torch.tensor([x], device=spec.device))[first:]
            kl, agree = kl_from_hidden(cache.hidden[i], cache.head, s_hidden, s_head, spec.chunk_size, spec.compile_kl)
        else:
            kl, agree = own_logits_kl(model, cache, i, spec)
        kl = kl.cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(kl))
        if bad.size:
            raise InvalidModel(f"non-finite KL ({kl[bad[0]]}) at prompt {i}, position {int(bad[0])}")
        kls.append(kl)
        agrees.append(agree.cpu().numpy())
    score = summarize(key, kls, agrees, head, time.perf_counter() - started)
    return dataclasses.replace(score, implementations=implementations_of(model))  # recorded in the round JSON


def with_loaded_model(key: str, path: str, spec: EvalSpec, vocab_size: int, phase: str, work):
    """Load the model at local `path` (`spec.torch_dtype` on `spec.device`), return
    `work(model)`, free it. Never raises: a failure while loading or in `work` (`phase`
    names it) is caught, classified and returned as a ModelFailure. Scoring and the
    degeneration probe both go through here, so they load and fail alike."""
    started = time.perf_counter()
    step, model = "load", None
    try:
        model = load_causal_lm(path, spec.device, spec.torch_dtype, vocab_size)
        step = phase
        return work(model)
    except Exception as exc:  # one model failing fails that model alone
        kind, code = classify_failure(exc, step), failure_code(exc)
        detail = f"{type(exc).__name__}: {exc}"
        logger.warning(f"{key}: {kind} failure ({step}{', ' + code if code else ''}): {detail}")
        if kind == TRANSIENT:
            logger.debug("".join(traceback.format_exception(exc)))
        if isinstance(exc, StudentTimeout):  # past its deadline, checked between prompts
            code = "CHECK_TIMEOUT"
        # our disk or file table, not the model: never its strike
        return ModelFailure(key, kind, step, detail, time.perf_counter() - started, code=code,
                            ours=code == LOCAL_IO_ERROR)
    finally:
        model = None
        free_memory()


def score_one(cache: TeacherCache, key: str, path: str, spec: EvalSpec,
              fingerprint_inputs: FingerprintInputs | None = None) -> ModelScore | ModelFailure:
    """Load the student at local `path`, score it against `cache`, free it; never raises.

    The single-device loop and every scoring worker call this same function. With
    `fingerprint_inputs` (spec v3), the loaded model's fingerprint on them is computed after
    its KL (`distil.eval.fingerprint`) and returned in `ModelScore.fingerprint`.
    """
    started = time.perf_counter()
    deadline = time.monotonic() + spec.student_timeout_s

    def score(model) -> ModelScore:
        r = score_student(model, cache, spec, key, deadline)
        logger.info(f"{key}: KL {r.kl_mean:.6f} ± {r.kl_se or 0:.6f}, top-1 {r.top1_agreement:.4f} "
                    f"({r.n_positions} positions, {time.perf_counter() - started:.1f}s on {spec.device})")
        if fingerprint_inputs is not None:
            r = dataclasses.replace(r, fingerprint=compute_fingerprint(model, fingerprint_inputs).to_dict())
        return r

    return with_loaded_model(key, path, spec, cache.vocab_size, "score", score)


def score_child(cache_dir: str, key: str, path: str, spec: dict) -> dict:
    """A scoring worker's function (distil.eval.workers runs it in a child): the saved teacher
    cache onto the device, then `score_one`, the device synchronised; JSON back."""
    started = time.perf_counter()
    spec = EvalSpec(**spec)
    try:
        cache = TeacherCache.load(cache_dir, device=spec.device)
        fingerprint_inputs = read_fingerprint_inputs(cache_dir)
        sync_device(spec.device)
    except Exception as e:  # noqa: BLE001 - the cache and the inputs are ours: never the student's fault
        failure = ModelFailure(key, TRANSIENT, "cache", f"the teacher cache could not be loaded: {type(e).__name__}: {e}",
                               code="EVAL_CACHE", ours=True)
        return {"result": result_to_wire(failure), "cache_s": 0.0, "run_s": time.perf_counter() - started}
    cache_s = time.perf_counter() - started
    result = score_one(cache, key, path, spec, fingerprint_inputs)
    sync_device(spec.device)
    return {"result": result_to_wire(result), "cache_s": cache_s, "run_s": time.perf_counter() - started}


FINGERPRINT_INPUTS_FILE = "fingerprint_inputs.json"


def read_fingerprint_inputs(cache_dir: str) -> FingerprintInputs | None:
    """The fingerprint inputs the round saved beside its teacher cache, or None (no fingerprints)."""
    path = Path(cache_dir) / FINGERPRINT_INPUTS_FILE
    return parse_fingerprint_inputs(json.loads(path.read_text())) if path.is_file() else None


def teacher_fingerprint(teacher, inputs: FingerprintInputs | None, prompt_ids: list[list[int]] | None,
                        timings: dict) -> tuple[FingerprintInputs | None, Fingerprint | None]:
    """The round's fingerprint inputs and the teacher's reference fingerprint on them, while the
    teacher is loaded: `inputs` as given (the validator's, kept in its state), or built from
    `prompt_ids` (the teacher continues them: a validator's first round). (None, None) when
    neither is given, or when the teacher's continuations are too short to compare
    (FingerprintError, logged): the round is scored without fingerprints."""
    if inputs is None and not prompt_ids:
        return None, None
    started = time.perf_counter()
    try:
        if inputs is None:
            inputs, reference = build_fingerprint_inputs(teacher, prompt_ids)
        else:
            reference = compute_fingerprint(teacher, inputs, dtype=None)  # the teacher in its own dtype
    except FingerprintError as e:
        logger.warning(f"no fingerprints this round: {e}")
        return None, None
    timings["fingerprint_teacher_s"] = time.perf_counter() - started
    return inputs, reference


def score_models(cache: TeacherCache, students: list[tuple[str, StudentSource]], spec: EvalSpec,
                 timings: dict | None = None) -> dict[str, ModelScore | ModelFailure]:
    """Score each (key, source) student against `cache` on `spec.device`, one after the
    other; one result per key, in order. A source is a local path, or a Future of one
    (a download running in the background, see distil.eval.prefetch): each student is
    scored as soon as its download is done, and a failed download fails it alone.
    `timings["download_wait_s"]` gets the seconds spent waiting for downloads.
    """
    check_unique(students)
    results: dict[str, ModelScore | ModelFailure] = {}
    waited = 0.0
    for n, (key, source) in enumerate(students, 1):
        started = time.perf_counter()
        try:
            path = source.result() if isinstance(source, Future) else source
        except Exception as exc:
            results[key] = download_failure(key, exc)
            continue
        finally:
            waited += time.perf_counter() - started
        logger.info(f"student {n}/{len(students)}: {key}")
        results[key] = score_one(cache, key, path, spec)
    if timings is not None:
        timings["download_wait_s"] = waited
    return results


def teacher_device(devices: list[str]) -> str:
    """Where the teacher runs: the first device.

    TODO(issue 10 §4): when the start-up memory plan says the teacher does not fit one
    device, spread it over `devices` with `device_map` (accelerate's "balanced" map over
    their indices) instead; the cache is then gathered on the first device as now.
    """
    return devices[0]


def run_round(teacher_path: str, students: list[tuple[str, StudentSource]], prompts: list[list[int]], spec: EvalSpec,
              continuations: list[list[int]] | None = None, devices: list[str] | None = None,
              deadlines: Deadlines | None = None, score_target: str | None = None,
              fingerprint_inputs: FingerprintInputs | None = None,
              fingerprint_prompts: list[list[int]] | None = None) -> RoundResult:
    """Teacher pass → free the teacher → score every student on the same token ids.

    `prompts` are token ids (see prompts.tokenize_prompts); `continuations`, when given,
    are used instead of generating (re-scoring a published round). `students` are
    (key, local path or Future of one): downloads started before the call (see
    distil.eval.prefetch) go on while the teacher loads and generates. The teacher runs in
    this process on the first of `devices` (runtime only, default [spec.device]); its cache
    is saved, and each student is scored in its own worker process (distil.eval.workers)
    within its deadline (`deadlines`, default this machine's), in parallel over `devices`.
    Errors of the teacher pass propagate (it is our side: the whole round is transient).
    `score_target`: the workers' function (default `workers.score_child`; tests inject faults).
    Spec v3's fingerprints (`teacher_fingerprint`): with `fingerprint_inputs`, or
    `fingerprint_prompts` to build them from, every student scored is fingerprinted on them,
    and the result carries the inputs and the teacher's reference fingerprint.
    """
    devices = list(devices or [spec.device])
    spec = spec.replace(device=devices[0])  # the dtype ("auto") follows the devices' kind
    check_unique(students)
    timings = {}
    round_started = started = time.perf_counter()
    teacher = load_causal_lm(teacher_path, teacher_device(devices), spec.torch_dtype, spec.vocab_size,
                             allow_unexpected=True)
    teacher_implementations = implementations_of(teacher)
    timings["teacher_load_s"] = time.perf_counter() - started
    cache = build_teacher_cache(teacher, prompts, spec.max_new_tokens, spec.generation_batch_size, continuations)
    timings.update(cache.timings)
    fp_inputs, fp_reference = teacher_fingerprint(teacher, fingerprint_inputs, fingerprint_prompts, timings)
    teacher = None
    free_memory()
    ids = (cache.prompt_ids, cache.continuation_ids, cache.eos_ids)
    shape = RoundShape.of(cache.prompt_ids, cache.continuation_ids, spec.vocab_size)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="distil-teacher-cache-") as cache_dir:
        cache.save(cache_dir)  # each student's worker loads it onto its device
        if fp_inputs is not None:
            (Path(cache_dir) / FINGERPRINT_INPUTS_FILE).write_text(json.dumps(fp_inputs.to_dict()))
        cache = None
        free_memory()
        timings["cache_save_s"] = time.perf_counter() - started
        results = score_students(cache_dir, students, spec, devices, shape, deadlines, timings=timings,
                                 target=score_target or SCORE_TARGET)
    timings["students_s"] = time.perf_counter() - started
    timings["round_s"] = time.perf_counter() - round_started
    timings.update({f"student_s.{k}": r.seconds for k, r in results.items()})
    logger.info("round timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    return RoundResult(*ids, results, timings, devices, teacher_implementations, fp_inputs, fp_reference)
