"""The trained student as validators want it, and the validators' verdict on it.

`save_student` writes --output: bf16 safetensors holding exactly the tensors the student's
architecture loads (from the model's own state dict; a tied head stored once, as the
student it started from), `config.json` without `auto_map`
or `quantization_config`, the generation config, and the TEACHER's tokenizer files (the
pre-check compares tokenizers with the teacher's), nothing else: no code, no pickle. With
`--hotkey` the run then writes `distil.json` naming the committing hotkey (spec v3).

`run_prechecks` then runs `distil-check`'s pre-checks on the directory and `held_out_scores`
`distil-eval`'s scoring (`run_round`) of the starting and the trained student on held-out prompts,
with what scoring spec v3's dethrone rule makes of the difference (`rules.required_gain`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from loguru import logger

from distil.checks.files import TOKENIZER_FILES
from distil.train.args import MODEL_FILE_SUFFIXES

EXTRA_TEACHER_FILES = ("chat_template.jinja",)  # the teacher's chat template travels with its tokenizer


def save_student(accelerator, model, output: str | Path, teacher_dir: str | Path) -> None:
    """Write the trained student (all processes call this; the main one writes)."""
    state = accelerator.get_state_dict(model)  # gathers FSDP shards; keys are "student.<name>"
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return
    output = Path(output)
    student = accelerator.unwrap_model(model).student
    state = {k.removeprefix("student."): v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in state.items()}
    for key in ("auto_map", "quantization_config"):  # no remote code, no quantized weights in a submission
        student.config.__dict__.pop(key, None)
    for key in tied_copies(student, state):
        del state[key]
    student.save_pretrained(str(output), state_dict=state, safe_serialization=True)
    # save_pretrained records the dtype of the (fp32) training weights; the file holds bf16
    config_path = output / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "bfloat16"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for name in (*TOKENIZER_FILES, *EXTRA_TEACHER_FILES):
        if (Path(teacher_dir) / name).is_file():
            shutil.copyfile(Path(teacher_dir) / name, output / name)
    stray = [p.name for p in output.iterdir() if p.is_file() and not p.name.endswith(MODEL_FILE_SUFFIXES)]
    if stray:
        raise RuntimeError(f"unexpected files in {output}: {stray}")
    logger.info(f"saved the trained student to {output} ({sum(v.numel() for v in state.values()) / 1e6:.1f}M params, bf16)")
    accelerator.wait_for_everyone()


def tied_copies(model, state: dict) -> list[str]:
    """The keys of `state` that are the tied copy of another key (`lm_head.weight` of a model
    whose head is its input embedding): saved once, as from_pretrained saves and ties them.
    `save_pretrained(state_dict=...)` writes every key it is given, so a tied model near the
    cap would come out with its embedding twice and be refused (TOO_MANY_PARAMS)."""
    import torch

    tied = dict(getattr(model, "all_tied_weights_keys", None) or {})  # tied key -> the key it copies
    return sorted(k for k, source in tied.items()
                  if k in state and source in state and torch.equal(state[k], state[source]))


def run_prechecks(output: str | Path, teacher_dir: str | Path, max_params: int, vocab_size: int,
                  hotkey: str | None = None):
    """distil-check's pipeline on the local directory: (CheckResult, report text). With
    `hotkey` the output's distil.json must name it; without, the ownership step is skipped
    and says how to write the file before uploading."""
    from distil.checks.cli import format_report, resolve_target
    from distil.checks.pipeline import check_commitment
    from distil.checks.result import CheckLimits
    from distil.checks.tokenizer import load_reference

    def no_hub():
        raise RuntimeError("the pre-check of a local directory needs no hub")

    store, commitment, description = resolve_target(str(output), no_hub)
    teacher = load_reference(str(teacher_dir))
    limits = CheckLimits(max_params=max_params, vocab_size=vocab_size, require_public=False)
    exempt = None if hotkey else (f"no --hotkey given: write it before uploading, with "
                                  f"`python neurons/miner.py --write-owner {output}` (or train with --hotkey)")
    result = check_commitment(store, commitment, limits, teacher=teacher, hotkey=hotkey, owner_exempt=exempt)
    return result, format_report(result, description)


def held_out_scores(teacher_dir: str, start: str, trained: str, prompts: list[list[int]], spec):
    """distil-eval's scoring of the starting and the trained student on the held-out prompts."""
    from distil.eval.engine import run_round

    result = run_round(teacher_dir, [("start", start), ("trained", trained)], prompts, spec)
    kl = {k: (r.kl_mean if r.ok else None) for k, r in result.results.items()}
    lines = [f"held-out distil-eval ({len(prompts)} prompts, {sum(map(len, result.continuation_ids))} teacher tokens):"]
    for key, r in result.results.items():
        if r.ok:
            lines.append(f"  {key:8s} KL {r.kl_mean:.6f} ± {r.kl_se or 0:.6f}   top-1 {r.top1_agreement:.4f}")
        else:
            lines.append(f"  {key:8s} {r.kind.upper()} ({r.phase}): {r.detail}")
    if kl["start"] and kl["trained"] is not None:
        from distil.scoring.rules import required_gain

        lines.append(f"  predicted KL {kl['trained']:.6f} = {kl['trained'] / kl['start']:.3f} × the starting student's")
        # what the validators' rule makes of that difference: on few prompts, usually nothing
        need = required_gain(result.results["start"].per_prompt_kl, result.results["trained"].per_prompt_kl)
        lines.append(f"  {need.line('trained', 'start')}")
    return kl["start"], kl["trained"], "\n".join(lines)
