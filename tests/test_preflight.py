"""Start-up preflight: devices that do not exist, bad model sources, the memory plan and
the cache disk are refused in one line before any teacher work (fake device memory and
free-disk figures hit each branch; the CUDA and path refusals run the real entry points)."""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from conftest import ROOT
from distil import tiny
from distil.eval import memory_plan as mp
from distil.eval import preflight as pf
from distil.eval.spec import EvalSpec
from eval_helpers import model_dir

GIB = 2**30
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def gpu(total_gib, available=True, count=1, index=0, name="cuda"):
    return lambda _: pf.DeviceFacts(name, "cuda", available, count, index, int(total_gib * GIB), True, f"{name} (fake)")


# -- devices and sources ------------------------------------------------------------------


def test_a_device_that_does_not_exist_is_named_in_one_line():
    no_cuda = pf.device_problem(gpu(80, available=False)(None), "--device")
    assert "--device cuda: CUDA is not available" in no_cuda
    third = pf.device_problem(pf.DeviceFacts("cuda:3", "cuda", True, 1, 3, None, True, "x"), "--neuron.device")
    assert third == "--neuron.device cuda:3: no such device, this machine has 1 CUDA device(s) (cuda:0 to cuda:0)"
    assert pf.device_problem(gpu(80)(None), "--device") is None
    host = pf.probe_device("cpu")  # the real probe: host memory, never enforced
    assert host.available and not host.enforce and host.total_bytes > GIB


def test_model_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    assert pf.source_problem("/nonexistent/model", "--student") == "--student /nonexistent/model: no such directory"
    assert pf.source_problem("./nope", "--student") == "--student ./nope: no such directory"
    assert "has no config.json" in pf.source_problem(str(tmp_path / "empty"), "--teacher")
    assert pf.source_problem("bad//repo", "--student") == "--student bad//repo: no such directory"  # two '/': a path
    assert "neither a local directory nor a hub repo id" in pf.source_problem("bad repo", "--student")
    assert "neither a local directory nor a hub repo id" in pf.source_problem("noteacher", "--teacher")  # no namespace
    (tmp_path / "a-file").write_text("x")
    assert pf.source_problem(str(tmp_path / "a-file"), "--teacher").endswith(": not a directory (give the model's "
                                                                           "directory, not a file in it)")
    assert "malformed revision" in pf.source_problem("a/b@", "--student")
    assert pf.source_problem("Qwen/Qwen3.5-35B-A3B", "--teacher") is None
    assert pf.source_problem("miner/model@" + "a" * 40, "--student") is None
    assert pf.source_problem(model_dir("teacher"), "--teacher") is None


# -- the memory plan ------------------------------------------------------------------------


def test_hybrid_cache_counts_only_full_attention_layers_as_growing():
    from transformers import Qwen3_5MoeTextConfig, Qwen3Config

    shape = mp.cache_shape(Qwen3_5MoeTextConfig())  # the real teacher's text config
    assert (shape.full_attention_layers, shape.linear_layers) == (10, 30)
    b, t = 16, 1024
    kv = 10 * 2 * 2 * 256 * b * t * 2  # layers × (k, v) × kv heads × head dim × tokens × bf16
    state = 30 * b * ((2 * 16 * 128 + 32 * 128) * 4 * 2 + 32 * 128 * 128 * 4)  # conv (bf16) + recurrent (fp32)
    assert mp.generation_cache_bytes(shape, b, t, 2) == kv + state
    # doubling the length doubles only the KV part
    assert mp.generation_cache_bytes(shape, b, 2 * t, 2) == 2 * kv + state
    dense = mp.cache_shape(Qwen3Config(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, hidden_size=256))
    assert (dense.full_attention_layers, dense.linear_layers, dense.head_dim) == (4, 0, 128)  # Qwen3 sets head_dim
    interval = SimpleNamespace(num_hidden_layers=8, full_attention_interval=4, num_attention_heads=4, hidden_size=64)
    assert (mp.cache_shape(interval).full_attention_layers, mp.cache_shape(interval).linear_layers) == (2, 6)


def fake_teacher(params, to_download=0):
    return lambda source, cache_dir: pf.TeacherFacts(tiny.teacher_config(), params, params * 2, to_download)


def run(total_gib=None, free_gib=1000.0, params=1_000_000_000, max_student=5_250_000_000, enforce=True,
        max_cache_gb=None, to_download=0, spec=None):
    probe = gpu(total_gib) if enforce else (
        lambda _: pf.DeviceFacts("cpu", "cpu", True, 1, 0, int(total_gib * GIB), False, "cpu (host RAM)"))
    return pf.preflight(device="cuda", device_flag="--device", sources=[("--teacher", model_dir("teacher"))],
                        spec=spec or EvalSpec(device="cuda"), max_student_params=max_student, cache_dir="/cache",
                        max_cache_gb=max_cache_gb, students_to_download=2, probe=probe,
                        free_disk=lambda path: int(free_gib * GIB), teacher=fake_teacher(params, to_download))


