"""`distil-train`'s usage errors and the checks of its arguments (the CLI and the run share them).

A small module at the bottom of the room, so the CLI and the run both import it and
neither imports the other.
"""

from __future__ import annotations

import os
from pathlib import Path

from distil.eval.spec import CLIMBMIX, EvalSpec
from template.args import default_device

PROMPT_SPEC_FLAGS = ("max_prompt_chars", "max_prompt_tokens", "dataset_revision", "dataset_data_dir", "text_column",
                     "dataset_shards", "rows_per_shard", "prompt_cache_dir", "chunk_size", "generation_batch_size")


class UsageError(Exception):
    """A bad argument: one line on stderr, exit status 2."""


def validate(args) -> None:
    """Usage errors the parser cannot see, before anything loads (and the default device)."""
    args.device = args.device or default_device()
    for name in ("max_steps", "max_new_tokens", "batch_size", "gradient_accumulation_steps", "train_prompts",
                 "held_out_prompts", "save_total_limit"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("save_steps", "warmup_steps"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
    if args.lr <= 0:
        raise UsageError("--lr must be > 0")
    if args.hotkey is not None:
        from distil.checks.owner import validate_hotkey

        try:
            validate_hotkey(args.hotkey)
        except ValueError as e:
            raise UsageError(f"--hotkey: {e}") from None
    if args.resume and args.overwrite:
        raise UsageError("--resume continues a run, --overwrite starts one again: give one of them")
    spec = eval_spec(args, args.device)  # the spec's own checks (device, sizes)
    if args.prompts_file:
        from distil.eval.prompts import prompts_file_problem

        if problem := prompts_file_problem(args.prompts_file, args.held_out_prompts, "--prompts-file", spec.text_column):
            raise UsageError(problem)
    # One process judges --output: under `accelerate launch` the others may start after it
    # began writing there (RANK is set by the launcher for every process).
    if os.environ.get("RANK", "0") == "0" and (problem := output_problem(Path(args.output), args.resume, args.overwrite)):
        raise UsageError(problem)


# What a finished run leaves in OUTPUT (distil.train.output.save_student): model files only.
MODEL_FILE_SUFFIXES = (".safetensors", ".json", ".txt", ".jinja")
CHECKPOINTS = "checkpoints"


def output_problem(output: Path, resume: bool, overwrite: bool) -> str | None:
    """Why `--output` cannot be trained into with these flags (one line), or None.

    Nothing of the user's is replaced silently: a new or empty directory is trained into; one
    holding a run's checkpoints is continued with `--resume` (and refused without it); one
    holding a finished model (whose checkpoints moved to OUTPUT.run) is refused, or replaced
    with `--overwrite` when it holds nothing but model files; anything else is refused."""
    flag = f"--output {output}"
    if output.exists() and not output.is_dir():
        return f"{flag}: a file, not a directory"
    if not output.exists():
        return None
    try:
        entries = sorted(p.name for p in output.iterdir())
    except OSError as e:
        return f"{flag}: cannot read the directory ({e.strerror or type(e).__name__})"
    if not entries:
        return None
    run_dir = output / CHECKPOINTS
    if run_dir.is_dir() and any(run_dir.glob("step-*/trainer_state.json")):
        if resume:
            return None
        if overwrite:
            return (f"{flag} holds the checkpoints of an unfinished run ({run_dir}); --overwrite does not discard "
                    "them: --resume continues the run, or move them away")
        return f"{flag}: {run_dir} holds checkpoints; pass --resume to continue or choose another --output"
    if run_dir.is_dir() and not (resume or overwrite):  # a run cut short before its first checkpoint
        return (f"{flag} holds a run that wrote no checkpoint yet ({run_dir}); --resume starts it again from step 0, "
                "or choose another --output")
    others = [n for n in entries if n != CHECKPOINTS and (not (output / n).is_file() or not n.endswith(MODEL_FILE_SUFFIXES))]
    finished = "config.json" in entries or any(n.endswith(".safetensors") for n in entries)
    if others:
        return (f"{flag} is not empty and holds what distil-train did not write ({', '.join(others[:3])}"
                f"{', …' if len(others) > 3 else ''}); choose a new or empty --output")
    if not finished:
        return None if entries == [CHECKPOINTS] else f"{flag} is not empty ({', '.join(entries[:3])}); choose a new or empty --output"
    if resume:
        return (f"{flag} holds a finished model, with nothing to resume (a finished run's checkpoints are moved to "
                f"{output.name}.run*); --overwrite trains it again from --student, or choose another --output")
    if not overwrite:
        return f"{flag} holds a trained model; --overwrite replaces it, or choose another --output"
    return None


def eval_spec(args, device: str, n_prompts: int | None = None) -> EvalSpec:
    values = {name: getattr(args, name) for name in PROMPT_SPEC_FLAGS}
    try:
        return EvalSpec(n_prompts=n_prompts or args.held_out_prompts, max_new_tokens=args.max_new_tokens,
                        dataset=args.dataset or CLIMBMIX, vocab_size=args.vocab_size, device=device, **values)
    except ValueError as e:
        raise UsageError(str(e)) from None


def launched() -> bool:
    """Whether `accelerate launch` started this process (it exports its settings as ACCELERATE_* variables)."""
    return "ACCELERATE_MIXED_PRECISION" in os.environ or "ACCELERATE_USE_CPU" in os.environ
