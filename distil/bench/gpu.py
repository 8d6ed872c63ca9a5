"""`gpu`: a full round at the real shapes, random weights, no download.

    python -m distil.bench gpu                  # real shapes on the GPU (cuda)
    python -m distil.bench gpu --scale tiny     # the same code, tiny configs, CPU, seconds

Teacher: `Qwen3_5MoeForCausalLM` at the `Qwen/Qwen3.5-35B-A3B` text configuration
(`REAL_TEACHER`); students: `Qwen3ForCausalLM` at the `Qwen/Qwen3-4B` configuration with
the subnet's 248,320-token vocabulary (`REAL_STUDENT`), the king + `--challengers` (1).
Work as in a validator round: `--prompts` (120) random prompts of `--prompt-tokens` (512)
ids, `--max-new-tokens` (512), the spec's generation batch size, then the engine's own
`build_teacher_cache` and `score_models` — the code `engine.run_round` runs.

Weights: students are saved as safetensors and loaded by `load_causal_lm`, as the
validator loads them. The real teacher (≈67 GB in bf16) does not fit the disk of the GPU
machines we are lent (64 GiB), so at `--scale real` it is built in memory on the device
(transformers' random init, `--teacher-weights memory`) and its "load" is that init; at
`--scale tiny` it goes through disk and `load_causal_lm` like the students. The JSON
says which (`weights`).

Timing: the engine's functions are wrapped (not changed) to time each phase and read
the device's peak memory per phase; a device without memory statistics (CPU) reports
null. The physical limit of the same work is `gpu_limits` (formulas there), from the
device's bandwidth and bf16 peak (table, or `--bandwidth` / `--flops`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from distil.bench import machine
from distil.bench.gpu_limits import (WeightCensus, device_peaks, generation_limit, student_limit,
                                     teacher_forward_limit)

# Qwen/Qwen3.5-35B-A3B config.json, "text_config" (model_type qwen3_5_moe_text). transformers
# 5.23's Qwen3_5MoeTextConfig defaults agree on every shape below (checked); they differ only
# in eos_token_id (None), max_position_embeddings (32768) and the rope parameters (rope_theta
# 10,000, no mrope section), set here as the repo has them. Shapes cross-checked against
# copies of the repo's config.json in public code (no hub access here).
REAL_TEACHER = dict(
    vocab_size=248_320, hidden_size=2048, num_hidden_layers=40, num_attention_heads=16, num_key_value_heads=2,
    head_dim=256, linear_conv_kernel_dim=4, linear_key_head_dim=128, linear_value_head_dim=128,
    linear_num_key_heads=16, linear_num_value_heads=32, moe_intermediate_size=512,
    shared_expert_intermediate_size=512, num_experts=256, num_experts_per_tok=8, full_attention_interval=4,
    max_position_embeddings=262_144, rms_norm_eps=1e-6, tie_word_embeddings=False, eos_token_id=248_044,
    rope_parameters={"rope_type": "default", "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25,
                     "mrope_section": [11, 11, 10], "mrope_interleaved": True},
)
# Qwen/Qwen3-4B config.json, with the subnet's vocabulary (248,320 instead of 151,936):
# ≈4.3B parameters, under the 5.25B cap.
REAL_STUDENT = dict(
    vocab_size=248_320, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
    num_key_value_heads=8, head_dim=128, max_position_embeddings=40_960, rms_norm_eps=1e-6,
    tie_word_embeddings=True, eos_token_id=248_044, rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
)
GIB = 2**30


def configs(scale: str):
    from transformers import Qwen3_5MoeTextConfig, Qwen3Config

    if scale == "tiny":
        from distil import tiny

        return tiny.teacher_config(), tiny.student_config("qwen3")
    return Qwen3_5MoeTextConfig(**REAL_TEACHER), Qwen3Config(**REAL_STUDENT)


def build_random(config, device: str, dtype: torch.dtype, seed: int):
    """transformers' own random init, allocated directly on `device` (no CPU copy, no download)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.eos_token_id
    return model.eval().requires_grad_(False)


