"""The fast-path report: read from what transformers actually resolved, "slow fallback" in
the log for every path that runs reference PyTorch code."""

import math
import types

import torch

from distil import tiny
from distil.eval import fastpaths as fp


def test_tiny_teacher_on_this_cpu_machine_reports_the_linear_attention_fallback():
    from loguru import logger

    lines = []
    sink = logger.add(lines.append, format="{message}")
    try:
        paths = fp.log_fast_paths(fp.model_on_meta(tiny.teacher_config()), "teacher")
    finally:
        logger.remove(sink)
    by_name = {p.name: p for p in paths}
    assert not by_name["linear attention (gated delta rule)"].active  # no fla here, no CUDA
    assert not by_name["linear attention (causal conv1d)"].active
    assert by_name["attention"].active and by_name["attention"].detail == "sdpa"
    assert by_name["MoE experts"].active and by_name["MoE experts"].detail == "grouped_mm"
    assert sum("slow fallback: linear attention" in line for line in lines) == 2
    # a dense Qwen3 student has neither linear attention nor experts
    assert [p.name for p in fp.assess(fp.facts_of(fp.model_on_meta(tiny.student_config("qwen3"))))] == ["attention"]


def test_resolution_is_read_from_transformers_own_wrapper():
    from transformers.integrations.hub_kernels import use_kernel_func_from_hub_with_fallback

    @use_kernel_func_from_hub_with_fallback("sqrt", "math")  # a package that imports: replaced
    def replaced(x):
        return x

    @use_kernel_func_from_hub_with_fallback("no_such_function", "no_such_package_xyz")  # falls back
    def kept(x):
        return x

    module = types.SimpleNamespace(torch_chunk_gated_delta_rule=replaced, causal_conv1d_fn=kept)
    assert fp._resolved(module, "torch_chunk_gated_delta_rule") is True
    assert fp._resolved(module, "causal_conv1d_fn") is False
    assert fp._resolved(module, "missing") is None
    assert replaced(4.0) == math.sqrt(4.0)


def test_assess_names_each_fallback_and_why():
    fast = fp.ModelFacts("M", "sdpa", "grouped_mm", fla_resolved=True, fla_flag=True, conv1d_resolved=True, conv1d_flag=True)
    assert all(p.active for p in fp.assess(fast))
    no_cuda = fp.assess(fp.ModelFacts("M", "sdpa", None, fla_resolved=True, fla_flag=False, conv1d_resolved=False))
    assert "no CUDA device" in no_cuda[1].detail and not no_cuda[1].active
    assert "causal-conv1d is not installed" in no_cuda[2].detail
    slow = fp.assess(fp.ModelFacts("M", "eager", "eager", fla_resolved=None))
    assert [p.line().split(":")[0] for p in slow] == ["slow fallback", "slow fallback"]


def test_the_loaded_model_path_reports_the_same():
    model = tiny.build_model(tiny.teacher_config(num_hidden_layers=2), dtype=torch.float32)
    assert fp.assess(fp.facts_of(model)) == fp.assess(fp.facts_of(fp.model_on_meta(tiny.teacher_config())))


def test_a_run_on_cpu_logs_no_install_hint_and_no_warning():
    """The linear-attention kernels are CUDA-only: on CPU their fallback is said at INFO, with no
    `pip install` that could not help; the same model on CUDA gets the warning and the hint."""
    from loguru import logger

    model = fp.model_on_meta(tiny.teacher_config())
    for cuda in (False, True):
        lines = []
        sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), format="{message}")
        try:
            fp.log_fast_paths(model, "teacher", cuda=cuda)
        finally:
            logger.remove(sink)
        linear = [(level, text) for level, text in lines if "linear attention" in text]
        assert len(linear) == 2
        if cuda:
            assert all(level == "WARNING" and ("pip install" in text or "nvcc" in text) for level, text in linear)
        else:
            assert all(level == "INFO" and "CUDA-only: nothing to install" in text and "pip install" not in text
                       for level, text in linear), linear
