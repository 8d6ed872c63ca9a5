"""Deadlines validators agree on: a generous multiple of what the step costs an honest model on
this machine, estimated from a baseline the process measures on itself, with a floor.

A fixed number of seconds would strike an honest model at the parameter cap on slow hardware
and let validators on different machines disagree. Instead each process measures, once, in
a child of the sandbox's fork server (the kind of process the steps run in), on the device
the steps use:

* `gemm_flops`: the slower of a bf16 and an fp32 1024 × 1024 × 1024 matrix product
  (best of three), so a forward or a KL estimate holds in either compute dtype;
* `copy_bytes`: bytes per second of copying a fresh 256 MiB buffer (best of three), which
  prices reading weights and the [positions, vocabulary] passes of the KL.

Each step's honest cost is estimated from the model's size with the formulas below, and its
deadline is `max(floor_s, multiple × estimate)` (`multiple` 10, `floor_s` 60 s for a pre-check
step; a student's scoring and probe use `--eval.student_timeout_s` as their floor). The cost
constants were measured on honest models on a 2-core CPU (docs/validators.md, "Deadlines"):
the estimate is above what an honest step took there, so with the multiple an honest model at
the cap has at least ten times its need on the minimum hardware of min_compute.yml, which
is faster. A hostile model that makes a step slow (a backtracking tokenizer regex, a
config that selects a slow kernel, thousands of tiny layers) overruns it on every machine.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

DEFAULT_MULTIPLE = 10.0
DEFAULT_FLOOR_S = 60.0
# Measured constants (docs/validators.md, "Deadlines"): bytes moved per byte of input.
TOKENIZER_PASSES = 1000.0  # loading tokenizer.json and encoding the battery, per byte of the file
LOAD_PASSES = 6.0  # reading safetensors into a model (page cache, copy, conversion), per weight byte
KL_PASSES = 12.0  # float32 passes over a [positions, vocabulary] block in the KL kernel
DECODE_PASSES = 3.0  # reads of every weight per greedy decode step (the step's own overhead included)
TENSOR_BYTES = 4 * 2 ** 20  # Python-side cost of one tensor (meta build, conversion, loading), in copied bytes
SHORT_FORWARD_TOKENS = 4


@dataclass(frozen=True)
class Baseline:
    """This machine's measured speed on one device (see the module docstring)."""

    device: str
    gemm_flops: float
    copy_bytes: float

    def seconds(self, flops: float = 0.0, moved_bytes: float = 0.0) -> float:
        return flops / self.gemm_flops + moved_bytes / self.copy_bytes

    def to_dict(self) -> dict:
        return {"device": self.device, "gemm_gflops": round(self.gemm_flops / 1e9, 3),
                "copy_gb_s": round(self.copy_bytes / 1e9, 3)}


def measure_step(device: str = "cpu") -> dict:
    """The baseline workloads on `device` (runs in a sandbox child): {"gemm_flops", "copy_bytes"}."""
    import time

    import torch

    n = 1024
    rates = []
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        best = math.inf
        for _ in range(3):
            _sync(device)
            started = time.perf_counter()
            (a @ b).sum().item()
            best = min(best, time.perf_counter() - started)
        rates.append(2 * n ** 3 / best)
    source = torch.ones(64 * 2 ** 20, dtype=torch.float32, device=device)
    best = math.inf
    for _ in range(3):
        _sync(device)
        started = time.perf_counter()
        copy = source.clone()
        _sync(device)
        best = min(best, time.perf_counter() - started)
        del copy
    return {"gemm_flops": min(rates), "copy_bytes": source.numel() * 4 / best}


def _sync(device: str) -> None:
    import torch

    device = torch.device(device)
    torch.get_device_module(device).synchronize(device)


_BASELINES: dict[str, Baseline] = {}
_LOCK = threading.Lock()


