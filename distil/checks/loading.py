"""The one function that loads a model (the pre-check's load step, the teacher, the students,
the trainer), beside the guards it calls, and the pre-check's load step itself.

`load_causal_lm` runs the same code on every device: `AutoModelForCausalLM.from_pretrained`
with `device_map=<device>` (accelerate) whether that is "cpu" or "cuda:N", from a pinned local
directory only, `trust_remote_code=False`, safetensors only (never pickle), no hub access.

Before any weight is materialised it reads the safetensors headers (no tensor data) and runs
the architecture guard (`distil.checks.architecture`): the model `config.json` describes is
built on the meta device and must be within the parameter cap and load exactly the tensors
the files hold. So the memory of a load is bounded by the repo's weights, not its config:
peak RSS ≤ 2 × the weight bytes (the page cache of the memory-mapped files plus the loaded
copy) + a fixed overhead of 256 MiB (transformers' modelling code, the meta model, the
guard's bookkeeping) over a process that has imported torch and transformers.

The load dtype is the caller's; when the caller gives none it is the dtype the weights are
stored in. A `dtype` / `torch_dtype` in config.json is never used, so a config cannot make
the load upcast BF16 weights to float32 or float64.

Problems of the model itself raise `InvalidModel` carrying a check code (see
`distil.checks.codes`). The pre-check's load step (`check_loads`) turns them into a
`CheckFailure`; out of memory is the checker's problem, not the miner's: it surfaces as
MemoryError for the caller to report as transient, and our own disk or file table failing
(EIO, ENOSPC, EMFILE, ...) as `LocalStorageError` (LOCAL_IO_ERROR).

torch, transformers and safetensors are imported inside the functions that use them, so
`import distil.checks` (and `distil-check --help`) stays light.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from distil import MAX_PARAMS, SCORED_LENGTH, VOCAB_SIZE
from distil.checks.result import DETAIL_LIMIT, CheckFailure
from distil.hub.store import is_disk_error, local_io_failure, storage_error
from template.text import printable

if TYPE_CHECKING:
    import torch

SAFE_WEIGHTS = "model.safetensors"
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # as the pre-check's CheckLimits.max_config_bytes
MAX_INDEX_BYTES = 64 * 1024 * 1024
_FLOAT_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


class InvalidModel(Exception):
    """The model itself is at fault (config, weights, vocabulary, non-finite output): final.

    `code` is the check code naming the fault (distil.checks.codes), when there is one."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(printable(message, DETAIL_LIMIT))  # it quotes the model's names: escaped and bounded
        self.code = code


def text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def vocab_size_of(config) -> int | None:
    return getattr(text_config(config), "vocab_size", None) or getattr(config, "vocab_size", None)


def _read_small_json(path: Path, limit: int) -> dict:
    from distil.checks.config import parse_json_object

    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InvalidModel(f"{path.name} is larger than {limit:,} bytes", code="FILE_SIZE")
    return parse_json_object(data, path.name)


def weight_files(path: Path) -> list[Path]:
    """The safetensors files `from_pretrained` reads from `path`, in its order of preference:
    model.safetensors, else the shards model.safetensors.index.json lists."""
    if (path / SAFE_WEIGHTS).is_file():
        return [path / SAFE_WEIGHTS]
    if (path / SAFE_WEIGHTS_INDEX).is_file():
        index = _read_small_json(path / SAFE_WEIGHTS_INDEX, MAX_INDEX_BYTES)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise InvalidModel(f"{SAFE_WEIGHTS_INDEX} has no weight_map of file names", code="WEIGHT_INDEX")
        files = []
        for name in sorted(set(weight_map.values())):
            shard = path / name
            if Path(name).name != name or not shard.is_file():
                raise InvalidModel(f"{SAFE_WEIGHTS_INDEX} lists {name!r}, not a file of the model", code="WEIGHT_INDEX")
            files.append(shard)
        return files
    raise InvalidModel("no model.safetensors nor model.safetensors.index.json (other weight formats are never loaded)",
                       code="MISSING_FILE")


