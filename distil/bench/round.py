"""`round --tiny`: a whole round on tiny models, engine vs naive per-prompt pipeline."""

from __future__ import annotations

import tempfile
import time

import torch

from distil.bench import machine


def bench_round(n_prompts: int, max_new_tokens: int, device: str) -> dict:
    """Engine round (teacher pass + king + challenger) vs naive per-prompt generate + full logits."""
    with tempfile.TemporaryDirectory(prefix="distil-bench-") as root:  # the tiny models are removed after
        return _bench_round(root, n_prompts, max_new_tokens, device)


def _bench_round(root: str, n_prompts: int, max_new_tokens: int, device: str) -> dict:
    from distil import tiny
    from distil.eval.engine import run_round
    from distil.checks.loading import load_causal_lm
    from distil.eval.spec import EvalSpec
    from distil.eval.teacher import greedy_generate

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


def register(sub) -> None:
    rnd = sub.add_parser("round", help="a whole round vs a naive pipeline")
    rnd.add_argument("--tiny", action="store_true", required=True, help="tiny real-vocabulary models (the only mode)")
    rnd.add_argument("--prompts", type=int, default=8)
    rnd.add_argument("--max-new-tokens", type=int, default=32)
    rnd.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    rnd.set_defaults(run=lambda a: bench_round(a.prompts, a.max_new_tokens, a.device))
