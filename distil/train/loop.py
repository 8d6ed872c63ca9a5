"""The training loop on `accelerate`: one code path for one CPU, one GPU, DDP and FSDP.

Each optimizer step reads `accumulation` micro-batches of `batch_size` prompts per process
(`data.micro_batch_indices`: a pure function of the step, so `--resume` continues the same
data order), builds the teacher targets, and minimises the chunked KL (`loss.py`) of the
student wrapped in `DistilledStudent`, whose forward runs the student body AND the loss:
under DDP/FSDP the lm_head is used inside the wrapped module's forward, where FSDP has
gathered it and DDP's hooks see it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from loguru import logger

from distil.train import checkpoint
from distil.train.data import collate, is_on_policy, micro_batch_indices
from distil.train.loss import FORWARD, REVERSE, chunked_kl_loss
from distil.train.targets import TeacherTargets, sample_continuations

CHECKPOINT = re.compile(r"^step-(\d{8})$")


class DistilledStudent(torch.nn.Module):
    """The student and its loss in one module: forward(batch) → (loss, per-position KL)."""

    def __init__(self, student, chunk_size: int):
        super().__init__()
        self.student = student
        self.chunk_size = chunk_size

    def forward(self, input_ids, attention_mask, positions, teacher_hidden, teacher_weight, teacher_bias, row_weights,
                direction: str = FORWARD):
        hidden = self.student.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                                            use_cache=False).last_hidden_state
        scored = hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions)
        head = self.student.get_output_embeddings()
        return chunked_kl_loss(scored, head.weight, getattr(head, "bias", None), teacher_hidden, teacher_weight,
                               teacher_bias, row_weights, self.chunk_size, direction)


@dataclass(frozen=True)
class LoopSettings:
    max_steps: int
    batch_size: int
    accumulation: int
    on_policy: float
    max_new_tokens: int
    save_steps: int
    save_total_limit: int
    max_grad_norm: float
    seed: int
    log_steps: int = 1


def checkpoint_dir(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def latest_checkpoint(output: str | Path) -> tuple[int, Path] | None:
    """(step, directory) of the newest complete checkpoint under `output`, or None."""
    root = checkpoint_dir(output)
    found = sorted((int(m.group(1)), p) for p in root.glob("step-*") if (m := CHECKPOINT.match(p.name)) and
                   (p / "trainer_state.json").is_file()) if root.is_dir() else []
    return found[-1] if found else None


def save_checkpoint(accelerator, model, optimizer, output: str | Path, step: int, keep: int) -> Path:
    """The model, optimizer and RNG states at `step` (`distil.train.checkpoint`: safetensors and JSON, no
    pickle), written under a temporary name and renamed once complete, so a crash mid-save never leaves a
    checkpoint to resume from."""
    root = checkpoint_dir(output)
    final, tmp = root / f"step-{step:08d}", root / f"step-{step:08d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    checkpoint.save(accelerator, model, optimizer, tmp, step)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        old = sorted(p for p in root.glob("step-*") if CHECKPOINT.match(p.name))[:-keep]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
        logger.info(f"checkpoint at step {step}: {final}")
    accelerator.wait_for_everyone()
    return final


def _sample_seed(seed: int, step: int, micro: int, rank: int) -> int:
    digest = hashlib.sha256(f"distil-train|sample|{seed}|{step}|{micro}|{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def train_steps(accelerator, model, optimizer, scheduler, targets: TeacherTargets, prompts: list[list[int]],
                settings: LoopSettings, output: str | Path, start_step: int, report) -> dict:
    """Run optimizer steps start_step … max_steps − 1; `report(step, values)` gets each step's figures."""
    from tqdm.auto import tqdm

    rank, world = accelerator.process_index, accelerator.num_processes
    student = accelerator.unwrap_model(model).student
    device = student.get_input_embeddings().weight.device  # where accelerate (or --device) put the student
    t_head = targets_head_on(targets, device)
    bar = tqdm(total=settings.max_steps, initial=start_step, desc="distil-train", unit="step",
               disable=not accelerator.is_main_process, dynamic_ncols=True)
    last = {}
    model.train()
    for step in range(start_step, settings.max_steps):
        started = time.perf_counter()
        on_policy = is_on_policy(step, settings.on_policy)
        direction = REVERSE if on_policy else FORWARD
        losses, tokens = [], 0
        for micro in range(settings.accumulation):
            indices = micro_batch_indices(step, micro, rank, world, settings.batch_size, settings.accumulation,
                                          len(prompts))
            if on_policy:
                chosen = [prompts[i] for i in indices]
                samples = sample_continuations(student, chosen, settings.max_new_tokens, targets.eos_ids,
                                               _sample_seed(settings.seed, step, micro, rank))
                cache = targets.over(chosen, samples)
            else:
                cache = targets.greedy(indices, prompts)
            batch = collate(cache.prompt_ids, cache.continuation_ids, cache.hidden, targets.eos_ids[0], device)
            with accelerator.accumulate(model):
                loss, _ = model(batch.input_ids, batch.attention_mask, batch.positions, batch.teacher_hidden,
                                t_head[0], t_head[1], batch.row_weights, direction)
                accelerator.backward(loss)
                if accelerator.sync_gradients and settings.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
                optimizer.step()  # accelerate's optimizer steps only when gradients are synced
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            tokens += batch.n_tokens
        mean_loss = accelerator.reduce(torch.stack(losses).mean().float().reshape(1), "mean")
        all_tokens = accelerator.reduce(torch.tensor([float(tokens)], device=device), "sum")
        seconds = time.perf_counter() - started
        last = {"loss": float(mean_loss), f"kl_{direction}": float(mean_loss), "on_policy": int(on_policy),
                "tokens": int(all_tokens), "tokens_per_s": float(all_tokens) / seconds,
                "lr": scheduler.get_last_lr()[0], "step_s": seconds}
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.4f}", dir=direction[:3], tok_s=f"{last['tokens_per_s']:.0f}")
        if (step + 1) % settings.log_steps == 0:
            report(step + 1, last)
        if settings.save_steps and (step + 1) % settings.save_steps == 0 and step + 1 < settings.max_steps:
            save_checkpoint(accelerator, model, optimizer, output, step + 1, settings.save_total_limit)
    bar.close()
    return last


def targets_head_on(targets: TeacherTargets, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The teacher's lm_head (weight, bias) on the student's device, moved once per run."""
    from distil.eval.models import head_of

    head = head_of(targets.teacher)
    return head.weight.to(device), None if head.bias is None else head.bias.to(device)