def census(model) -> WeightCensus:
    """Parameter counts by role, and the cache shape, of a built model."""
    from distil.eval.memory_plan import cache_shape

    embed = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    counts = {"expert": 0, "dense": 0}
    seen = {id(embed), id(head)}
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        counts["expert" if ".experts." in name else "dense"] += p.numel()
    text = model.config
    shape = cache_shape(text)
    experts = int(getattr(text, "num_experts", 0) or 0)
    state = shape.conv_dim * shape.conv_kernel * head.element_size() + shape.linear_v_heads * shape.linear_k_dim * shape.linear_v_dim * 4
    return WeightCensus(
        bytes_per_param=head.element_size(), embed_params=embed.numel(), head_params=head.numel(),
        expert_params=counts["expert"], dense_params=counts["dense"], moe_layers=text.num_hidden_layers if experts else 0,
        n_experts=experts, top_k=int(getattr(text, "num_experts_per_tok", 0) or 0), hidden=shape.hidden,
        full_attention_layers=shape.full_attention_layers, kv_width=2 * shape.kv_heads * shape.head_dim,
        linear_layers=shape.linear_layers, linear_state_bytes=state,
    )


class Meter:
    """Seconds and peak device memory per phase, for any torch backend that keeps statistics."""

    def __init__(self, device: str):
        self.backend = getattr(torch, torch.device(device).type, None)
        self.seconds: dict[str, float] = {}
        self.peak: dict[str, float | None] = {}

    def _sync(self):
        sync = getattr(self.backend, "synchronize", None)
        if sync is not None:
            sync()

    def _has_stats(self) -> bool:
        return hasattr(self.backend, "max_memory_allocated") and self.backend.is_available()

    @contextlib.contextmanager
    def phase(self, name: str):
        self._sync()
        if self._has_stats():
            self.backend.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            if self._has_stats():
                peak = self.backend.max_memory_allocated() / GIB
                self.peak[name] = max(peak, self.peak.get(name) or 0.0)
            else:
                self.peak.setdefault(name, None)


@contextlib.contextmanager
def instrumented(meter: Meter, keys_by_path: dict[str, str]):
    """Wrap the engine's load / forward / KL functions (module globals) with the meter."""
    from distil.eval import engine, teacher

    current = {"key": None}
    originals = {(engine, "load_causal_lm"): engine.load_causal_lm, (engine, "final_hidden"): engine.final_hidden,
                 (engine, "kl_from_hidden"): engine.kl_from_hidden, (engine, "own_logits_kl"): engine.own_logits_kl,
                 (teacher, "greedy_generate"): teacher.greedy_generate}

    def timed(fn, phase_of):
        def wrapper(*args, **kwargs):
            with meter.phase(phase_of(args)):
                return fn(*args, **kwargs)
        return wrapper

    def load_phase(args):
        current["key"] = keys_by_path.get(str(args[0]), str(args[0]))
        return f"student.{current['key']}.load"

    engine.load_causal_lm = timed(originals[(engine, "load_causal_lm")], load_phase)
    engine.final_hidden = timed(originals[(engine, "final_hidden")], lambda a: f"student.{current['key']}.forward")
    engine.kl_from_hidden = timed(originals[(engine, "kl_from_hidden")], lambda a: f"student.{current['key']}.kl")
    engine.own_logits_kl = timed(originals[(engine, "own_logits_kl")], lambda a: f"student.{current['key']}.forward_and_kl")
    teacher.greedy_generate = timed(originals[(teacher, "greedy_generate")], lambda a: "generation")
    try:
        yield
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)


def bench_gpu(*args, **kwargs) -> dict:
    """`_bench` in a temporary directory that is removed afterwards (students are GBs at the real scale)."""
    with tempfile.TemporaryDirectory(prefix="distil-bench-gpu-") as root:
        return _bench(Path(root), *args, **kwargs)


