"""One `distil-train` run end to end: prompts → models → steps → output → verdict."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import torch
from loguru import logger

from distil.train import checkpoint
from distil.exits import EXIT_ERROR, EXIT_OK, EXIT_VERDICT
from distil.train.args import UsageError, eval_spec, launched


def _quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logger.disable("distil.eval.teacher")  # its per-batch lines would drown the progress bar


def _schedule(optimizer, args, start: int = 0):
    """The learning rate as a function of the step; resumed at `start` by rebuilding it there (a
    checkpoint never holds the scheduler: accelerate would pickle it)."""

    def factor(step: int) -> float:
        if step < args.warmup_steps:
            return (step + 1) / (args.warmup_steps + 1)
        if args.lr_schedule == "constant":
            return 1.0
        progress = (step - args.warmup_steps) / max(1, args.max_steps - args.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    # last_epoch=start-1: the constructor's own first step puts it at `start`, as `start` steps would
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=start - 1)


def _prompt_sets(args, spec, tokenizer_dir):
    from transformers import AutoTokenizer

    from distil.eval.prompts import DatasetPromptSource, JsonlPromptSource
    from distil.train.data import load_prompt_sets

    if args.prompts_file:
        source = JsonlPromptSource(args.prompts_file, spec.text_column)
    else:
        source = DatasetPromptSource(spec.dataset, spec.dataset_revision, spec.text_column, spec.dataset_shards,
                                     spec.rows_per_shard, spec.dataset_data_dir, spec.prompt_cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    return load_prompt_sets(source, tokenizer, spec, args.train_prompts, args.held_out_prompts, args.seed,
                            args.held_out_seed)


def _fetch(source: str, flag: str, files: list[str] | None = None) -> str:
    """`resolve_model` with its failures as one line naming the flag and the hub (UsageError)."""
    from distil.eval.cli import resolve_model
    from distil.eval.preflight import hub_endpoint
    from distil.hub.huggingface import translate_hub_error

    try:
        return resolve_model(source, files)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"{flag} {source}: {translate_hub_error(source.partition('@')[0], e, hub_endpoint())}") from None


def _prepare(args, device):
    """Everything that can fail before a weight is loaded, cheapest first: the model sources,
    the teacher's config and weight headers (a hub teacher's read without its weights), the
    student (downloaded: it is the smaller) through the load function's guard, then the
    prompts (a hub teacher's tokenizer files only), and last the teacher's weights.
    Returns (teacher_dir, student_dir, spec, prompt sets); UsageError (one line) otherwise."""
    from distil.checks.args import source_problem
    from distil.checks.files import TOKENIZER_FILES
    from distil.checks.loading import InvalidModel, guard_architecture, vocab_size_of
    from distil.eval.models import own_logits_reason
    from distil.eval.preflight import hub_endpoint, teacher_facts, teacher_problem

    for flag, source in (("--teacher", args.teacher), ("--student", args.student)):
        if problem := source_problem(source, flag):
            raise UsageError(problem)
    try:
        teacher = teacher_facts(args.teacher, None)
    except Exception as e:
        raise UsageError(teacher_problem(args.teacher, "--teacher", e)) from None
    if (vocab := vocab_size_of(teacher.config)) != args.vocab_size:
        raise UsageError(f"--teacher {args.teacher}: vocab_size {vocab} in its config.json, --vocab-size is {args.vocab_size}")
    student_dir = _fetch(args.student, "--student")
    try:
        config, _ = guard_architecture(student_dir, args.max_params)
    except InvalidModel as e:  # what loading it would refuse, said before anything loads
        raise UsageError(f"--student {args.student}: {e.code + ': ' if e.code else ''}{e}") from None
    except OSError as e:
        raise UsageError(f"--student {args.student}: cannot read {e.filename or 'it'}: "
                         f"{e.strerror or type(e).__name__}") from None
    if (vocab := vocab_size_of(config)) != args.vocab_size:
        raise UsageError(f"--student {args.student}: vocab_size {vocab} in its config.json, --vocab-size is {args.vocab_size}")
    if (reason := own_logits_reason(config)) is not None:
        raise UsageError(f"--student {args.student}: its logits are not a plain lm_head projection ({reason})")
    spec = eval_spec(args, device)
    tokenizer_dir = _fetch(args.teacher, "--teacher", files=list(TOKENIZER_FILES))
    try:
        prompts = _prompt_sets(args, spec, tokenizer_dir)
    except ValueError as e:  # too few prompts, a malformed line (the file was read once at start)
        where = f"--prompts-file {args.prompts_file}" if args.prompts_file else f"--dataset {spec.dataset}"
        raise UsageError(f"{where}: {' '.join(str(e).split())}") from None
    except Exception as e:  # the dataset (or its hub) out of reach
        where = f"--prompts-file {args.prompts_file}" if args.prompts_file else \
            f"--dataset {spec.dataset} (hub {hub_endpoint()})"
        raise UsageError(f"{where}: cannot read the prompts: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    return _fetch(args.teacher, "--teacher"), student_dir, spec, prompts


def _reporter(args, accelerator, state_dir: Path):
    from distil.metrics.wandb_logger import NullLogger, WandbLogger

    if args.wandb_off or not accelerator.is_main_process:
        return NullLogger()
    try:
        return WandbLogger(state_dir, project=args.wandb_project, entity=args.wandb_entity,
                           config={k: v for k, v in vars(args).items()}, name=f"distil-train-{Path(args.output).name}",
                           mode="offline" if args.wandb_offline else None)
    except Exception as e:
        logger.error(f"W&B unavailable ({type(e).__name__}: {e}); continuing without it (use --wandb.off to silence)")
        return NullLogger()


def _run_dir(output: Path) -> Path:
    """Where the run's state (checkpoints, W&B files) goes once the model is written: beside OUTPUT."""
    candidate, n = output.with_name(output.name + ".run"), 1
    while candidate.exists():
        n += 1
        candidate = output.with_name(f"{output.name}.run{n}")
    return candidate


def run(args) -> int:
    """Exit status: 0 trained and valid, 1 the trained model fails a pre-check, 2 anything else
    (one line on stderr: a bad argument, or a run that failed or was interrupted)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from distil.checks.codes import is_verdict
    from distil.checks.loading import free_memory, load_causal_lm
    from distil.train.loop import DistilledStudent, LoopSettings, checkpoint_dir, latest_checkpoint, train_steps
    from distil.train.output import held_out_scores, run_prechecks, save_student
    from distil.train.targets import TeacherTargets

    _quiet_libraries()
    under_launch = launched()
    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps, device_placement=False,
                              mixed_precision=None if under_launch else args.mixed_precision,
                              cpu=None if under_launch else torch.device(args.device).type == "cpu")
    # accelerate names the CPU of a multi-CPU run "cpu:0"; the spec (and load_causal_lm) say "cpu"
    device = re.sub(r"^cpu:\d+$", "cpu", str(accelerator.device)) if under_launch else args.device
    if under_launch and accelerator.is_main_process:
        logger.info(f"under accelerate launch: {accelerator.num_processes} processes ({accelerator.distributed_type}); "
                    f"--device {args.device} is ignored, this process uses {device}")
    set_seed(args.seed)
    output = Path(args.output)
    found = latest_checkpoint(output)  # only with --resume: `validate` refused checkpoints without it
    if found:
        try:  # before any model is loaded: a checkpoint holding a pickle (or anything else) is refused
            checkpoint.read_step(found[1], accelerator.num_processes, checkpoint.is_sharded(accelerator))
        except checkpoint.CheckpointError as e:
            print(f"distil-train: error: {e}", flush=True)
            return EXIT_ERROR
    try:
        with accelerator.main_process_first():  # one download / corpus read; the others find it cached
            teacher_dir, student_dir, spec, prompts = _prepare(args, device)
    except UsageError as e:
        return _fail(f"error: {e}")
    logger.info(f"{len(prompts.train)} training prompts, {len(prompts.held_out)} held out (seed {prompts.held_out_seed[:16]}…)")

    try:
        teacher = load_causal_lm(teacher_dir, args.teacher_device or device, spec.torch_dtype, args.vocab_size,
                                 allow_unexpected=True)
        student = load_causal_lm(student_dir, device, torch.float32, args.vocab_size, max_params=args.max_params)
    except Exception as e:  # out of memory, a device that refuses: said in one line (the traceback at DEBUG)
        logger.opt(exception=e).debug("loading failed: traceback")
        return _fail(f"error: loading the models failed: {type(e).__name__}: {_line(e)}")
    student.requires_grad_(True)
    if args.gradient_checkpointing:
        student.gradient_checkpointing_enable()
    model = DistilledStudent(student, spec.chunk_size)
    adamw = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    model, optimizer = accelerator.prepare(model, adamw)
    start = 0
    if args.resume and found:
        try:
            start = checkpoint.load(accelerator, model, optimizer, found[1])
        except checkpoint.CheckpointError as e:
            print(f"distil-train: error: {e}", flush=True)
            return 2
        logger.info(f"resumed from {found[1]} (step {start} of {args.max_steps})")
    elif args.resume:
        logger.warning(f"--resume: no checkpoint under {checkpoint_dir(output)}; starting at step 0")
    scheduler = _schedule(adamw, args, start)

    settings = LoopSettings(args.max_steps, args.batch_size, args.gradient_accumulation_steps, args.on_policy,
                            args.max_new_tokens, args.save_steps, args.save_total_limit, args.max_grad_norm, args.seed)
    targets = TeacherTargets(teacher, args.max_new_tokens, spec.generation_batch_size)
    reporter = _reporter(args, accelerator, checkpoint_dir(output))

    def report(step, values):
        if accelerator.is_main_process:
            logger.info(f"step {step}: " + ", ".join(f"{k} {v:.5g}" for k, v in values.items()))
        reporter.log_epoch(step, {f"train/{k}": v for k, v in values.items()})

    try:
        train_steps(accelerator, model, optimizer, scheduler, targets, prompts.train, settings, output, start, report)
    except (Exception, KeyboardInterrupt) as e:
        reporter.finish()
        kept = latest_checkpoint(output)
        resume = (f"checkpoint at step {kept[0]} kept under {checkpoint_dir(output)}: the same command with --resume "
                  "continues") if kept else "no checkpoint was written yet"
        if isinstance(e, KeyboardInterrupt):
            return _fail(f"interrupted; {resume}")
        logger.opt(exception=e).debug("training failed: traceback")
        return _fail(f"error: training failed: {type(e).__name__}: {_line(e)}; {resume}")
    if args.overwrite and accelerator.is_main_process:
        _remove_model_files(output)  # the finished model the user asked to replace; nothing else is there
    save_student(accelerator, model, output, teacher_dir)
    reporter.finish()
    model = optimizer = student = teacher = targets = None
    free_memory()
    if not accelerator.is_main_process:
        return EXIT_OK
    if checkpoint_dir(output).exists():
        kept = _run_dir(output)
        shutil.move(str(checkpoint_dir(output)), kept)
        logger.info(f"run state (checkpoints, W&B files) moved to {kept}: {output} holds the model only")
    if args.hotkey:  # spec v3: the repo names the hotkey that commits it
        from distil.checks.owner import write_owner_file

        logger.info(f"wrote {write_owner_file(output, args.hotkey)} naming the committing hotkey {args.hotkey}")
    result, text = run_prechecks(output, teacher_dir, args.max_params, args.vocab_size, args.hotkey)
    print(text, flush=True)
    if not args.skip_final_eval:
        final = eval_spec(args, device, n_prompts=len(prompts.held_out))
        _, _, table = held_out_scores(teacher_dir, student_dir, str(output), prompts.held_out, final)
        print(table, flush=True)
    if result.ok:
        return EXIT_OK
    return EXIT_VERDICT if is_verdict(result.code) else EXIT_ERROR


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def _fail(message: str) -> int:
    import sys

    print(f"distil-train: {message}", file=sys.stderr, flush=True)
    return EXIT_ERROR


def _remove_model_files(output: Path) -> None:
    """Delete the model files of the finished model in `output` (`--overwrite`, checked by
    `output_problem` to hold nothing else), so no shard of the old model outlives it."""
    from distil.train.args import MODEL_FILE_SUFFIXES

    for path in output.iterdir():
        if path.is_file() and path.name.endswith(MODEL_FILE_SUFFIXES):
            path.unlink()
    logger.info(f"--overwrite: the previous model in {output} removed")