def baseline(device: str = "cpu") -> Baseline:
    """This process's baseline on `device`, measured on first use (about a second) and kept."""
    from loguru import logger

    from distil.checks.sandbox import run_step

    with _LOCK:
        if device not in _BASELINES:
            report = run_step("distil.checks.clock:measure_step", {"device": device}, step="baseline",
                              deadline_s=600.0)
            measured = Baseline(device, float(report.value["gemm_flops"]), float(report.value["copy_bytes"]))
            logger.info(f"deadline baseline on {device}: {measured.gemm_flops / 1e9:.1f} GFLOP/s "
                        f"(slower of bf16 and fp32 GEMM), {measured.copy_bytes / 1e9:.2f} GB/s copy")
            _BASELINES[device] = measured
        return _BASELINES[device]


@dataclass(frozen=True)
class Deadlines:
    """Seconds each untrusted step may take: `max(floor_s, multiple × the honest estimate)`."""

    cpu: Baseline
    multiple: float = DEFAULT_MULTIPLE
    floor_s: float = DEFAULT_FLOOR_S

    def __post_init__(self):
        if not (self.multiple > 0 and self.floor_s > 0):
            raise ValueError(f"deadline multiple and floor must be > 0, got {self.multiple} and {self.floor_s}")

    def _deadline(self, estimate_s: float, floor_s: float | None = None) -> float:
        return max(self.floor_s if floor_s is None else floor_s, self.multiple * estimate_s)

    def tokenizer(self, tokenizer_bytes: int) -> float:
        """Loading the repo's tokenizer and encoding the battery."""
        return self._deadline(self.cpu.seconds(moved_bytes=TOKENIZER_PASSES * tokenizer_bytes))

    def architecture(self, tensors: int) -> float:
        """Building config.json's model on the meta device and mapping the files' tensors onto
        it: no data, a cost per module and tensor (an honest MoE student may store tens of
        thousands of per-expert tensors)."""
        return self._deadline(self.cpu.seconds(moved_bytes=TENSOR_BYTES * tensors))

    def load(self, weight_bytes: int, params: int, vocab_size: int, hidden_size: int, tensors: int = 0) -> float:
        """The load check: the weights into a model, then one short forward."""
        flops = 2.0 * params * SHORT_FORWARD_TOKENS + 2.0 * vocab_size * hidden_size
        return self._deadline(self.cpu.seconds(flops, LOAD_PASSES * weight_bytes + TENSOR_BYTES * tensors))

    def score(self, device: Baseline, floor_s: float, *, weight_bytes: int, params: int, tokens: int,
              positions: int, vocab_size: int, hidden_size: int, tensors: int = 0) -> float:
        """Loading a student (on the host) and scoring it on `device`: every prompt's forward,
        both heads at every scored position, the KL passes."""
        load = self.cpu.seconds(moved_bytes=LOAD_PASSES * weight_bytes + TENSOR_BYTES * tensors)
        flops = 2.0 * params * tokens + 4.0 * vocab_size * hidden_size * positions
        work = device.seconds(flops, KL_PASSES * 4.0 * vocab_size * positions)
        return self._deadline(load + work, floor_s)

    def probe(self, device: Baseline, floor_s: float, *, weight_bytes: int, params: int, prompts: int,
              prompt_tokens: int, max_new_tokens: int, batch_size: int, vocab_size: int, hidden_size: int,
              tensors: int = 0) -> float:
        """Loading a student and generating greedily: each decode step reads every weight."""
        load = self.cpu.seconds(moved_bytes=LOAD_PASSES * weight_bytes + TENSOR_BYTES * tensors)
        steps = max_new_tokens * math.ceil(prompts / max(1, batch_size))
        flops = 2.0 * params * (prompt_tokens + prompts * max_new_tokens) + \
            2.0 * vocab_size * hidden_size * prompts * max_new_tokens
        work = device.seconds(flops, DECODE_PASSES * steps * weight_bytes)
        return self._deadline(load + work, floor_s)

    def to_dict(self) -> dict:
        return {"multiple": self.multiple, "floor_s": self.floor_s, "cpu": self.cpu.to_dict()}


def default_deadlines(multiple: float = DEFAULT_MULTIPLE, floor_s: float = DEFAULT_FLOOR_S) -> Deadlines:
    """Deadlines from this process's CPU baseline (measured on first use)."""
    return Deadlines(baseline("cpu"), multiple, floor_s)