def _bench(root: Path, scale: str, device: str, challengers: int, n_prompts: int, prompt_tokens: int,
           max_new_tokens: int, teacher_weights: str, bandwidth: float | None, flops: float | None, seed: int = 0) -> dict:
    from distil.eval.engine import score_models
    from distil.eval.fastpaths import assess, facts_of
    from distil.checks.loading import free_memory, load_causal_lm
    from distil.eval.spec import EvalSpec
    from distil.eval.teacher import build_teacher_cache

    teacher_cfg, student_cfg = configs(scale)
    spec = EvalSpec(n_prompts=n_prompts, max_new_tokens=max_new_tokens, max_prompt_tokens=prompt_tokens, device=device,
                    vocab_size=teacher_cfg.vocab_size)
    dtype = spec.torch_dtype
    keys = ["king"] + [f"challenger{i}" for i in range(1, challengers + 1)]
    students, student_census = [], None
    for i, key in enumerate(keys):  # saved in bf16, as committed models are
        model = build_random(student_cfg, device, torch.bfloat16, seed + 1 + i)
        student_census = student_census or dataclasses.replace(census(model), bytes_per_param=dtype.itemsize)
        model.save_pretrained(str(root / key))
        students.append((key, str(root / key)))
        del model
        free_memory()
    if teacher_weights == "disk":
        build_random(teacher_cfg, device, torch.bfloat16, seed).save_pretrained(str(root / "teacher"))
        free_memory()
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(0, teacher_cfg.vocab_size - 512, (n_prompts, prompt_tokens), generator=g).tolist()

    meter = Meter(device)
    started = time.perf_counter()
    with meter.phase("teacher_load"):
        if teacher_weights == "disk":
            teacher = load_causal_lm(root / "teacher", device, dtype, spec.vocab_size, allow_unexpected=True)
        else:
            teacher = build_random(teacher_cfg, device, dtype, seed)
    teacher_census = census(teacher)
    fast = {"teacher": [p.line() for p in assess(facts_of(teacher))]}
    with instrumented(meter, {p: k for k, p in students}):
        with meter.phase("teacher_pass"):
            cache = build_teacher_cache(teacher, prompts, spec.max_new_tokens, spec.generation_batch_size)
        teacher = None
        free_memory()
        results = score_models(cache, students, spec)
    wall = time.perf_counter() - started
    failed = {k: r.detail for k, r in results.items() if not r.ok}

    conts = cache.continuation_ids
    generated = sum(map(len, conts))
    lengths = [len(p) + len(c) - 1 for p, c in zip(prompts, conts)]
    seconds = {"teacher_load": meter.seconds["teacher_load"], "generation": cache.timings["generate_s"],
               "teacher_forward": cache.timings["teacher_forward_s"], "students": {}}
    for key in keys:
        phases = {ph: meter.seconds.get(f"student.{key}.{ph}", 0.0) for ph in ("load", "forward", "kl", "forward_and_kl")}
        phases["total"] = results[key].seconds + phases["load"]
        seconds["students"][key] = phases
    peaks = {"teacher_load": meter.peak.get("teacher_load"), "generation": meter.peak.get("generation"),
             "teacher_pass": meter.peak.get("teacher_pass"),
             "students": {k: max((v for n, v in meter.peak.items() if n.startswith(f"student.{k}.") and v is not None),
                                 default=None) for k in keys}}

    name = machine()
    peaks_known = device_peaks(name)
    bw = bandwidth or (peaks_known[0] if peaks_known else None)
    fl = flops or (peaks_known[1] if peaks_known else None)
    limit = None
    if bw and fl:
        batches = [min(spec.generation_batch_size, n_prompts - b) for b in range(0, n_prompts, spec.generation_batch_size)]
        gen = generation_limit(teacher_census, batches, prompt_tokens, max_new_tokens, bw, fl)
        fwd = teacher_forward_limit(teacher_census, lengths, bw, fl)
        per_student = student_limit(student_census, teacher_census.hidden, teacher_cfg.vocab_size, lengths,
                                    [len(c) for c in conts], bw, fl)
        total = gen + fwd + per_student * len(keys)
        measured_students = sum(s["total"] for s in seconds["students"].values())
        limit = {
            "bandwidth_bytes_per_s": bw, "peak_flops": fl,
            "source": "--bandwidth/--flops" if (bandwidth or flops) else f"datasheet table ({name})",
            "decode_bytes_per_step": teacher_census.decode_step_bytes(batches[0], prompt_tokens + max_new_tokens / 2),
            "touched_experts_per_layer": teacher_census.touched_experts(batches[0]),
            "seconds": {"generation": gen, "teacher_forward": fwd, "per_student": per_student, "round": total},
            "ratio": {"generation": seconds["generation"] / gen, "teacher_forward": seconds["teacher_forward"] / fwd,
                      "students": measured_students / (per_student * len(keys)),
                      "round": (wall - seconds["teacher_load"]) / total},
            "formula": "distil/bench/gpu_limits.py (docstring)",
        }
    return {
        "bench": "gpu", "scale": scale, "device": name, "dtype": str(dtype).removeprefix("torch."),
        "weights": {"teacher": "random, in memory (transformers init on the device; no disk load)"
                    if teacher_weights == "memory" else "random, saved as safetensors, loaded by load_causal_lm",
                    "students": "random, saved as safetensors, loaded by load_causal_lm"},
        "configs": {"teacher": "Qwen/Qwen3.5-35B-A3B text_config" if scale == "real" else "distil.tiny teacher",
                    "student": "Qwen/Qwen3-4B, vocab 248,320" if scale == "real" else "distil.tiny qwen3 student"},
        "workload": {"prompts": n_prompts, "prompt_tokens": prompt_tokens, "max_new_tokens": max_new_tokens,
                     "generation_batch_size": spec.generation_batch_size, "generated_tokens": generated,
                     "students": keys},
        "seconds": seconds, "round_wall_s": wall, "round_wall_without_teacher_load_s": wall - seconds["teacher_load"],
        "generation_tokens_per_s": generated / seconds["generation"],
        "peak_memory_gib": peaks, "census": {"teacher": teacher_census.to_dict(), "student": student_census.to_dict()},
        "limit": limit, "target": "round (without teacher load) <= 3 x limit.seconds.round",
        "fast_paths": fast, "failed": failed,
    }


