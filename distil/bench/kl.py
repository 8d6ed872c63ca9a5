"""`kl`: KL reduction on [rows, vocab] bf16 logits, engine vs naive.

speedup = naive time / engine time (best of --repeats), memory_ratio = engine peak extra
memory / naive peak extra memory (CPU: resident set sampled every 0.5 ms above the level
before the call; CUDA: max_memory_allocated), rel_diff = |mean KL engine − mean KL naive|
/ mean KL naive, and the distance of each to a float64 computation (rel_diff_f64,
naive_rel_diff_f64).
"""

from __future__ import annotations

import os
import time

import torch

from distil.bench import _sync, machine, peak_extra_memory

def bench_kl(rows: int, vocab: int, chunk_size: int, repeats: int, device: str, compile: bool) -> dict:
    from distil.eval.kl import kl_from_logits, kl_naive

    g = torch.Generator(device=device).manual_seed(0)
    t = torch.randn(rows, vocab, generator=g, device=device).mul_(2.5)
    s = (t + torch.randn(rows, vocab, generator=g, device=device)).bfloat16()
    t = t.bfloat16()
    if compile:  # compile outside the timed region
        kl_from_logits(t[:chunk_size], s[:chunk_size], chunk_size, compile=True)
    engine = lambda: kl_from_logits(t, s, chunk_size, compile=compile)[0]  # noqa: E731
    naive = lambda: kl_naive(t, s)  # noqa: E731
    best = {}
    for name, fn in (("engine", engine), ("naive", naive)):  # memory: one sampled run each, after a warm-up
        fn()  # (first calls allocate once per process: thread pools, allocator arenas)
        out, _, extra = peak_extra_memory(fn, device)
        best[name] = (out, float("inf"), extra)
    for _ in range(repeats):  # time: interleaved, unsampled, best of `repeats` (others share the machine)
        for name, fn in (("engine", engine), ("naive", naive)):
            _sync(device)
            started = time.perf_counter()
            fn()
            _sync(device)
            out, best_s, extra = best[name]
            best[name] = (out, min(best_s, time.perf_counter() - started), extra)
    kl_engine, kl_ref = best["engine"][0].double(), best["naive"][0].double()
    engine_bytes = 3 * min(chunk_size, rows) * vocab * 4
    f64 = torch.cat([_f64(t[a : a + 16], s[a : a + 16]) for a in range(0, rows, 16)])
    mean = lambda x: float(x.mean())  # noqa: E731
    return {
        "bench": "kl", "device": machine(), "rows": rows, "vocab": vocab, "chunk_size": chunk_size, "compile": compile,
        "engine_s": round(best["engine"][1], 4), "naive_s": round(best["naive"][1], 4),
        "speedup": round(best["naive"][1] / best["engine"][1], 2),
        # The engine's buffers (3 × [chunk, V] fp32) are reused from the warm-up's freed heap, so
        # its measured RSS growth can read 0: the ratio uses the larger of measured and allocated.
        "engine_extra_mb": round(best["engine"][2] / 2**20, 1), "engine_buffers_mb": round(engine_bytes / 2**20, 1),
        "naive_extra_mb": round(best["naive"][2] / 2**20, 1),
        "memory_ratio": round(max(best["engine"][2], engine_bytes) / max(best["naive"][2], 1), 4),
        "rel_diff": abs(mean(kl_engine) - mean(kl_ref)) / mean(kl_ref),
        "rel_diff_f64": abs(mean(kl_engine) - mean(f64)) / mean(f64),
        "naive_rel_diff_f64": abs(mean(kl_ref) - mean(f64)) / mean(f64),
        "max_pos_rel_diff_f64": float(((kl_engine - f64).abs() / f64).max()),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _f64(t, s):
    lt, ls = torch.log_softmax(t.double(), -1), torch.log_softmax(s.double(), -1)
    return (lt.exp() * (lt - ls)).sum(-1)



def register(sub) -> None:
    kl = sub.add_parser("kl", help="KL reduction on [rows, vocab] bf16 logits vs the naive way")
    kl.add_argument("--rows", type=int, default=512)
    kl.add_argument("--vocab", type=int, default=248_320)
    kl.add_argument("--chunk-size", type=int, default=16)
    kl.add_argument("--repeats", type=int, default=3)
    kl.add_argument("--compile", action="store_true")
    kl.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    kl.set_defaults(run=lambda a: bench_kl(a.rows, a.vocab, a.chunk_size, a.repeats, a.device, a.compile))
