"""`distil-train`'s checkpoints: safetensors and JSON only; a pickle is never written or loaded.

accelerate's `save_state` writes the optimizer (`optimizer.bin`), the RNG states
(`random_states_N.pkl`) and every object registered for checkpointing
(`custom_checkpoint_N.pkl`) with `torch.save`, and `load_state` unpickles them, the last
with `weights_only=False`: resuming from a checkpoint someone shared could run their code
on a machine that holds wallets and hub tokens. A checkpoint directory here holds:

    trainer_state.json       {"format": 1, "step": N, "processes": P, "sharded": false}
    state.safetensors        model parameters and buffers ("model.<name>") and the optimizer's
                             tensors ("optimizer.<index>.<key>": AdamW's step, exp_avg, exp_avg_sq)
    state.json               the optimizer's parameter groups and its other (scalar) state,
                             and the gradient scaler's state under fp16
    rng-<rank>.json          each process's RNG states: Python, NumPy, torch CPU and CUDA

Under FSDP every process keeps its own shard: `state-<rank>.safetensors` and
`state-<rank>.json`, one pair per process ("sharded": true). A checkpoint resumes with the
same number of processes it was written by. The learning-rate schedule is a function of
the step: it is rebuilt from `step`, not saved.

`check_files` refuses a directory holding anything else (a `.pkl`, `.bin`, `.pt`, ...: an
accelerate checkpoint, or a planted file) before a byte of it is read.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT = 1
STATE_FILE = "trainer_state.json"
_OURS = re.compile(r"^(trainer_state\.json|state(-\d{5})?\.(safetensors|json)|rng-\d{5}\.json)$")
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt", ".distcp", ".metadata")


class CheckpointError(Exception):
    """A checkpoint directory that cannot be resumed from: one line saying why and what to do."""


def is_sharded(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def _names(accelerator, rank: int) -> tuple[str, str]:
    suffix = f"-{rank:05d}" if is_sharded(accelerator) else ""
    return f"state{suffix}.safetensors", f"state{suffix}.json"


def check_files(directory: str | Path) -> None:
    """Refuse a checkpoint directory holding any file this module does not write (a pickle above all)."""
    directory = Path(directory)
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.is_symlink() and _OURS.match(path.name):
            continue
        what = ("a pickle (" + path.suffix + ")" if path.name.lower().endswith(_PICKLE_SUFFIXES) else
                "a directory" if path.is_dir() else "a file distil-train does not write")
        raise CheckpointError(
            f"{directory} holds {path.name!r}, {what}: a distil-train checkpoint holds only safetensors and JSON, "
            "and a pickle is never loaded. Delete that file or that checkpoint (or start again without --resume)")


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu").contiguous()


def save(accelerator, model, optimizer, directory: str | Path, step: int) -> None:
    """Write this process's part of the checkpoint at `step` into `directory` (every process calls it)."""
    directory = Path(directory)
    rank = accelerator.process_index
    directory.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process or is_sharded(accelerator):
        tensors = {f"model.{name}": _cpu(t) for name, t in model.named_parameters()}
        tensors.update({f"model.{name}": _cpu(t) for name, t in model.named_buffers()})
        state = optimizer.state_dict()
        scalars: dict[str, dict] = {}
        for index, values in state["state"].items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{index}.{key}"] = _cpu(value)
                else:
                    scalars.setdefault(str(index), {})[key] = value
        tensor_file, json_file = _names(accelerator, rank)
        save_file(tensors, str(directory / tensor_file), metadata={"format": str(FORMAT), "step": str(step)})
        scaler = getattr(accelerator, "scaler", None)
        (directory / json_file).write_text(json.dumps({
            "param_groups": state["param_groups"], "scalar_state": scalars,
            "scaler": scaler.state_dict() if scaler is not None else None,
        }))
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    rng = {"python": [py_version, list(py_state), py_gauss],
           "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
           "torch": torch.get_rng_state().tolist(),
           "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []}
    (directory / f"rng-{rank:05d}.json").write_text(json.dumps(rng))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (directory / STATE_FILE).write_text(json.dumps(
            {"format": FORMAT, "step": step, "processes": accelerator.num_processes, "sharded": is_sharded(accelerator)}))


def read_step(directory: str | Path, processes: int, sharded: bool) -> int:
    """The step of a checkpoint this run can resume from; CheckpointError otherwise. Reads only JSON."""
    directory = Path(directory)
    check_files(directory)
    try:
        meta = json.loads((directory / STATE_FILE).read_text())
        step, fmt = meta["step"], meta.get("format")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{directory / STATE_FILE} cannot be read ({type(e).__name__}: {e})") from None
    if fmt != FORMAT:
        raise CheckpointError(f"{directory} is not a distil-train checkpoint of format {FORMAT} (format {fmt!r}); "
                              "start again without --resume")
    if meta.get("processes") != processes or bool(meta.get("sharded")) != sharded:
        raise CheckpointError(
            f"{directory} was written by {meta.get('processes')} process(es){' with FSDP' if meta.get('sharded') else ''}; "
            f"this run has {processes}{' with FSDP' if sharded else ''}: resume with the launch configuration that wrote it")
    if not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{directory / STATE_FILE}: step {step!r} is not a step number")
    return step


def load(accelerator, model, optimizer, directory: str | Path) -> int:
    """Restore model, optimizer, scaler and RNG states from `directory`; returns its step."""
    directory = Path(directory)
    step = read_step(directory, accelerator.num_processes, is_sharded(accelerator))
    rank = accelerator.process_index
    tensor_file, json_file = _names(accelerator, rank)
    try:
        tensors = load_file(str(directory / tensor_file), device="cpu")
        extra = json.loads((directory / json_file).read_text())
        rng = json.loads((directory / f"rng-{rank:05d}.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory}: {type(e).__name__}: {e}") from None
    own = dict(model.named_parameters()) | dict(model.named_buffers())
    stored = {k.removeprefix("model."): t for k, t in tensors.items() if k.startswith("model.")}
    if set(stored) != set(own):
        missing, unexpected = sorted(set(own) - set(stored)), sorted(set(stored) - set(own))
        raise CheckpointError(f"{directory} does not hold this student's tensors (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}): resume with the --student it was trained from")
    with torch.no_grad():
        for name, tensor in own.items():
            if tensor.shape != stored[name].shape:
                raise CheckpointError(f"{directory}: {name} has shape {list(stored[name].shape)}, the student's is "
                                      f"{list(tensor.shape)}")
            tensor.copy_(stored[name])
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = tensor
    for index, values in extra["scalar_state"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": extra["param_groups"]})
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and extra.get("scaler") is not None:
        scaler.load_state_dict(extra["scaler"])
    py_version, py_state, py_gauss = rng["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = rng["numpy"]
    np.random.set_state((np_name, np.array(np_keys, dtype=np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in rng["cuda"]])
    return step
