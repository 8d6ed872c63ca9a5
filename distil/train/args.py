"""`distil-train`'s usage errors and the checks of its arguments (the CLI and the run share them).

A small module at the bottom of the room, so the CLI and the run both import it and
neither imports the other.
"""

from __future__ import annotations

import os

from distil.eval.spec import CLIMBMIX, EvalSpec

PROMPT_SPEC_FLAGS = ("max_prompt_chars", "max_prompt_tokens", "dataset_revision", "dataset_data_dir", "text_column",
                     "dataset_shards", "rows_per_shard", "prompt_cache_dir", "chunk_size", "generation_batch_size")


class UsageError(Exception):
    """A bad argument: one line on stderr, exit status 2."""


def validate(args) -> None:
    """Usage errors the parser cannot see, before anything loads."""
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
    if args.prompts_file and not os.path.isfile(args.prompts_file):
        raise UsageError(f"--prompts-file {args.prompts_file} does not exist")
    eval_spec(args, args.device)  # the spec's own checks (device, sizes)


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
