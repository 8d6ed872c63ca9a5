"""The one load function and its architecture guard (issues 9 §1, §6 and 10 §1).

Every model the validator touches (pre-check, teacher, students) loads through
`distil.checks.loading.load_causal_lm`, the same call on every device; before any weight is
created it builds config.json's model on the meta device and refuses a config that does not
describe exactly the weight files, so memory is bounded by the repo, not by its config.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arch_builders import real_teacher_headers, save_tiny_hub_teacher
from distil import MAX_PARAMS, SCORED_LENGTH, VOCAB_SIZE, tiny
from distil.checks.architecture import TEACHER_EXTRA_PREFIXES, check_architecture
from distil.checks.loading import InvalidModel, check_loads, load_causal_lm
from distil.checks.result import CheckFailure
from model_builders import clone, edit_json, rewrite_weights, tiny_gpt2_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("load-guard")
    tiny.save_student(root / "qwen3_5", seed=1)
    tiny.save_student(root / "qwen3", seed=2, arch="qwen3")
    tiny.save_student(root / "tied", seed=3, arch="qwen3", tie_word_embeddings=True)
    tiny.save_teacher(root / "teacher_text")
    save_tiny_hub_teacher(root / "teacher_hub")
    tiny.save_model(root / "gpt2_16", tiny_gpt2_config(n_positions=16), seed=3)
    from distil.checks.owner import write_owner_file
    from model_builders import VALID_OWNER

    for model in root.iterdir():  # spec v3: each repo names a committer (the pre-checks need one)
        write_owner_file(model, VALID_OWNER)
    return root


def refusal(path, **kwargs) -> tuple[str, str]:
    with pytest.raises(CheckFailure) as e:
        check_loads(path, **kwargs)
    return e.value.code, e.value.detail


# -- honest models pass --------------------------------------------------------------------


@pytest.mark.parametrize("name, cls", [("qwen3_5", "Qwen3_5ForCausalLM"), ("qwen3", "Qwen3ForCausalLM"),
                                       ("tied", "Qwen3ForCausalLM"), ("teacher_text", "Qwen3_5MoeForCausalLM")])
def test_honest_students_pass_the_load_check(models, name, cls):
    assert check_loads(models / name) == cls


# -- the scored window (issue 22 §2) -----------------------------------------------------------


def test_the_checks_window_is_the_specs():
    """The pre-checks' scored length is the spec's prompt cap plus max_new_tokens, by default
    and in the validator, whose --eval flags set both."""
    import argparse

    from distil.checks.result import CheckLimits
    from distil.eval.spec import EvalSpec
    from distil.validator.args import add_validator_args, check_limits
    from template.config import parse_config

    spec = EvalSpec()
    assert CheckLimits().scored_length == spec.max_prompt_tokens + spec.max_new_tokens == spec.scored_length == 1024
    parser = argparse.ArgumentParser()
    add_validator_args(parser)
    config = parse_config(parser, ["--eval.max_new_tokens", "32", "--eval.max_prompt_tokens", "100"])
    assert check_limits(config).scored_length == 132


def test_the_load_check_reads_exactly_the_last_position_of_the_window(models):
    """GPT-2 with 16 learned positions: config.json says so (the architecture step refuses it,
    tests/test_checks_corpus.py), and the load step's own forward at the end of the window
    finds it whatever the config says: a 16-position window passes, 17 does not."""
    assert check_loads(models / "gpt2_16", scored_length=16) == "GPT2LMHeadModel"
    code, detail = refusal(models / "gpt2_16", scored_length=17)
    assert code == "ARCH_CONTEXT" and "positions 13..16" in detail and "IndexError" in detail
    code, detail = refusal(models / "gpt2_16")  # the spec's window: 1,024 positions
    assert code == "ARCH_CONTEXT" and "1,020..1,023" in detail


def test_tied_student_stored_once_loads_tied(models):
    assert "lm_head.weight" not in load_file(str(models / "tied" / "model.safetensors"))
    model = load_causal_lm(models / "tied", "cpu", None, VOCAB_SIZE)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_teacher_in_the_hub_layout_loads_as_teacher_and_is_refused_as_student(models):
    """The hub checkpoint is the multimodal class: `model.language_model.` prefix, per-expert
    MoE tensors, `model.visual.*` and `mtp.*`. The teacher loads (experts fused, extras
    ignored) with the same logits as the text-only save of the same weights; a student
    carrying the same files is refused."""
    names = set(load_file(str(models / "teacher_hub" / "model.safetensors")))
    assert any(n.startswith("model.visual.") for n in names) and any(n.startswith("mtp.") for n in names)
    assert any(".mlp.experts.0.gate_proj." in n and n.startswith("model.language_model.") for n in names)

    teacher = load_causal_lm(models / "teacher_hub", "cpu", None, VOCAB_SIZE, allow_unexpected=True)
    assert type(teacher).__name__ == "Qwen3_5MoeForCausalLM"
    stored = load_file(str(models / "teacher_hub" / "model.safetensors"))
    fused = teacher.model.layers[0].mlp.experts.gate_up_proj  # [experts, 2 × moe, hidden]
    moe = tiny.teacher_config().moe_intermediate_size
    torch.testing.assert_close(fused[1, :moe], stored["model.language_model.layers.0.mlp.experts.1.gate_proj.weight"])
    torch.testing.assert_close(fused[1, moe:], stored["model.language_model.layers.0.mlp.experts.1.up_proj.weight"])

    code, detail = refusal(models / "teacher_hub")
    assert code == "ARCH_UNUSED_TENSORS" and "model.visual." in detail


@pytest.mark.slow
def test_full_size_teacher_hub_layout_passes_on_meta():
    """The real Qwen3.5-35B-A3B configuration (transformers' defaults for the class are the
    real repo's values) in its hub layout, headers synthesised on the meta device: the guard
    accepts it as the teacher, with the model card's ~35B parameters (vision excluded), and
    refuses it under the students' cap before mapping a single key."""
    config, headers = real_teacher_headers()
    report = check_architecture(config, headers, max_params=None, allowed_extra=TEACHER_EXTRA_PREFIXES)
    assert report.model_class == "Qwen3_5MoeForCausalLM"
    assert 34e9 < report.params < 35e9  # the card: 35B total with the vision encoder
    assert all(n.startswith(TEACHER_EXTRA_PREFIXES) for n in report.ignored) and report.ignored
    with pytest.raises(CheckFailure) as e:
        check_architecture(config, headers, max_params=MAX_PARAMS)
    assert e.value.code == "ARCH_TOO_LARGE"


# -- configs that ask for more than the files hold -------------------------------------------


def _variant(src: Path, dst: Path, **changes) -> Path:
    clone(src, dst)
    edit_json(dst / "config.json", lambda c: c.update(changes))
    return dst


def test_multimodal_wrapper_model_type_is_refused_before_building_weights(models, tmp_path):
    path = _variant(models / "qwen3_5", tmp_path / "m", model_type="qwen3_5_moe")
    code, detail = refusal(path)
    assert code == "ARCH_TOO_LARGE", detail


def test_48_layers_over_two_layers_of_weights_is_refused(models, tmp_path):
    teacher = json.loads((models / "teacher_text" / "config.json").read_text())
    path = _variant(models / "teacher_text", tmp_path / "m", num_hidden_layers=48,
                    layer_types=teacher["layer_types"] * 24)
    code, detail = refusal(path, max_params=None)
    assert code == "ARCH_MISSING_TENSORS" and "model.layers.10." in detail  # names sort as strings


def test_a_billion_layers_is_refused_before_the_config_is_built(models, tmp_path):
    path = _variant(models / "qwen3", tmp_path / "m", num_hidden_layers=10**9)
    code, detail = refusal(path)
    assert code == "ARCH_TOO_LARGE" and "1,000,000,000" in detail


def test_more_experts_than_stored_is_a_shape_mismatch(models, tmp_path):
    path = _variant(models / "teacher_text", tmp_path / "m", num_experts=8)
    assert refusal(path)[0] == "ARCH_SHAPE_MISMATCH"


def test_wider_mlp_than_stored_is_a_shape_mismatch(models, tmp_path):
    path = _variant(models / "qwen3", tmp_path / "m", intermediate_size=4096)
    code, detail = refusal(path)
    assert code == "ARCH_SHAPE_MISMATCH" and "mlp" in detail


@pytest.mark.parametrize("extra", ["model.visual.blocks.0.attn.qkv.weight", "mtp.fc.weight", "model.lm_head2.weight"])
def test_tensors_the_student_does_not_load_are_refused(models, tmp_path, extra):
    """transformers skips `model.visual.*` and `mtp.*` silently for Qwen3.5; the guard does not."""
    path = rewrite_weights(models / "qwen3_5", tmp_path / "m",
                           lambda s: {**s, extra: torch.zeros(16, 64, dtype=torch.bfloat16)})
    code, detail = refusal(path)
    assert code == "ARCH_UNUSED_TENSORS" and extra in detail


def _renamed(state: dict, old: str, new: str) -> dict:
    return {k.replace(old, new): v for k, v in state.items()}


@pytest.mark.parametrize("old, new", [(".experts.1.", ".experts.01."),  # leading zero: the same model
                                      (".experts.3.", ".experts.7."),  # a gap at the end: the same model
                                      (".experts.1.", ".experts.-1.")])
def test_per_expert_tensors_must_be_numbered_0_to_n(models, tmp_path, old, new):
    """transformers fuses per-expert tensors in index order whatever the numbers are, so
    `experts.01` or experts 0, 1, 2, 7 load the very same model under other tensor names: a
    copy of the king with a new content hash. Expert numbers must be 0..n-1, written plainly."""
    path = rewrite_weights(models / "teacher_text", tmp_path / "m", lambda s: _renamed(s, old, new))
    code, detail = refusal(path)
    assert code == "ARCH_UNUSED_TENSORS" and f"found {new.split('.')[2]}" in detail


def test_missing_tensor_is_refused(models, tmp_path):
    path = rewrite_weights(models / "qwen3", tmp_path / "m",
                           lambda s: {k: v for k, v in s.items() if k != "model.layers.1.mlp.up_proj.weight"})
    code, detail = refusal(path)
    assert code == "ARCH_MISSING_TENSORS" and "model.layers.1.mlp.up_proj.weight" in detail


def test_config_dtype_wider_than_the_weights_never_upcasts(models, tmp_path):
    path = _variant(models / "qwen3", tmp_path / "m", dtype="float64", torch_dtype="float64")
    model = load_causal_lm(path, "cpu", None, VOCAB_SIZE)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert check_loads(path) == "Qwen3ForCausalLM"


# -- code paths are the validator's (issue 22 §3) ---------------------------------------------

CHOSEN_BY_THE_REPO = dict(experts_implementation="eager", _attn_implementation="eager", output_attentions=True,
                          output_hidden_states=True, return_dict=False, chunk_size_feed_forward=1)


def test_config_json_cannot_choose_the_code_paths(models, tmp_path, teacher_dir, capsys):
    """A config naming the experts' per-expert loop (183 s for one 64-token forward of a
    4,096-expert model on CPU), eager attention, every attention map and hidden state, tuple
    outputs: the load uses the validator's choice, the pre-checks pass the model as it
    computes (the same weights), and the round JSON records what ran."""
    from distil.checks.cli import main as distil_check
    from distil.eval.engine import run_round
    from distil.eval.report import round_to_json
    from distil.eval.spec import EvalSpec

    path = _variant(models / "teacher_text", tmp_path / "m", **CHOSEN_BY_THE_REPO)
    model = load_causal_lm(path, "cpu", None, VOCAB_SIZE)
    chosen = {"attn_implementation": "sdpa", "experts_implementation": "grouped_mm"}
    assert {"attn_implementation": model.config._attn_implementation,
            "experts_implementation": model.config._experts_implementation} == chosen
    out = model(input_ids=torch.tensor([[1, 2, 3]]))
    assert out.logits.shape == (1, 3, VOCAB_SIZE) and out.attentions is None and out.hidden_states is None
    assert distil_check([str(path), "--teacher", str(teacher_dir), "--json"]) == 0, capsys.readouterr().out

    spec = EvalSpec(n_prompts=1, max_new_tokens=2, chunk_size=4)
    result = run_round(str(models / "teacher_text"), [("m", str(path))], [[101, 102, 103]], spec)
    doc = round_to_json("00", spec.to_dict(), {}, "teacher", ["p0"], result)
    assert doc["models"][0]["status"] == "ok" and doc["models"][0]["implementations"] == chosen
    assert doc["teacher_implementations"] == chosen


def test_guard_codes_reach_the_eval_path_as_invalid_model(models, tmp_path):
    from distil.eval.engine import classify_failure
    from distil.eval.results import INVALID

    path = _variant(models / "qwen3_5", tmp_path / "m", model_type="qwen3_5_moe")
    with pytest.raises(InvalidModel) as e:
        load_causal_lm(path, "cpu", torch.float32, VOCAB_SIZE)
    assert e.value.code == "ARCH_TOO_LARGE" and classify_failure(e.value, "load") == INVALID


# -- memory: bounded by the repo's weights ----------------------------------------------------

FIXED_OVERHEAD = 256 * 1024 * 1024  # as stated in distil/checks/loading.py and docs/checks.md


def _peak_rss(*paths) -> tuple[list[str], int]:
    """(the verdicts, the largest peak) of the pre-check's load step on each of `paths`, each run
    the way the pipeline runs it: in a child of the sandbox's fork server, which reports its
    peak RSS over its RSS at start (VmHWM - VmRSS; the server has torch and transformers
    imported, so that is what the load itself added)."""
    from distil.checks.sandbox import run_step

    verdicts, peak = [], 0
    for path in paths:
        report = run_step("distil.checks.pipeline:child_step",
                          {"step": "load", "function": "distil.checks.pipeline:load_step",
                           "kwargs": {"path": str(path), "max_params": MAX_PARAMS, "vocab_size": VOCAB_SIZE,
                                      "scored_length": SCORED_LENGTH}},
                          step="load", deadline_s=300)
        value = report.value
        verdicts.append(value["failure"][0] if "failure" in value else value["detail"].split()[2])
        peak = max(peak, report.peak_bytes)
    return verdicts, peak


@pytest.mark.slow
def test_load_check_memory_is_bounded_by_the_weights(models, tmp_path):
    """Peak RSS of the load check ≤ 2 × weight bytes + 256 MiB over a process that only
    imports, for an honest student and for configs asking for ≥ 10× the weights (the
    multimodal wrapper: ~35B parameters; 32,768 experts per layer: ~400M parameters)."""
    weights = (models / "qwen3_5" / "model.safetensors").stat().st_size
    bound = 2 * weights + FIXED_OVERHEAD
    wrapper = _variant(models / "qwen3_5", tmp_path / "wrapper", model_type="qwen3_5_moe")
    experts = _variant(models / "teacher_text", tmp_path / "experts", num_experts=32_768)
    verdicts, peak = _peak_rss(wrapper, experts, models / "qwen3_5")
    assert verdicts == ["ARCH_TOO_LARGE", "ARCH_SHAPE_MISMATCH", "Qwen3_5ForCausalLM"]
    assert 0 < peak <= bound, f"{peak / 2**20:.0f} MiB over the child's start, bound {bound / 2**20:.0f}"


# -- one load function, the same on every device ----------------------------------------------

# Code that measures a device (peak memory, synchronisation) rather than computing with it.
DEVICE_BRANCH_ALLOWED = {
    "distil/bench/__init__.py": "reads CUDA memory statistics / synchronises when timing on a GPU",
    "distil/eval/spec.py": "validates the --device flag and picks the documented default dtype",
    "distil/train/run.py": "tells accelerate's Accelerator(cpu=...) to stay on the CPU when --device asks for it",
}
_DEVICE_NAMES = re.compile(r"^(cpu|cuda|mps|xpu|meta)(:\d+)?$")


def _device_comparisons(source: str):
    """Comparisons (==, !=, in, startswith) of anything with a device name literal."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            literals = [o.value for o in operands if isinstance(o, ast.Constant) and isinstance(o.value, str)]
            for o in operands:
                if isinstance(o, (ast.Tuple, ast.List, ast.Set)):
                    literals += [e.value for e in o.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if any(_DEVICE_NAMES.match(v) for v in literals):
                yield node.lineno
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "startswith"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and _DEVICE_NAMES.match(node.args[0].value)):
            yield node.lineno


def test_scanner_finds_device_branches():
    assert list(_device_comparisons('if device != "cpu":\n    pass\n')) == [1]
    assert list(_device_comparisons('x = d.type == "cuda"\n')) == [1]
    assert list(_device_comparisons('ok = dev in ("cuda", "mps")\n')) == [1]
    assert list(_device_comparisons('ok = dev.startswith("cuda")\n')) == [1]
    assert list(_device_comparisons('ok = name == "cpu_count"\n')) == []


def test_no_device_specific_branch_in_distil_or_neurons():
    found = []
    for top in ("distil", "neurons"):
        for file in sorted((ROOT / top).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            if rel in DEVICE_BRANCH_ALLOWED:
                continue
            found += [f"{rel}:{line}" for line in _device_comparisons(file.read_text())]
    assert not found, f"device-specific branches (the CPU tests must run the GPU's code): {found}"


def test_pre_check_teacher_and_students_all_load_through_load_causal_lm(models, monkeypatch, tmp_path):
    """Every `from_pretrained` of the pre-check's load step, the teacher and the students of a
    round is made by `load_causal_lm`, with `device_map` set (the same call on every device).
    The teacher loads in this process; each student in its own worker, which records its
    calls the same way (tests/faulty_workers.py, "-spied")."""
    import shutil

    from transformers import AutoModelForCausalLM

    from distil.eval.engine import run_round
    from distil.eval.spec import EvalSpec
    from faulty_workers import TARGET

    import inspect

    calls = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, path, *args, **kwargs):
        callers = [[Path(f.filename).name, f.function] for f in inspect.stack()[1:4]]
        calls.append([Path(path).name, kwargs.get("device_map"), callers])
        return original(cls, path, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    check_loads(models / "qwen3")
    student = tmp_path / "qwen3_5-spied"
    shutil.copytree(models / "qwen3_5", student)
    spec = EvalSpec(n_prompts=1, max_new_tokens=2, chunk_size=4)
    result = run_round(str(models / "teacher_hub"), [("a", str(student))], [[101, 102, 103]], spec,
                       score_target=TARGET)
    assert set(result.results) == {"a"} and result.results["a"].ok
    calls += json.loads((student / "calls.json").read_text())
    assert [name for name, _, _ in calls] == ["qwen3", "teacher_hub", "qwen3_5-spied"]
    for name, device_map, frames in calls:
        assert device_map == "cpu", name
        assert ["loading.py", "load_causal_lm"] in frames, (name, frames)


def test_header_level_pre_check_refuses_unused_tensors_before_download(models, tmp_path, teacher_reference):
    from distil.checks import check_commitment
    from distil.commitment import Commitment
    from distil.hub import LocalModelStore

    path = rewrite_weights(models / "qwen3_5", tmp_path / "m",
                           lambda s: {**s, "mtp.fc.weight": torch.zeros(16, 64, dtype=torch.bfloat16)})
    store = LocalModelStore()
    result = check_commitment(store, Commitment("mallory/m", store.add("mallory/m", path)), teacher=teacher_reference)
    steps = {s.name: s for s in result.steps}
    assert result.code == "ARCH_UNUSED_TENSORS" and "mtp.fc.weight" in result.detail
    assert steps["architecture"].status == "fail" and steps["download"].status == "skip"
