"""`train --tiny`: one training step of the tiny student, chunked KL loss vs naive full logits.

The step is forward + backward + AdamW of a tiny real-vocabulary student (fp32) against
the tiny teacher's cached hidden states and lm_head, on `--batch` prompts with
`--positions` scored positions each. tokens_per_s = scored positions / step time (best
of --repeats, interleaved); extra_mb = peak memory of a step above the baseline of
weights + gradients + AdamW states (allocated by a warm-up step first; CPU: resident set
sampled every 0.5 ms; CUDA: max_memory_allocated). The chunked step is measured before the
naive one, so the naive step cannot lend it freed heap. speed_ratio = chunked tokens/s /
naive tokens/s; memory_ratio = chunked extra / naive extra.
"""

from __future__ import annotations

import os
import time

import torch

from distil.bench import _sync, machine, peak_extra_memory


def bench_train(batch: int, prompt_len: int, positions: int, chunk_size: int, repeats: int, device: str) -> dict:
    from distil import tiny
    from distil.train.loss import chunked_kl_loss, naive_kl_loss

    student = tiny.build_model(tiny.student_config("qwen3"), seed=1, dtype=torch.float32).to(device)
    teacher = tiny.build_model(tiny.teacher_config(), seed=0, dtype=torch.float32).to(device)
    student.train().requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 248_000, (batch, prompt_len + positions - 1), generator=g).to(device)
    with torch.no_grad():
        t_hidden = teacher.get_decoder()(input_ids=ids).last_hidden_state[:, prompt_len - 1 :].reshape(-1, 64)
    t_weight = teacher.lm_head.weight.detach()
    del teacher
    rows = t_hidden.shape[0]
    weights = torch.full((rows,), 1.0 / rows, device=device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)

    def hidden():
        return student.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state[:, prompt_len - 1 :].reshape(-1, 64)

    def chunked():
        loss, _ = chunked_kl_loss(hidden(), student.lm_head.weight, None, t_hidden, t_weight, None, weights, chunk_size)
        return _finish(loss, optimizer)

    def naive():
        loss, _ = naive_kl_loss(student.lm_head(hidden()), t_hidden @ t_weight.t(), weights)
        return _finish(loss, optimizer)

    chunked()  # warm-up: AdamW states and gradients now exist (the baseline)
    results = {}
    for name, fn in (("chunked", chunked), ("naive", naive)):
        loss, _, extra = peak_extra_memory(fn, device)
        results[name] = {"loss": loss, "extra": extra, "best_s": float("inf")}
    for _ in range(repeats):
        for name, fn in (("chunked", chunked), ("naive", naive)):
            _sync(device)
            started = time.perf_counter()
            fn()
            _sync(device)
            results[name]["best_s"] = min(results[name]["best_s"], time.perf_counter() - started)
    c, n = results["chunked"], results["naive"]
    logits_mb = rows * t_weight.shape[0] * 4 / 2**20
    return {
        "bench": "train", "device": machine(), "batch": batch, "scored_positions": rows, "chunk_size": chunk_size,
        "one_fp32_logits_mb": round(logits_mb, 1),
        "chunked_tokens_per_s": round(rows / c["best_s"], 1), "naive_tokens_per_s": round(rows / n["best_s"], 1),
        "speed_ratio": round(n["best_s"] / c["best_s"], 2),
        "chunked_extra_mb": round(c["extra"] / 2**20, 1), "naive_extra_mb": round(n["extra"] / 2**20, 1),
        "memory_ratio": round(c["extra"] / max(n["extra"], 1), 4),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _finish(loss: torch.Tensor, optimizer) -> float:
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=False)  # gradients stay allocated: part of the baseline
    return float(loss.detach())


def register(sub) -> None:
    train = sub.add_parser("train", help="a training step: chunked KL loss vs naive full logits")
    train.add_argument("--tiny", action="store_true", required=True, help="tiny real-vocabulary models (the only mode)")
    train.add_argument("--batch", type=int, default=4)
    train.add_argument("--prompt-len", type=int, default=32)
    train.add_argument("--positions", type=int, default=128, help="scored positions per prompt")
    train.add_argument("--chunk-size", type=int, default=32)
    train.add_argument("--repeats", type=int, default=3)
    train.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    train.set_defaults(run=lambda a: bench_train(a.batch, a.prompt_len, a.positions, a.chunk_size, a.repeats, a.device))