def register(sub) -> None:
    gpu = sub.add_parser("gpu", help="a full round at the real shapes with random weights (no download)")
    gpu.add_argument("--scale", choices=("real", "tiny"), default="real")
    gpu.add_argument("--device", default=None, help="default: cuda at --scale real, cpu at --scale tiny")
    gpu.add_argument("--challengers", type=int, default=1)
    gpu.add_argument("--prompts", type=int, default=None, help="default: 120 (real), 3 (tiny)")
    gpu.add_argument("--prompt-tokens", type=int, default=None, help="default: 512 (real), 12 (tiny)")
    gpu.add_argument("--max-new-tokens", type=int, default=None, help="default: 512 (real), 6 (tiny)")
    gpu.add_argument("--teacher-weights", choices=("memory", "disk"), default=None,
                     help="default: memory (real: 67 GB does not fit the disk), disk (tiny)")
    gpu.add_argument("--bandwidth", type=float, default=None, help="memory bandwidth, bytes/s (default: device table)")
    gpu.add_argument("--flops", type=float, default=None, help="peak bf16 FLOP/s (default: device table)")
    gpu.set_defaults(run=_run)


def _run(a) -> dict:
    real = a.scale == "real"
    pick = lambda value, real_default, tiny_default: value if value is not None else (real_default if real else tiny_default)  # noqa: E731
    return bench_gpu(a.scale, pick(a.device, "cuda", "cpu"), a.challengers, pick(a.prompts, 120, 3),
                     pick(a.prompt_tokens, 512, 12), pick(a.max_new_tokens, 512, 6),
                     pick(a.teacher_weights, "memory", "disk"), a.bandwidth, a.flops)


