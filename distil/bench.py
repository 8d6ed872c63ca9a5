"""Benchmarks of the evaluation engine (not tests: run by hand, figures in docs/performance.md).

    python -m distil.bench kl            # KL reduction on [512, 248320] bf16 logits vs the naive way
    python -m distil.bench round --tiny  # a whole round on tiny models vs a naive pipeline

Each prints one JSON line. `kl`: speedup = naive time / engine time (best of --repeats),
memory_ratio = engine peak extra memory / naive peak extra memory (CPU: resident set
sampled every 0.5 ms above the level before the call; CUDA: max_memory_allocated),
rel_diff = |mean KL engine − mean KL naive| / mean KL naive, and the distance of each to
a float64 computation (rel_diff_f64, naive_rel_diff_f64).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
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


def bench_round(n_prompts: int, max_new_tokens: int, device: str) -> dict:
    """Engine round (teacher pass + king + challenger) vs naive per-prompt generate + full logits."""
    from distil import tiny
    from distil.eval.engine import run_round
    from distil.eval.models import load_causal_lm
    from distil.eval.spec import EvalSpec
    from distil.eval.teacher import greedy_generate

    root = tempfile.mkdtemp(prefix="distil-bench-")
    teacher = tiny.save_teacher(f"{root}/teacher", seed=0)
    tiny.save_model(f"{root}/king", tiny.teacher_config(), model=tiny.perturbed_copy(teacher, 1, 0.05))
    tiny.save_student(f"{root}/challenger", seed=2)
    students = [("king", f"{root}/king"), ("challenger", f"{root}/challenger")]
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 248_000, (int(n),), generator=g).tolist()
               for n in torch.randint(8, 64, (n_prompts,), generator=g)]
    spec = EvalSpec(n_prompts=n_prompts, max_new_tokens=max_new_tokens, device=device)

    started = time.perf_counter()
    result = run_round(f"{root}/teacher", students, prompts, spec)
    engine_s = time.perf_counter() - started

    started = time.perf_counter()
    dtype = spec.torch_dtype
    model = load_causal_lm(f"{root}/teacher", device, dtype, spec.vocab_size)
    conts = [greedy_generate(model, [p], max_new_tokens, [tiny.EOS_ID], batch_size=1)[0] for p in prompts]
    naive = {}
    with torch.no_grad():
        for key, path in students:
            student = load_causal_lm(path, device, dtype, spec.vocab_size)
            per_prompt = []
            for p, c in zip(prompts, conts):
                ids = torch.tensor([p + c[:-1]], device=device)
                lt = torch.log_softmax(model(ids).logits[0, len(p) - 1 :].float(), -1)
                ls = torch.log_softmax(student(ids).logits[0, len(p) - 1 :].float(), -1)
                per_prompt.append(float(torch.nn.functional.kl_div(ls, lt, reduction="none", log_target=True).sum(-1).mean()))
            naive[key] = sum(per_prompt) / len(per_prompt)
            del student
    naive_s = time.perf_counter() - started
    same_tokens = conts == result.continuation_ids
    rel = max(abs(result.results[k].kl_mean - naive[k]) / naive[k] for k in naive)
    return {"bench": "round", "device": machine(), "prompts": n_prompts, "max_new_tokens": max_new_tokens,
            "engine_s": round(engine_s, 3), "naive_s": round(naive_s, 3), "speedup": round(naive_s / engine_s, 2),
            "same_continuations": same_tokens, "max_rel_diff": rel,
            "engine_timings": {k: round(v, 3) for k, v in result.timings.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distil.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    kl = sub.add_parser("kl", help="KL reduction on [rows, vocab] bf16 logits vs the naive way")
    kl.add_argument("--rows", type=int, default=512)
    kl.add_argument("--vocab", type=int, default=248_320)
    kl.add_argument("--chunk-size", type=int, default=16)
    kl.add_argument("--repeats", type=int, default=3)
    kl.add_argument("--compile", action="store_true")
    kl.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    rnd = sub.add_parser("round", help="a whole round vs a naive pipeline")
    rnd.add_argument("--tiny", action="store_true", required=True, help="tiny real-vocabulary models (the only mode)")
    rnd.add_argument("--prompts", type=int, default=8)
    rnd.add_argument("--max-new-tokens", type=int, default=32)
    rnd.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.which == "kl":
        out = bench_kl(args.rows, args.vocab, args.chunk_size, args.repeats, args.device, args.compile)
    else:
        out = bench_round(args.prompts, args.max_new_tokens, args.device)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
