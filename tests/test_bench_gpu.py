"""`python -m distil.bench gpu`: the tiny scale runs the real round code on CPU and prints
its JSON; the physical-limit arithmetic matches a hand computation; the real shapes are
those of the teacher and a 4B student (built on the meta device: no memory)."""

import json

import torch

from distil.bench import __main__ as bench
from distil.bench import gpu
from distil.bench.gpu_limits import WeightCensus, device_peaks, generation_limit


def test_tiny_round_prints_the_json_and_its_limit_is_the_hand_computed_one(capsys):
    bw, fl = 1e11, 1e12
    assert bench.main(["gpu", "--scale", "tiny", "--prompts", "2", "--prompt-tokens", "6", "--max-new-tokens", "3",
                       "--bandwidth", str(bw), "--flops", str(fl)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bench"] == "gpu" and doc["failed"] == {}
    assert set(doc["seconds"]) == {"teacher_load", "generation", "teacher_forward", "students"}
    assert set(doc["seconds"]["students"]) == {"king", "challenger1"}
    for phases in doc["seconds"]["students"].values():
        assert phases["load"] > 0 and phases["forward"] > 0 and phases["kl"] > 0
    assert doc["generation_tokens_per_s"] > 0 and doc["workload"]["generated_tokens"] <= 6
    assert set(doc["peak_memory_gib"]) == {"teacher_load", "generation", "teacher_pass", "students"}
    assert any("slow fallback" in line for line in doc["fast_paths"]["teacher"])

    # the limit, by hand from the census: 1 batch of 2 sequences, prompt 6, 3 new tokens
    t = doc["census"]["teacher"]
    b, p, n = 2, 6, 3
    expert_each = t["expert_params"] / (t["moe_layers"] * t["n_experts"])
    touched = t["n_experts"] * (1 - (1 - t["top_k"] / t["n_experts"]) ** b)
    step_bytes = ((t["dense_params"] + t["head_params"] + t["moe_layers"] * touched * expert_each) * t["bytes_per_param"]
                  + t["full_attention_layers"] * t["kv_width"] * b * (p + n / 2) * t["bytes_per_param"]
                  + 2 * t["linear_layers"] * b * t["linear_state_bytes"])
    active = t["dense_params"] + t["moe_layers"] * t["top_k"] * expert_each
    generation = 2 * active * b * p / fl + n * max(step_bytes / bw, 2 * (active + t["head_params"]) * b / fl)
    limit = doc["limit"]
    assert abs(limit["decode_bytes_per_step"] - step_bytes) <= 1e-9 * step_bytes
    assert abs(limit["seconds"]["generation"] - generation) <= 1e-9 * generation
    assert abs(limit["ratio"]["generation"] - doc["seconds"]["generation"] / generation) <= 1e-6 * limit["ratio"]["generation"]
    s = doc["census"]["student"]
    assert s["bytes_per_param"] == 4  # scored in float32 on CPU


def test_real_shapes_and_the_h200_h100_generation_limits():
    teacher_cfg, student_cfg = gpu.configs("real")
    teacher = gpu.census(gpu.build_random(teacher_cfg, "meta", torch.bfloat16, 0))
    student = gpu.census(gpu.build_random(student_cfg, "meta", torch.bfloat16, 0))
    total = teacher.embed_params + teacher.head_params + teacher.expert_params + teacher.dense_params
    assert 34e9 < total < 36e9  # "35B"
    assert 2.5e9 < teacher.active_params() < 3.5e9  # "A3B"
    assert (teacher.full_attention_layers, teacher.linear_layers, teacher.n_experts, teacher.top_k) == (10, 30, 256, 8)
    assert 4.0e9 < student.embed_params + student.dense_params < 5.25e9  # tied head: counted once
    batches = [16] * 7 + [8]  # 120 prompts at the spec's batch size
    h200 = generation_limit(teacher, batches, 512, 512, *device_peaks("NVIDIA H200"))
    h100 = generation_limit(teacher, batches, 512, 512, *device_peaks("NVIDIA H100 80GB HBM3"))
    assert 24 < h200 < 30 and 34 < h100 < 42  # issue 10's estimate: ≈27 s and ≈38 s


def test_touched_experts_formula_edges():
    c = WeightCensus(2, 0, 0, 256 * 3, 0, moe_layers=1, n_experts=256, top_k=8)
    assert abs(c.touched_experts(1) - 8) < 1e-9 and c.touched_experts(10_000) > 255.99


def test_round_bench_removes_its_tiny_models(tmp_path, monkeypatch, capsys):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert bench.main(["round", "--tiny", "--prompts", "2", "--max-new-tokens", "2", "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["bench"] == "round" and doc["same_continuations"]
    assert list(scratch.iterdir()) == []  # each run used to leave its models (hundreds of MB) behind
