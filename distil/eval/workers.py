"""Each student scored, and each probe run, in its own worker process with a deadline.

The teacher pass runs in the caller's process (the teacher is ours); everything that runs a
student's files runs in a child of the sandbox's fork server (`distil.checks.sandbox`), one
child per student (`engine.score_child`): it loads the saved teacher cache onto its device,
loads and scores the student with `engine.score_one` (the function the in-process loop
calls), synchronises the device, and answers with JSON. So

* an error that surfaces asynchronously on a GPU (a device-side assert) dies with the child
  of the student that caused it; the next student gets a fresh process;
* a student that hangs or crawls is killed at its deadline (`distil.checks.clock`: a
  multiple of the estimate for its size on this machine's measured speed, with the floor
  `spec.student_timeout_s`), and its failure says so (`CHECK_TIMEOUT`);
* a child that dies is that student's failure (`EVAL_WORKER`), unless the death is ours:
  SIGBUS (a read of a memory-mapped file failed: our disk), SIGTERM/SIGINT, or the
  validator stopping; those failures are marked `ours` and never count against the model.

One child per student, not a long-lived worker: a fork costs about 15 ms and loading the
saved teacher cache a fraction of a second on a GPU (about 250 MB for the real round) against
tens of seconds to load a 5B student, and no state survives a student (the round's timings
record both figures per student: `worker_start_s.*`, `cache_load_s.*`). With several devices
(`--devices`), one thread per device hands each student to a child on its device as soon as
its download is done, earliest first; the numbers are those of a single-device run.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

from loguru import logger

from distil import MAX_PARAMS
from distil.checks.clock import Baseline, Deadlines, baseline, default_deadlines
from distil.checks.sandbox import ChildDied, ChildError, StepTimeout, run_step
from distil.eval.results import (TRANSIENT, ModelFailure, ModelScore, StudentSource, check_unique, download_failure,
                                 result_from_wire)
from distil.eval.spec import EvalSpec

SCORE_TARGET = "distil.eval.engine:score_child"


def parse_devices(text: str | list[str], flag: str = "devices") -> list[str]:
    """"cuda:0,cuda:1" (or a list) → ["cuda:0", "cuda:1"]; ValueError naming what is wrong.

    Every entry must be a torch device name and all of one kind (the same hardware type
    gives the same numbers as a single-device run); whether it exists is the preflight's
    question. Each entry is one worker.
    """
    import torch

    items = [d.strip() for d in (text.split(",") if isinstance(text, str) else text)]
    if not items or any(not d for d in items):
        raise ValueError(f"{flag} must be a comma-separated list such as cuda:0,cuda:1, got {text!r}")
    kinds = set()
    for d in items:
        try:
            kinds.add(torch.device(d).type)
        except (RuntimeError, ValueError):
            raise ValueError(f"{flag}: {d!r} is not a device name such as cpu or cuda:0") from None
    if len(kinds) > 1:
        raise ValueError(f"{flag} must all be of one kind (the same hardware gives the same numbers), got {','.join(items)}")
    return items


# -- sizes, for the deadlines ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSize:
    weight_bytes: int
    params: int
    hidden_size: int
    tensors: int


def model_size(path: str) -> ModelSize:
    """A local model's size from its safetensors headers and config (no weight is read); a
    model that cannot be read is sized at the parameter cap (its load will say what is wrong)."""
    from distil.checks.loading import read_tensor_headers, weight_files

    cap = ModelSize(2 * MAX_PARAMS, MAX_PARAMS, 8192, 100_000)
    try:
        files = weight_files(Path(path))
        tensors = read_tensor_headers(files)
        params = sum(math.prod(shape) for _, shape in tensors.values())
        hidden = max((shape[-1] for _, shape in tensors.values() if len(shape) == 2), default=cap.hidden_size)
        return ModelSize(sum(f.stat().st_size for f in files), min(params, MAX_PARAMS), min(hidden, 65536),
                         min(len(tensors), 1_000_000))
    except Exception:  # noqa: BLE001 - sizing only; the load reports the fault
        return cap


@dataclasses.dataclass(frozen=True)
class RoundShape:
    """What a round asks of each student: tokens read, positions scored, vocabulary."""

    tokens: int
    positions: int
    vocab_size: int

    @classmethod
    def of(cls, prompt_ids: list[list[int]], continuation_ids: list[list[int]], vocab_size: int) -> "RoundShape":
        return cls(sum(len(p) + len(c) for p, c in zip(prompt_ids, continuation_ids)),
                   sum(len(c) for c in continuation_ids), vocab_size)


def score_deadline(deadlines: Deadlines, device: Baseline, spec: EvalSpec, size: ModelSize, shape: RoundShape) -> float:
    return deadlines.score(device, spec.student_timeout_s, weight_bytes=size.weight_bytes, params=size.params,
                           tokens=shape.tokens, positions=shape.positions, vocab_size=shape.vocab_size,
                           hidden_size=size.hidden_size, tensors=size.tensors)


# -- the children ----------------------------------------------------------------------------


def sync_device(device: str) -> None:
    """Surface any asynchronous device error here, in the child of the model that caused it
    (the same call on every device: torch.cpu's synchronize waits for nothing)."""
    import torch

    device = torch.device(device)
    torch.get_device_module(device).synchronize(device)


# -- the parent ------------------------------------------------------------------------------


def isolation_failure(key: str, phase: str, exc: BaseException, seconds: float = 0.0) -> ModelFailure:
    """A child that did not answer: its deadline, its death, or an exception it let out."""
    if isinstance(exc, StepTimeout):
        return ModelFailure(key, TRANSIENT, phase, str(exc), seconds, code="CHECK_TIMEOUT")
    if isinstance(exc, ChildDied):
        if exc.ours:
            code = "LOCAL_IO_ERROR" if exc.signal == signal.SIGBUS else "EVAL_STOPPED"
            return ModelFailure(key, TRANSIENT, phase, f"{exc} (ours, not the model's)", seconds, code=code, ours=True)
        return ModelFailure(key, TRANSIENT, phase, str(exc), seconds, code="EVAL_WORKER")
    if isinstance(exc, ChildError):
        return ModelFailure(key, TRANSIENT, phase, str(exc), seconds, code="EVAL_WORKER")
    raise exc


def score_isolated(cache_dir: str, key: str, path: str, spec: EvalSpec, deadline_s: float,
                   timings: dict | None = None, target: str = SCORE_TARGET) -> ModelScore | ModelFailure:
    """Score one student in its own child (see the module docstring); never raises.
    `target`: the child's function (tests put a faulty one in front of `score_child`)."""
    started = time.perf_counter()
    try:
        # the child stops itself between prompts at the same deadline (a clean CHECK_TIMEOUT with
        # how far it got); the kill at the deadline is for a child that cannot stop itself
        child_spec = dataclasses.asdict(spec.replace(student_timeout_s=deadline_s))
        report = run_step(target, {"cache_dir": cache_dir, "key": key, "path": path, "spec": child_spec},
                          step=f"scoring of {key}", deadline_s=deadline_s)
    except (StepTimeout, ChildDied, ChildError) as e:
        failure = isolation_failure(key, "score", e, time.perf_counter() - started)
        logger.warning(f"{key}: {failure.kind} failure ({failure.code}): {failure.detail}")
        return failure
    value = report.value
    if timings is not None:
        timings[f"worker_start_s.{key}"] = max(0.0, report.seconds - value["run_s"])
        timings[f"cache_load_s.{key}"] = value["cache_s"]
    logger.info(f"{key}: worker started in {max(0.0, report.seconds - value['run_s']):.3f}s, "
                f"teacher cache loaded in {value['cache_s']:.3f}s, deadline {deadline_s:.0f}s")
    return result_from_wire(value["result"])


def score_students(cache_dir: str, students: list[tuple[str, StudentSource]], spec: EvalSpec, devices: list[str],
                   shape: RoundShape, deadlines: Deadlines | None = None, timings: dict | None = None,
                   on_assign: Callable[[str, str], None] | None = None,
                   target: str = SCORE_TARGET) -> dict[str, ModelScore | ModelFailure]:
    """Score (key, path or Future of a path) students against the teacher cache saved in
    `cache_dir`, each in its own child; one device thread per entry of `devices`; one
    result per key, in order.

    Students are handed out earliest first, each as soon as its download is done.
    `on_assign(key, device)` is called as a student starts (logging, tests); `target` is
    the child's function (`score_child`; tests put a faulty one in front of it).
    `timings["download_wait_s"]`: seconds device threads waited for a download.
    """
    check_unique(students)
    deadlines = deadlines or default_deadlines()
    device_speed = baseline(devices[0])
    pending = list(students)
    results: dict[str, ModelScore | ModelFailure] = {}
    lock = threading.Condition()
    waited = [0.0]
    done: queue.Queue = queue.Queue()
    for _, source in students:
        if isinstance(source, Future):
            source.add_done_callback(lambda _f: _notify(lock))

    def next_student():
        with lock:
            while pending:
                ready = [(k, s) for k, s in pending if not isinstance(s, Future) or s.done()]
                if ready:
                    pending.remove(ready[0])
                    return ready[0]
                started = time.perf_counter()
                lock.wait(timeout=1.0)
                waited[0] += time.perf_counter() - started
            return None

    def device_loop(device: str) -> None:
        while (item := next_student()) is not None:
            key, source = item
            try:
                path = source.result() if isinstance(source, Future) else source
            except Exception as exc:  # noqa: BLE001 - the download's failure is that student's, transient
                done.put((key, download_failure(key, exc)))
                continue
            if on_assign is not None:
                on_assign(key, device)
            logger.info(f"student {key}: scoring on {device} in its own process")
            deadline = score_deadline(deadlines, device_speed, spec, model_size(path), shape)
            done.put((key, score_isolated(cache_dir, key, path, spec.replace(device=device), deadline, timings,
                                          target)))

    threads = [threading.Thread(target=device_loop, args=(d,), name=f"score-{d}-{i}", daemon=True)
               for i, d in enumerate(devices)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    while not done.empty():
        key, result = done.get()
        results[key] = result
    if timings is not None:
        timings["download_wait_s"] = waited[0]
    return {key: results[key] for key, _ in students}


def _notify(lock: threading.Condition) -> None:
    with lock:
        lock.notify_all()