def test_every_fan_out_device_must_exist_and_hold_the_plan():
    """--devices / --neuron.devices: each listed device is probed, and the plan is judged on each."""
    def probe(name):  # a 1-GPU box: cuda:0 exists (80 GiB), nothing else
        index = int(name.partition(":")[2] or 0)
        return pf.DeviceFacts(name, "cuda", True, 1, index, int(80 * GIB), True, f"{name} (fake)")

    common = dict(device="cuda", sources=[("--teacher", model_dir("teacher"))], spec=EvalSpec(device="cuda"),
                  max_student_params=5_250_000_000, cache_dir="/cache", max_cache_gb=None, students_to_download=2,
                  probe=probe, free_disk=lambda path: 1000 * GIB, teacher=fake_teacher(1_000_000_000))
    with pytest.raises(pf.PreflightError, match=r"--devices cuda:1: no such device, this machine has 1 CUDA"):
        pf.preflight(device_flag="--devices", devices=["cuda:0", "cuda:1"], **common)
    verdicts = pf.preflight(device_flag="--devices", devices=["cuda:0", "cuda:0"], **common)
    assert sum("memory plan" in v.message for v in verdicts) == 1  # the same device is judged once


def test_distil_eval_budgets_hub_students_at_their_real_size_and_the_cap_when_unknown():
    """A miner checking two 1 GiB hub students with 10 GiB free is not refused; a student the
    hub cannot describe is budgeted at the cap (5.25B × 2 bytes = 9.8 GiB)."""
    small = ["you/small-a@" + "a" * 40, "you/small-b@" + "b" * 40]

    def facts(source, cache_dir):  # a local teacher (nothing to download) and two 1 GiB hub students
        if os.path.isdir(source) or source in small:
            return pf.TeacherFacts(tiny.teacher_config(), 1_000_000, 2_000_000, 0 if os.path.isdir(source) else GIB)
        raise ConnectionError("hub down")

    common = dict(device="cpu", device_flag="--device", sources=[("--teacher", model_dir("teacher"))],
                  spec=EvalSpec(), max_student_params=5_250_000_000, cache_dir="/cache", max_cache_gb=None,
                  students_to_download=0, teacher=facts, free_disk=lambda path: 10 * GIB)
    verdicts = pf.preflight(**common, student_sources=small)
    assert verdicts[-1].level == "ok" and "2 student(s) to download 2.0 GiB" in verdicts[-1].message
    with pytest.raises(pf.PreflightError, match="not enough disk"):
        pf.preflight(**common, student_sources=small + ["you/unknown@" + "c" * 40])


def expected_plan(params, max_student=5_250_000_000):
    """The plan recomputed by hand from the spec's defaults (bf16, 120 × 512 + 512 tokens, batch 16)."""
    cfg = tiny.teacher_config()  # hidden 64, 1 full + 1 linear layer, 2 of 4 experts of 32 + shared 32
    h, v = 64, 248_320
    kv = 1 * 2 * 2 * 16 * 16 * 1024 * 2
    state = 1 * 16 * ((2 * 2 * 16 + 4 * 16) * 4 * 2 + 4 * 16 * 16 * 4)
    act = 16 * 512 * (16 * h + 3 * (2 * 32 + 32)) * 2 + 2 * 16 * v * 4
    cache = 120 * 512 * h * 2
    teacher = params * 2 + kv + state + act + cache
    student = max_student * 2 + max_student * 2 + cache + v * h * 2 + 1024 * (16 * 4096 + 3 * 12288) * 2 + (3 * 32 + 2 * 128) * v * 4
    assert cfg.hidden_size == h
    peak = max(teacher, student)
    return teacher, student, peak + GIB + int(0.1 * peak)


def test_the_plan_is_the_larger_phase_plus_margin_and_refuses_what_does_not_fit(capfd):
    params = 60_000_000_000  # a 120 GB teacher
    teacher, student, need = expected_plan(params)
    assert teacher > student
    verdicts = run(total_gib=need / GIB + 50, params=params)
    assert verdicts[0].level == "ok" and f"needs {need / GIB:.2f} GiB" in verdicts[0].message
    with pytest.raises(pf.PreflightError) as e:
        run(total_gib=need / GIB - 0.5, params=params)
    assert "does not fit (teacher phase is the larger)" in str(e.value) and "\n" not in str(e.value)
    warn = run(total_gib=need / GIB * 1.05, params=params)  # within 10%: a warning, not a refusal
    assert warn[0].level == "warn" and "within 10%" in warn[0].message
    host = run(total_gib=need / GIB / 2, params=params, enforce=False)  # host RAM: warn only
    assert host[0].level == "warn" and "not enforced" in host[0].message


