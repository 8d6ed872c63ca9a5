"""`python -m distil.bench deadlines`: honest models of growing size through every untrusted step,
each in a sandbox child as the validator runs it, against the deadline's estimate.

For each model: the architecture (meta build), tokenizer (load + battery against the teacher's
reference) and load (weights + the short forward) pre-check steps, then scoring on a round of
`--prompts` × `--tokens` and the degeneration probe. Each figure: the measured seconds, the
clock's honest estimate for the model's size (`distil.checks.clock`, before the multiple), and
their ratio. A ratio below 1 everywhere is what the deadlines rest on: the deadline is 10 ×
the estimate (at least the floor), so an honest model has ten times its need.

`--tokenizer DIR` checks a full-size tokenizer (e.g. one converted from the 248k Qwen vocabulary)
instead of the tiny one; `--sizes` lists the dense models' (hidden, layers).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("deadlines", help="honest models through each untrusted step vs the deadline estimates")
    p.add_argument("--sizes", default="64x2,1024x8,2048x8",
                   help="dense qwen3 students as HIDDENxLAYERS, comma-separated (default: %(default)s)")
    p.add_argument("--tokenizer", default=None, help="a full-size tokenizer directory to check (default: the tiny one)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--tokens", type=int, default=64, help="continuation tokens per prompt")
    p.set_defaults(run=run)


def _student(path: Path, hidden: int, layers: int, tokenizer: str | None) -> int:
    from distil import tiny

    heads = max(1, hidden // 128)
    config = tiny.student_config("qwen3", hidden_size=hidden, num_hidden_layers=layers, intermediate_size=3 * hidden,
                                 num_attention_heads=heads, num_key_value_heads=max(1, heads // 4),
                                 head_dim=hidden // heads)
    model = tiny.save_model(path, config)
    if tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(tokenizer) / name, path / name)
    return sum(p.numel() for p in model.parameters())


def _timed(target: str, kwargs: dict, step: str) -> tuple[float, dict]:
    from distil.checks.sandbox import run_step

    started = time.perf_counter()
    report = run_step(target, kwargs, step=step, deadline_s=3600)
    return time.perf_counter() - started, report.value


def run(args) -> dict:
    import torch

    from distil import VOCAB_SIZE, tiny
    from distil.bench import machine
    from distil.checks.clock import DEFAULT_FLOOR_S, DEFAULT_MULTIPLE, Deadlines, baseline, default_deadlines
    from distil.checks.loading import load_causal_lm, read_tensor_headers, weight_files
    from distil.checks.tokenizer import load_reference
    from distil.eval.spec import EvalSpec
    from distil.eval.teacher import build_teacher_cache
    from distil.eval.workers import RoundShape, model_size, score_deadline

    deadlines = default_deadlines()
    cpu = baseline("cpu")
    estimate = Deadlines(cpu, multiple=1.0, floor_s=1e-9)  # the same formulas, without multiple and floor
    root = Path(tempfile.mkdtemp(prefix="distil-bench-deadlines-"))
    out = {"machine": machine(), "baseline": cpu.to_dict(), "multiple": DEFAULT_MULTIPLE, "floor_s": DEFAULT_FLOOR_S,
           "models": []}
    try:
        teacher_dir = root / "teacher"
        tiny.save_teacher(teacher_dir)
        reference = load_reference(args.tokenizer or str(teacher_dir))
        spec = EvalSpec(n_prompts=args.prompts, max_new_tokens=args.tokens, probe_prompts=args.prompts)
        teacher = load_causal_lm(teacher_dir, "cpu", spec.torch_dtype, VOCAB_SIZE, allow_unexpected=True)
        prompts = [[1000 + 7 * i + j for j in range(32)] for i in range(args.prompts)]
        cache = build_teacher_cache(teacher, prompts, args.tokens)
        continuations = [[c[0]] * args.tokens for c in cache.continuation_ids]  # full length: the worst case
        cache = build_teacher_cache(teacher, prompts, args.tokens, continuations=continuations)
        cache_dir = root / "cache"
        cache.save(cache_dir)
        shape = RoundShape.of(cache.prompt_ids, cache.continuation_ids, VOCAB_SIZE)
        del teacher
        for item in args.sizes.split(","):
            hidden, layers = (int(x) for x in item.split("x"))
            path = root / f"student-{item}"
            params = _student(path, hidden, layers, args.tokenizer)
            size = model_size(str(path))
            tensors = read_tensor_headers(weight_files(path))
            raw = __import__("json").loads((path / "config.json").read_text())
            tok_bytes = sum(f.stat().st_size for f in path.glob("tokenizer*"))
            row = {"hidden": hidden, "layers": layers, "params": params, "weight_bytes": size.weight_bytes, "steps": {}}
            checks = {
                "architecture": ("distil.checks.architecture:architecture_step",
                                 {"raw": raw, "tensors": tensors, "max_params": None, "scored_length": 1024},
                                 lambda d: d.architecture(len(tensors))),
                "tokenizer": ("distil.checks.pipeline:tokenizer_step", {"path": str(path), "teacher": reference},
                              lambda d: d.tokenizer(tok_bytes)),
                "load": ("distil.checks.pipeline:load_step",
                         {"path": str(path), "max_params": 10 ** 12, "vocab_size": VOCAB_SIZE, "scored_length": 1024},
                         lambda d: d.load(size.weight_bytes, size.params, VOCAB_SIZE, size.hidden_size, size.tensors)),
            }
            for step, (function, kwargs, deadline_of) in checks.items():
                seconds, value = _timed("distil.checks.pipeline:child_step",
                                        {"step": step, "function": function, "kwargs": kwargs}, f"{step} check")
                if "failure" in value:
                    raise RuntimeError(f"{step} of an honest model failed: {value['failure']}")
                row["steps"][step] = _figures(seconds, deadline_of(estimate), deadline_of(deadlines))
            seconds, value = _timed("distil.eval.engine:score_child",
                                    {"cache_dir": str(cache_dir), "key": item, "path": str(path),
                                     "spec": dataclasses.asdict(spec)}, "scoring")
            if not value["result"]["ok"]:
                raise RuntimeError(f"scoring an honest model failed: {value['result']}")
            row["steps"]["score"] = _figures(seconds, score_deadline(estimate, cpu, spec.replace(student_timeout_s=1e-9), size,
                                                                     shape), score_deadline(deadlines, cpu, spec, size, shape))
            seconds, value = _timed("distil.eval.probe:probe_child",
                                    {"key": item, "path": str(path), "prompt_ids": prompts, "eos_ids": [10 ** 9],
                                     "spec": dataclasses.asdict(spec)}, "probe")
            probe = dict(weight_bytes=size.weight_bytes, params=size.params, prompts=args.prompts,
                         prompt_tokens=32 * args.prompts, max_new_tokens=args.tokens,
                         batch_size=spec.generation_batch_size, vocab_size=VOCAB_SIZE, hidden_size=size.hidden_size,
                         tensors=size.tensors)
            row["steps"]["probe"] = _figures(seconds, estimate.probe(cpu, 1e-9, **probe),
                                             deadlines.probe(cpu, spec.student_timeout_s, **probe))
            out["models"].append(row)
            shutil.rmtree(path, ignore_errors=True)
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _figures(seconds: float, estimate: float, deadline: float) -> dict:
    """The measured seconds, the clock's honest estimate, their ratio, and the deadline."""
    return {"seconds": round(seconds, 3), "estimate_s": round(estimate, 3),
            "ratio": round(seconds / estimate, 3) if estimate > 1e-6 else None, "deadline_s": round(deadline, 1)}
