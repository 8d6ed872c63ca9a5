"""Scoring students in parallel: one worker process per device, each student alone on its device.

The parent has built the teacher cache and saved it (`TeacherCache.save`, safetensors)
to a directory; each worker (`python -m distil.eval.worker`) loads it onto its device
once, then scores the students it is handed one at a time with `engine.score_one`, the
very function the single-device loop calls, with the parent's torch thread count, so a
student's per-prompt KL is the same as in a single-device run on the same hardware.

Protocol: JSON lines. The parent writes the spec, then one `{"key", "path"}` per
student, to the worker's stdin (closing it ends the worker); the worker answers
`{"event": "ready"}` once the cache is loaded and `{"event": "result", ...}` per student
on its own stdout (its logs and any stray print go to stderr). No pickle crosses.

A worker that dies (out of memory, a crash, killed) fails the student it held as
TRANSIENT and is replaced by a fresh one on the same device; the round goes on. A
worker that dies holding nothing (it could not even load the cache) takes its device
out of the round; when no device is left, the remaining students fail as transient.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from loguru import logger

from distil.eval.results import (TRANSIENT, ModelFailure, ModelScore, StudentSource, check_unique, download_failure,
                                 result_from_wire)
from distil.eval.spec import EvalSpec

# A worker past its student's deadline by this much is stuck (scoring checks the deadline
# between prompts, so only a hang gets here) and is killed.
HANG_GRACE_S = 120.0
READY, RESULT = "ready", "result"


def parse_devices(text: str | list[str], flag: str = "devices") -> list[str]:
    """"cuda:0,cuda:1" (or a list) → ["cuda:0", "cuda:1"]; ValueError naming what is wrong.

    Every entry must be a torch device name and all of one kind (the same hardware type
    gives the same numbers as a single-device run); whether it exists is the preflight's
    question. Each entry is one worker.
    """
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


@dataclass
class _Worker:
    device: str
    proc: subprocess.Popen
    ready: bool = False
    holding: str | None = None  # the key of the student it is scoring
    since: float = 0.0
    killed_for: str | None = None
    out: queue.Queue = field(default_factory=queue.Queue)


def _worker_env() -> dict:
    """The parent's environment, with this checkout first on the path (runs from a checkout too)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class _Pool:
    def __init__(self, cache_dir: str, spec: EvalSpec, devices: list[str], events: queue.Queue):
        self.cache_dir, self.spec, self.events = cache_dir, spec, events
        self.threads = torch.get_num_threads()
        self.workers: list[_Worker] = []
        for device in devices:
            self.start(device)

    def start(self, device: str) -> _Worker:
        proc = subprocess.Popen(
            [sys.executable, "-m", "distil.eval.worker", "--device", device, "--cache", self.cache_dir,
             "--threads", str(self.threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None, text=True, env=_worker_env(),
        )
        worker = _Worker(device, proc)
        spec = dataclasses.asdict(self.spec.replace(device=device))
        proc.stdin.write(json.dumps({"spec": spec}) + "\n")
        proc.stdin.flush()
        threading.Thread(target=self._read, args=(worker,), name=f"fanout-{device}-{proc.pid}", daemon=True).start()
        self.workers.append(worker)
        logger.info(f"worker pid {proc.pid} on {device}: loading the teacher cache")
        return worker

    def _read(self, worker: _Worker) -> None:
        """Relay the worker's messages to the event queue; None when its stdout closes (it exited)."""
        for line in worker.proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                logger.warning(f"worker on {worker.device}: unreadable line {line[:200]!r}")
                continue
            self.events.put((worker, message))
        self.events.put((worker, None))

    def assign(self, worker: _Worker, key: str, path: str) -> bool:
        try:
            worker.proc.stdin.write(json.dumps({"key": key, "path": path}) + "\n")
            worker.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False  # it is dying: its exit event follows
        worker.holding, worker.since = key, time.monotonic()
        return True

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.proc.stdin.close()
            except OSError:
                pass
        for worker in self.workers:
            try:
                worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()


def score_parallel(cache_dir: str, students: list[tuple[str, StudentSource]], spec: EvalSpec, devices: list[str],
                   timings: dict | None = None,
                   on_assign: Callable[[str, str, int], None] | None = None) -> dict[str, ModelScore | ModelFailure]:
    """Score (key, path or Future of a path) students against the teacher cache saved in
    `cache_dir`, one worker process per entry of `devices`; one result per key, in order.

    Students are handed out earliest first, each to the next idle worker as soon as its
    download is done. `on_assign(key, device, pid)` is called as each student is handed
    to a worker (logging, tests). `timings["download_wait_s"]`: seconds with idle workers
    waiting for a download.
    """
    check_unique(students)
    events: queue.Queue = queue.Queue()
    for key, source in students:
        if isinstance(source, Future):
            source.add_done_callback(lambda _f, key=key: events.put((None, key)))
    pending = list(students)
    results: dict[str, ModelScore | ModelFailure] = {}
    waited, wait_started = 0.0, None
    pool = _Pool(cache_dir, spec, devices, events)
    try:
        while len(results) < len(students):
            idle = [w for w in pool.workers if w.ready and w.holding is None and w.proc.poll() is None]
            while idle and pending:
                ready = [(k, s) for k, s in pending if not isinstance(s, Future) or s.done()]
                if not ready:
                    break
                key, source = ready[0]
                pending.remove((key, source))
                try:
                    path = source.result() if isinstance(source, Future) else source
                except Exception as exc:
                    results[key] = download_failure(key, exc)
                    continue
                worker = idle.pop(0)
                if pool.assign(worker, key, path):
                    logger.info(f"student {key}: scoring on {worker.device} (worker pid {worker.proc.pid})")
                    if on_assign is not None:
                        on_assign(key, worker.device, worker.proc.pid)
                else:
                    pending.insert(0, (key, source))
            waiting = bool(idle) and bool(pending)
            if waiting and wait_started is None:
                wait_started = time.monotonic()
            elif not waiting and wait_started is not None:
                waited += time.monotonic() - wait_started
                wait_started = None
            if not pool.workers:
                for key, _ in pending:
                    results[key] = ModelFailure(key, TRANSIENT, "worker", "no scoring worker is left (every device failed to start one)")
                pending.clear()
                break
            _kill_hung(pool, spec)
            try:
                worker, message = events.get(timeout=5.0)
            except queue.Empty:
                continue
            if worker is None:
                continue  # a download finished: look at the queue again
            if message is None:
                _on_exit(pool, worker, results, replace=bool(pending))
            elif message.get("event") == READY:
                worker.ready = True
                logger.info(f"worker pid {worker.proc.pid} on {worker.device}: ready")
            elif message.get("event") == RESULT:
                results[message["key"]] = result_from_wire(message["result"])
                worker.holding = None
    finally:
        pool.close()
    if timings is not None:
        timings["download_wait_s"] = waited
    return {key: results[key] for key, _ in students}


def _on_exit(pool: _Pool, worker: _Worker, results: dict, replace: bool) -> None:
    """A worker's stdout closed: it exited. Fail what it held; replace it if it held
    something and students are still waiting."""
    code = worker.proc.wait()
    pool.workers.remove(worker)
    why = worker.killed_for or (f"killed by signal {-code}" if code < 0 else f"exit status {code}")
    if worker.holding is not None:
        detail = f"the scoring worker on {worker.device} (pid {worker.proc.pid}) died while scoring it: {why}"
        logger.warning(f"{worker.holding}: transient failure: {detail}")
        results[worker.holding] = ModelFailure(worker.holding, TRANSIENT, "worker", detail,
                                               time.monotonic() - worker.since)
        if replace:
            pool.start(worker.device)  # bounded: every such death consumes a student
    else:
        logger.error(f"the worker on {worker.device} (pid {worker.proc.pid}) exited before scoring anything ({why}); "
                     f"{worker.device} is out of this round")


def _kill_hung(pool: _Pool, spec: EvalSpec) -> None:
    now = time.monotonic()
    for worker in pool.workers:
        if worker.holding is not None and now - worker.since > spec.student_timeout_s + HANG_GRACE_S:
            worker.killed_for = f"StudentTimeout: no answer {spec.student_timeout_s + HANG_GRACE_S:.0f}s after it started"
            worker.proc.kill()