def read_tensor_headers(files: list[Path]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name → (safetensors dtype, shape) from the files' headers; no tensor data is read."""
    from safetensors import safe_open

    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():
                    if name in tensors:
                        raise InvalidModel(f"tensor {name!r} is in more than one weight file", code="DUPLICATE_TENSOR")
                    piece = f.get_slice(name)
                    tensors[name] = (piece.get_dtype(), tuple(piece.get_shape()))
        except InvalidModel:
            raise
        except Exception as e:
            # Our disk or file table failing (EIO, EMFILE, ENODEV: safetensors raises OSError with
            # errno None and "(os error N)"; the file was listed from our own directory, so a
            # missing one is ours too) is never the model's fault.
            if isinstance(e, FileNotFoundError) or is_disk_error(e):
                raise storage_error(f"reading the safetensors header of {file}", e) from e
            # the safetensors library refuses the bytes: the model's fault
            raise InvalidModel(f"{file.name} is not a readable safetensors file: {type(e).__name__}: {str(e)[:200]}",
                               code="HEADER_INVALID") from None
    return tensors


def load_dtype(requested: torch.dtype | None, stored: str) -> torch.dtype:
    """The dtype to load at: the caller's, else the stored one (never config.json's)."""
    if requested is not None:
        return requested
    if stored not in _FLOAT_DTYPES:
        raise InvalidModel(f"weights stored as {stored}: only floating-point weights load", code="DTYPE")
    import torch

    return getattr(torch, _FLOAT_DTYPES[stored])


def guard_architecture(path: str | os.PathLike, max_params: int | None, teacher: bool = False):
    """The config and the architecture report of the model at `path`, refused (InvalidModel with an
    ARCH_* code) unless config.json describes exactly the tensors of the weight files; reads the
    config and the safetensors headers only. The teacher may carry its vision / MTP weights."""
    from distil.checks.architecture import (TEACHER_EXTRA_PREFIXES, check_architecture, check_config_sizes,
                                            config_from_dict, settings_overridden)

    path = Path(path)
    try:
        raw = _read_small_json(path / "config.json", MAX_CONFIG_BYTES)
        if "auto_map" in raw or "auto_map" in (raw.get("text_config") or {}):
            raise InvalidModel("config.json has auto_map (remote code), which is never run", code="REMOTE_CODE")
        tensors = read_tensor_headers(weight_files(path))
        check_config_sizes(raw, len(tensors))
        config = config_from_dict(raw)  # with the validator's settings (VALIDATOR_SETTINGS)
        overridden = settings_overridden(raw)
        if overridden:
            logger.info(f"{path}: config.json settings ignored, the validator chooses: {overridden[:5]!r}")
        report = check_architecture(config, tensors, max_params=max_params,
                                    allowed_extra=TEACHER_EXTRA_PREFIXES if teacher else ())
    except CheckFailure as f:
        raise InvalidModel(f.detail, code=f.code) from None
    return config, report


def load_causal_lm(path: str | os.PathLike, device: str, dtype: torch.dtype | None, vocab_size: int,
                   allow_unexpected: bool = False, *, max_params: int | None = MAX_PARAMS):
    """A model from a local directory, checked, in eval mode on `device` (any torch device:
    the same call everywhere, placed by accelerate's `device_map`) in `dtype` (None: the
    dtype the weights are stored in).

    `allow_unexpected` marks the teacher: the hub checkpoint of Qwen3.5-35B-A3B is a
    multimodal model whose vision (`model.visual.*`) and multi-token-prediction (`mtp.*`)
    weights the causal-LM class does not use; they are logged, not fatal, and the students'
    parameter cap `max_params` does not apply to it. Students never get it: any tensor a
    student's model does not load is refused.

    Raises InvalidModel (with `.code`) for remote code, a vocabulary other than `vocab_size`,
    a config that does not describe the weight files (ARCH_* codes, checked before any weight
    is created), missing/unexpected/mismatched weights or weights that are not safetensors;
    FileNotFoundError when `path` is not a directory (our download, not the model).
    Out-of-memory propagates as is.
    """
    from transformers import AutoModelForCausalLM

    from distil.checks.architecture import VALIDATOR_SETTINGS, implementations_of

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {path}: not a downloaded model directory")
    config, report = guard_architecture(path, None if allow_unexpected else max_params, teacher=allow_unexpected)
    vocab = vocab_size_of(config)
    if vocab != vocab_size:
        raise InvalidModel(f"vocab_size {vocab} in config.json, the teacher's is {vocab_size}", code="VOCAB_SIZE")
    if report.ignored:
        logger.warning(f"{path}: ignoring {len(report.ignored)} weights the causal LM does not use "
                       f"(e.g. {report.ignored[0]})")
    dtype = load_dtype(dtype, report.stored_dtype)
    # The code paths are the validator's (config_from_dict reset the repo's choice; passed again
    # here, so no config handed to this function can choose them either).
    model, info = AutoModelForCausalLM.from_pretrained(
        path, config=config, dtype=dtype, device_map=device, trust_remote_code=False, local_files_only=True,
        use_safetensors=True, output_loading_info=True, attn_implementation=VALIDATOR_SETTINGS["_attn_implementation"],
        experts_implementation=VALIDATOR_SETTINGS["_experts_implementation"])
    # The guard already matched every key; this is the loader's own word on the same question
    # (transformers drops some unexpected keys from this report, the guard does not).
    problems = {k: sorted(map(str, info.get(k) or [])) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    if allow_unexpected:
        problems["unexpected_keys"] = []
    problems = {k: v for k, v in problems.items() if v}
    if problems:
        del model
        free_memory()
        detail = "; ".join(f"{k}: {', '.join(printable(n, 120) for n in v[:5])}{' …' if len(v) > 5 else ''}"
                           for k, v in problems.items())
        raise InvalidModel(f"weights do not match the architecture ({detail})", code="LOAD_KEYS")
    for name, module in (("output", model.get_output_embeddings()), ("input", model.get_input_embeddings())):
        rows = None if module is None else module.weight.shape[0]
        if rows != vocab_size:
            raise InvalidModel(f"{name} embedding has {rows} rows, the teacher's vocabulary is {vocab_size}",
                               code="EMBEDDING_SHAPE")
    model.eval()
    model.requires_grad_(False)
    chosen = ", ".join(f"{k} {v}" for k, v in implementations_of(model).items())
    logger.info(f"loaded {type(model).__name__} ({report.params / 1e6:.1f}M params, {dtype}, {chosen}) from {path} "
                f"on {device}")
    return model


def free_memory() -> None:
    """Collect garbage and return freed GPU memory (callers drop their references first)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


CHECK_DEVICE = "cpu"


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (MemoryError, torch.OutOfMemoryError))


# Tokens of the load check's forward at the end of the scored window: a few, so that its
# memory stays within the load check's bound (a full-window forward would not: 1,023 ×
# 248,320 float logits are ~1 GB, and it would take minutes on CPU for a model at the cap).
CONTEXT_PROBE_TOKENS = 4


def check_context_forward(model, scored_length: int) -> None:
    """ARCH_CONTEXT unless `model` reads the last positions of the scored window: a forward of
    a few tokens at positions scored_length - n .. scored_length - 1 (explicit position ids:
    a model's own count, from a cache, would start at 0), in the dtype it was loaded in,
    with logits for the last position only. It fails for a model whose position table is
    shorter than the window (GPT-2 with a small `n_positions`: IndexError), whatever its
    config claims. Out of memory propagates (the checker's problem)."""
    import torch

    n = min(CONTEXT_PROBE_TOKENS, scored_length)
    first = scored_length - n
    device = model.get_input_embeddings().weight.device
    ids = torch.arange(n, device=device).unsqueeze(0)
    positions = torch.arange(first, scored_length, device=device).unsqueeze(0)
    where = f"a {n}-token forward at positions {first:,}..{scored_length - 1:,} (the end of the scored window)"
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, position_ids=positions, use_cache=False, logits_to_keep=1).logits
    except Exception as e:
        if _is_oom(e):
            raise MemoryError(str(e)) from None
        raise CheckFailure("ARCH_CONTEXT", f"{where} fails: {type(e).__name__}: {str(e)[:300]}") from None
    if tuple(logits.shape[-2:]) != (1, model.get_output_embeddings().weight.shape[0]):
        raise CheckFailure("ARCH_CONTEXT", f"{where} gives logits of shape {list(logits.shape)}, not one position's")
    if not bool(torch.isfinite(logits).all()):
        raise CheckFailure("ARCH_CONTEXT", f"{where} gives non-finite logits")


def check_loads(path: str | Path, max_params: int = MAX_PARAMS, vocab_size: int = VOCAB_SIZE,
                scored_length: int = SCORED_LENGTH) -> str:
    """Load the model at `path` with `load_causal_lm` at its stored dtype, then check that it
    reads the end of the scored window (`check_context_forward`); returns the class name. A
    CheckFailure with the load's code (ARCH_*, LOAD_KEYS, ...), ARCH_CONTEXT, or LOAD_FAILED
    otherwise. Holds no state between calls (it can run in a child process)."""
    try:
        model = load_causal_lm(path, CHECK_DEVICE, None, vocab_size, max_params=max_params)
    except InvalidModel as e:
        raise CheckFailure(e.code or "LOAD_FAILED", str(e)) from None
    except FileNotFoundError as e:
        # our snapshot (its files were listed and checked before), or safetensors' report of
        # a full file table: the checker's problem
        raise storage_error(f"loading {path}", e) from e
    except Exception as e:
        if _is_oom(e):
            raise MemoryError(str(e)) from None
        local = local_io_failure(f"loading {path}", e)  # our disk, not the model (LOCAL_IO_ERROR)
        if local is not None:
            raise local from e
        raise CheckFailure(
            "LOAD_FAILED",
            f"AutoModelForCausalLM.from_pretrained fails: {type(e).__name__}: {str(e)[:300]}",
        ) from None
    try:
        name = type(model).__name__
        check_context_forward(model, scored_length)
    finally:
        del model
        free_memory()
    return name
