"""`distil-train`: distil the teacher into a student with the validators' own score as the loss.

    distil-train --teacher PATH_OR_REPO --student PATH_OR_REPO --output DIR
                 (--prompts-file F | --dataset NAME) --max-steps N
                 [--max-new-tokens N] [--device cpu|cuda[:N]] [--resume] ...
    accelerate launch --config_file contrib/accelerate/CONFIG.yaml -m distil.train ...

The loss is forward KL(teacher ‖ student) over the full vocabulary at the positions
validators score (the teacher's greedy continuations), computed in chunks; a fraction of
steps (--on-policy) trains on the student's own samples in the reverse direction. At
the end DIR holds a model validators accept, and the pre-checks and distil-eval's
scoring on held-out prompts are run on it.

Nothing is loaded before the output directory, the teacher's and the student's config and
weight headers and the prompts pass their checks. DIR must be new or empty; one holding a
run's checkpoints is continued with --resume; one holding a finished model is replaced
only with --overwrite (its model files only: anything else there is refused).

Exit status (docs/cli.md): 0 trained and valid, 1 the trained model fails a pre-check
(validators would refuse it), 2 anything else: a bad argument (a flag, the output
directory, the teacher, the student, the prompts), or a run that failed or was
interrupted (its checkpoints are kept: --resume continues).
"""

from __future__ import annotations

import argparse
import sys

from distil import MAX_PARAMS, VOCAB_SIZE
from distil.eval.spec import CLIMBMIX, FINEWEB, EvalSpec
from distil.exits import EXIT_ERROR
from distil.train.args import PROMPT_SPEC_FLAGS, UsageError, validate
from template.args import ArgumentParser

def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="distil-train", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--teacher", required=True, help="teacher directory or hub repo[@revision]")
    parser.add_argument("--student", required=True, help="starting student: directory or hub repo[@revision]")
    parser.add_argument("--output", required=True, help="directory for the trained model (checkpoints under OUTPUT/checkpoints)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts-file", help='JSONL of {"text": ...} or {"input_ids": [...]} lines (as distil-eval)')
    src.add_argument("--dataset", help=f"corpus: {CLIMBMIX} or {FINEWEB}, or a local folder of parquet/JSONL")
    parser.add_argument("--max-steps", type=int, required=True, help="optimizer steps")
    parser.add_argument("--max-new-tokens", type=int, default=EvalSpec.max_new_tokens, help="teacher continuation length")
    parser.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda if available, else cpu, as the "
                        "validator); ignored under accelerate launch")
    parser.add_argument("--teacher-device", default=None,
                        help="where the teacher goes: a device, or auto (spread over GPUs, offloaded to CPU past them); "
                             "default: the student's device")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate")
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--warmup-steps", type=int, default=0)
    opt.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine")
    opt.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: off)")
    opt.add_argument("--batch-size", type=int, default=4, help="prompts per micro-batch per process")
    opt.add_argument("--gradient-accumulation-steps", type=int, default=8)
    opt.add_argument("--on-policy", type=_fraction, default=0.25,
                     help="fraction of steps on the student's own samples (reverse KL), against looping")
    opt.add_argument("--gradient-checkpointing", action="store_true", help="recompute the student's activations")
    opt.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                     help="autocast for the student (fp32 master weights); under accelerate launch its config decides")
    opt.add_argument("--seed", type=int, default=0, help="seeds the prompt samplers, the model RNG and on-policy sampling")
    data = parser.add_argument_group("prompts (as distil-eval: same sampler, tokenizer and truncation)")
    data.add_argument("--train-prompts", type=int, default=4096, help="training prompts sampled from the source")
    data.add_argument("--held-out-prompts", type=int, default=EvalSpec.n_prompts, help="prompts of the final distil-eval")
    data.add_argument("--held-out-seed", default=None,
                      help="hex seed of the held-out prompts (default: derived from --seed); never trained on")
    for name in PROMPT_SPEC_FLAGS:
        default = getattr(EvalSpec, name)
        data.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    ckpt = parser.add_argument_group("checkpoints and the result")
    ckpt.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps (0: only at the end)")
    ckpt.add_argument("--save-total-limit", type=int, default=2, help="checkpoints kept")
    ckpt.add_argument("--resume", action="store_true", help="continue from the latest checkpoint under OUTPUT")
    ckpt.add_argument("--overwrite", action="store_true",
                      help="replace the finished model in OUTPUT (its model files only); without it, it is refused")
    ckpt.add_argument("--max-params", type=int, default=MAX_PARAMS, help="the parameter cap the pre-check applies")
    ckpt.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    ckpt.add_argument("--hotkey", default=None,
                      help="ss58 address of the hotkey that will commit the model: OUTPUT/distil.json names it (spec v3: "
                           "validators count a commitment only from the hotkey its repo names), checked at the end")
    ckpt.add_argument("--skip-final-eval", action="store_true", help="do not run distil-eval on held-out prompts at the end")
    wb = parser.add_argument_group("Weights & Biases (as the validator's flags)")
    wb.add_argument("--wandb.off", dest="wandb_off", action="store_true", help="do not log to Weights & Biases")
    wb.add_argument("--wandb.offline", dest="wandb_offline", action="store_true", help="log in offline mode")
    wb.add_argument("--wandb.project", dest="wandb_project", default="distil-train", help="W&B project")
    wb.add_argument("--wandb.entity", dest="wandb_entity", default=None, help="W&B entity (team or user)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from template.log import setup_logging

    setup_logging(level=args.log_level)
    try:
        validate(args)
    except UsageError as e:
        print(f"distil-train: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    from distil.train.run import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
