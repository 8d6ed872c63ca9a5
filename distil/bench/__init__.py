"""Benchmarks (not tests: run by hand, figures in docs/performance.md).

    python -m distil.bench kl            # KL reduction on [512, 248320] bf16 logits vs the naive way
    python -m distil.bench round --tiny  # a whole round on tiny models vs a naive pipeline
    python -m distil.bench prefetch      # a round with students on a throttled hub vs download + scoring
    python -m distil.bench train --tiny  # a training step: chunked KL loss vs naive full logits
    python -m distil.bench deadlines     # this machine's clock: baseline rates and the deadlines of the untrusted steps
    python -m distil.bench probe         # degeneration guard: honest students' margins, the reproductions' verdicts
    python -m distil.bench fingerprint   # functional-copy detector: miss and false-positive rates

Each prints one JSON line. Every subcommand is a module of this package with
`register(subparsers)`, which adds its parser and sets `run` (args -> dict) as default;
add a new one to `SUBCOMMANDS` in `__main__.py`. Shared measuring helpers live here.
"""

from __future__ import annotations

import os
import platform
import threading
import time

import torch

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_extra_memory(fn, device: str):
    """(result, seconds, peak extra bytes) of fn()."""
    if device != "cpu":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        started = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return out, time.perf_counter() - started, torch.cuda.max_memory_allocated() - base
    base = _rss()
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    stop.set()
    thread.join()
    return out, seconds, max(peak[0], _rss()) - base


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def _sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