def test_the_student_phase_decides_when_the_teacher_is_small():
    teacher, student, need = expected_plan(1_000_000)
    assert student > teacher
    with pytest.raises(pf.PreflightError, match="student phase is the larger"):
        run(total_gib=need / GIB - 0.01, params=1_000_000)
    assert run(total_gib=need / GIB + 0.01, params=1_000_000)[0].level == "warn"  # fits, but within 10%


def test_the_plan_is_logged_term_by_term():
    from loguru import logger

    lines = []
    sink = logger.add(lines.append, format="{message}")
    try:
        run(total_gib=1000)
    finally:
        logger.remove(sink)
    plan = next(line for line in lines if "memory plan on" in line)
    for term in ("teacher weights", "generation cache", "activations", "teacher cache", "student weights",
                 "fingerprint upcast", "margin"):
        assert term in plan
    assert "GiB" in plan
    assert any("slow fallback" in line for line in lines)  # fast paths reported at start-up


def test_cache_disk_must_hold_the_teacher_and_two_students_or_the_cache_cap():
    need = 100 * GIB + 2 * 5_250_000_000 * 2
    with pytest.raises(pf.PreflightError, match="not enough disk"):
        run(total_gib=1000, free_gib=need / GIB - 1, to_download=100 * GIB)
    ok = run(total_gib=1000, free_gib=need / GIB + 1, to_download=100 * GIB)
    assert ok[-1].level == "ok" and f"{need / GIB:.1f} GiB needed" in ok[-1].message
    with pytest.raises(pf.PreflightError, match="--checks.max_cache_gb 200"):
        run(total_gib=1000, free_gib=150, max_cache_gb=200)
    assert run(total_gib=1000, free_gib=250, max_cache_gb=200)[-1].level == "ok"


def test_real_teacher_directory_plan_reads_safetensors_headers():
    facts = pf.local_teacher(model_dir("teacher"))
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir("teacher"))
    assert facts.param_count == sum(p.numel() for p in model.parameters())
    assert facts.to_download_bytes == 0 and facts.stored_bytes > facts.param_count  # bf16 on disk


# -- the entry points -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    path = tmp_path_factory.mktemp("preflight") / "prompts.jsonl"
    path.write_text('{"text": "hello"}\n{"text": "world"}\n')
    return str(path)


def eval_cli(prompts, *extra):
    cmd = [sys.executable, "-m", "distil.eval.cli", "--teacher", model_dir("teacher"), "--prompts-file", prompts,
           "--seed", "0x01", "--n-prompts", "2", "--max-new-tokens", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


def test_distil_eval_without_cuda_exits_2_with_one_clear_line(prompts):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = eval_cli(prompts, "--student", model_dir("student"), "--device", "cuda")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--device cuda: CUDA is not available" in proc.stderr
    assert "accelerate" not in proc.stderr and "Traceback" not in proc.stderr
    assert "teacher" not in proc.stderr.replace("--teacher", "")  # nothing of the teacher pass ran


def test_distil_eval_missing_student_exits_2_before_any_teacher_work(prompts):
    proc = eval_cli(prompts, "--student", "/nonexistent")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "distil-eval: error: --student /nonexistent: no such directory"
    assert "greedy generation" not in proc.stderr and "loaded" not in proc.stderr


def test_validator_without_cuda_exits_2_before_the_first_epoch(tmp_path, prompts):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"teacher": model_dir("teacher"), "miners": []}))
    cmd = [sys.executable, "neurons/validator.py", "--mock", "--mock.scenario", str(scenario), "--neuron.epochs", "1",
           "--wallet.name", "v", "--wallet.hotkey", "h", "--neuron.full_path", str(tmp_path / "state"),
           "--neuron.axon_off", "--wandb.off", "--neuron.device", "cuda", "--eval.prompts_file", str(prompts),
           "--eval.n_prompts", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]  # it cannot start: not a verdict
    assert "error: --neuron.device cuda: CUDA is not available" in proc.stderr
    assert "epoch starting" not in proc.stdout + proc.stderr


def test_distil_eval_malformed_devices_exits_2_with_one_clear_line(prompts):
    proc = eval_cli(prompts, "--student", model_dir("student"), "--devices", "cpu,cuda:0")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("distil-eval: error: --devices must all be of one kind")
