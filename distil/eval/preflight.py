"""Start-up preflight of the validator and `distil-eval`: refuse early, in one line, what
would fail late.

Before the first epoch (validator) / before the teacher pass (`distil-eval`):

- the device must exist: `cuda` with no CUDA ("CUDA is not available"), `cuda:3` on a
  one-GPU machine are refused;
- every model source must be a local directory with a config.json or a well-formed
  `namespace/name[@revision]` repo id (a path that does not exist is refused);
- the memory plan (`memory_plan`: teacher phase vs student phase, from the teacher's
  safetensors headers and config, no weight downloaded) is printed term by term and must
  fit the device's total memory (warning within 10%); host memory (no accelerator) is
  only warned about;
- the model cache's disk must have room for the teacher (unless already there) and two
  students at the cap, or for `--checks.max_cache_gb` when it is set;
- which kernels are fast and which fall back to slow PyTorch code is logged
  (`fastpaths`).

`preflight(...)` raises `PreflightError` (one line); probes of the device and the disk are
parameters, so tests hit each branch with fake figures. `check_eval(args)` and
`check_validator(validator)` are the one-call wiring of each entry point.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from loguru import logger

from distil.eval.memory_plan import GIB, PlanInputs, Verdict, cache_shape, judge_disk, judge_memory, plan_memory

STORED_BYTES_PER_PARAM = 2  # students are stored in bf16 / fp16 (pre-check: no other dtype)
# Tensors of the hub checkpoint that the causal LM does not load (vision tower, multi-token prediction).
DROPPED_TENSOR = re.compile(r"(^|\.)(visual|vision_tower|mtp)\.|^mtp\.")
_REVISION = re.compile(r"^[\w.\-/]{1,255}$")


class PreflightError(Exception):
    """A start-up check failed; the message is one line that says what and how to fix it."""


# -- device ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceFacts:
    name: str
    kind: str  # torch device type
    available: bool
    count: int
    index: int
    total_bytes: int | None
    enforce: bool  # device memory (refuse) or host memory (warn only)
    label: str


def device_problem(facts: DeviceFacts, flag: str) -> str | None:
    kind = facts.kind.upper()
    if not facts.available:
        import torch

        # torch.version.cuda (.hip, .xpu) is None in a build without that backend
        built = f"; this torch is built without {kind}" if getattr(torch.version, facts.kind, "") is None else ""
        return f"{flag} {facts.name}: {kind} is not available (torch {torch.__version__}{built})"
    if facts.index >= facts.count:
        return (f"{flag} {facts.name}: no such device, this machine has {facts.count} {kind} device(s) "
                f"({facts.kind}:0 to {facts.kind}:{facts.count - 1})" if facts.count else
                f"{flag} {facts.name}: no such device, this machine has no {kind} device")
    return None


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def probe_device(name: str) -> DeviceFacts:
    """Facts of a torch device name; accelerators by their backend module (torch.cuda, torch.xpu...)."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise PreflightError(f"device {name!r} is not a torch device ({e})") from None
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "get_device_properties"):  # no accelerator: host memory
        return DeviceFacts(name, device.type, True, 1, 0, host_memory_bytes(), False, f"{name} (host RAM)")
    available = bool(backend.is_available())
    count = int(backend.device_count()) if available else 0
    index = device.index if device.index is not None else 0
    total, label = None, name
    if available and index < count:
        props = backend.get_device_properties(index)
        total, label = int(props.total_memory), f"{device.type}:{index} ({props.name})"
    return DeviceFacts(name, device.type, available, count, index, total, True, label)


# -- model sources --------------------------------------------------------------------------


def looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~", ".\\")) or source in (".", "..")


def source_problem(source: str, flag: str) -> str | None:
    """Why `source` cannot be a model: not an existing model directory nor a valid repo id."""
    if os.path.isdir(source):
        return None if os.path.isfile(os.path.join(source, "config.json")) else f"{flag} {source}: directory has no config.json"
    if looks_like_path(source):
        return f"{flag} {source}: no such directory"
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo, at, revision = source.partition("@")
    if at and not _REVISION.match(revision):
        return f"{flag} {source}: malformed revision {revision!r} after '@'"
    try:
        validate_repo_id(repo)
    except HFValidationError as e:
        return f"{flag} {source}: neither a local directory nor a hub repo id ({str(e).splitlines()[0]})"
    return None


# -- the teacher: config and weight bytes without downloading weights ---------------------------


@dataclass(frozen=True)
class TeacherFacts:
    config: object
    param_count: int  # tensors the causal LM keeps
    stored_bytes: int  # all weight files, as stored
    to_download_bytes: int  # what is not on this machine yet


def _kept(name: str) -> bool:
    return not DROPPED_TENSOR.search(name)


def local_teacher(path: str) -> TeacherFacts:
    from transformers import AutoConfig

    from distil.checks.hashing import read_local_header, safetensors_files

    config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    params, stored = 0, 0
    for f in safetensors_files(path):
        header = read_local_header(f)
        params += sum(t.numel for t in header.tensors if _kept(t.name))
        stored += f.stat().st_size
    return TeacherFacts(config, params, stored, 0)


def hub_teacher(source: str, cache_dir: str | None) -> TeacherFacts:
    """Config (one small file) and safetensors headers (ranged reads) of a hub repo."""
    from huggingface_hub import get_safetensors_metadata, hf_hub_download, try_to_load_from_cache
    from transformers import AutoConfig

    repo, _, revision = source.partition("@")
    config_path = hf_hub_download(repo, "config.json", revision=revision or None, cache_dir=cache_dir)
    config = AutoConfig.from_pretrained(os.path.dirname(config_path), trust_remote_code=False, local_files_only=True)
    meta = get_safetensors_metadata(repo, revision=revision or None)
    params, stored, missing = 0, 0, 0
    for filename, file_meta in meta.files_metadata.items():
        params += sum(t.parameter_count for name, t in file_meta.tensors.items() if _kept(name))
        size = max((end for t in file_meta.tensors.values() for end in t.data_offsets[1:]), default=0)
        stored += size
        if not isinstance(try_to_load_from_cache(repo, filename, cache_dir=cache_dir, revision=revision or None), str):
            missing += size
    return TeacherFacts(config, params, stored, missing)


def teacher_facts(source: str, cache_dir: str | None) -> TeacherFacts:
    return local_teacher(source) if os.path.isdir(source) else hub_teacher(source, cache_dir)


# -- disk -----------------------------------------------------------------------------------


def default_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def free_disk_bytes(path: str) -> int:
    """Free bytes on the filesystem that holds `path` (its nearest existing ancestor)."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


# -- the checks -----------------------------------------------------------------------------


def preflight(*, device: str, device_flag: str, sources: Sequence[tuple[str, str]], spec, max_student_params: int,
              cache_dir: str | None, max_cache_gb: float | None, students_to_download: int,
              probe: Callable[[str], DeviceFacts] = probe_device,
              free_disk: Callable[[str], int] = free_disk_bytes,
              teacher: Callable[[str, str | None], TeacherFacts] = teacher_facts,
              devices: Sequence[str] | None = None, student_sources: Sequence[str] = ()) -> list[Verdict]:
    """Run every start-up check; raise PreflightError (one line) on the first refusal.

    `sources` = [(flag, source)], the teacher first. `devices` (the fan-out list, which
    overrides `device`): every one must exist, and the memory plan is judged on each (the
    teacher runs on the first, a student on any). The disk must hold what is still to
    download: `student_sources` (distil-eval's hub students) at their real size from their
    headers, the cap's size for one the hub cannot describe; else `students_to_download`
    students at the cap (a validator's next commitments are unknown). Returns the verdicts
    (plan, disk) that were logged.
    """
    all_facts = {}
    for name in devices or [device]:
        all_facts.setdefault(name, probe(name))
        problem = device_problem(all_facts[name], device_flag)
        if problem:
            raise PreflightError(problem)
    for flag, source in sources:
        problem = source_problem(source, flag)
        if problem:
            raise PreflightError(problem)
    verdicts = []
    teacher_source = sources[0][1]
    try:
        t = teacher(teacher_source, cache_dir)
    except Exception as e:  # the hub may be down at start-up: the plan is then partial, not a refusal
        logger.warning(f"preflight: cannot read the teacher's config and headers ({type(e).__name__}: {e}); "
                       "no memory plan")
        t = None
    if t is not None:
        for facts in all_facts.values():
            verdicts.append(_memory(t, spec, max_student_params, facts))
    cache = cache_dir or default_cache_dir()
    if max_cache_gb:
        need, reason = int(max_cache_gb * GIB), f"--checks.max_cache_gb {max_cache_gb:g}"
    else:
        teacher_bytes = t.to_download_bytes if t is not None else 0
        at_cap = max_student_params * STORED_BYTES_PER_PARAM
        if student_sources:
            student_bytes = sum(_download_bytes(s, cache_dir, at_cap, teacher) for s in student_sources)
            students = f"{len(student_sources)} student(s) to download {student_bytes / GIB:.1f} GiB"
        else:
            student_bytes = students_to_download * at_cap
            students = f"{students_to_download} student(s) at the {max_student_params / 1e9:g}B cap"
        need = teacher_bytes + student_bytes
        reason = f"teacher to download {teacher_bytes / GIB:.1f} GiB + {students}"
    if need > 0:
        verdict = judge_disk(free_disk(cache), need, cache, reason)
        if verdict.level == "refuse":
            raise PreflightError(f"not enough disk: {verdict.message}")
        logger.info(f"preflight: {verdict.message}")
        verdicts.append(verdict)
    if t is not None:
        _log_fast_paths(t.config)
    return verdicts


def _download_bytes(source: str, cache_dir: str | None, fallback: int,
                    facts: Callable[[str, str | None], TeacherFacts]) -> int:
    """Bytes of `source` not in the cache yet, from its headers; `fallback` when unknown."""
    try:
        return facts(source, cache_dir).to_download_bytes
    except Exception as e:  # the hub may be down: budget the cap's size rather than refuse or guess low
        logger.warning(f"preflight: cannot read {source}'s headers ({type(e).__name__}: {e}); "
                       f"counting {fallback / GIB:.1f} GiB for it")
        return fallback


def _memory(t: TeacherFacts, spec, max_student_params: int, facts: DeviceFacts) -> Verdict:
    from distil.checks.loading import vocab_size_of

    dtype_bytes = spec.torch_dtype.itemsize
    plan = plan_memory(PlanInputs(
        teacher_weight_bytes=t.param_count * dtype_bytes, teacher=cache_shape(t.config),
        vocab=int(vocab_size_of(t.config) or spec.vocab_size), dtype_bytes=dtype_bytes, n_prompts=spec.n_prompts,
        max_prompt_tokens=spec.max_prompt_tokens, max_new_tokens=spec.max_new_tokens,
        generation_batch_size=spec.generation_batch_size, chunk_size=spec.chunk_size,
        own_logits_chunk=spec.own_logits_chunk, max_student_params=max_student_params,
    ))
    logger.info(f"preflight: memory plan on {facts.label} ({spec.torch_dtype}): {plan.describe()}")
    verdict = judge_memory(plan, facts.total_bytes or 0, facts.label, facts.enforce)
    if verdict.level == "refuse":
        raise PreflightError(f"{verdict.message}; use a larger device, or lower --generation-batch-size / "
                             "--max-new-tokens (the spec's values are what validators agree on)")
    (logger.warning if verdict.level == "warn" else logger.info)(f"preflight: {verdict.message}")
    return verdict


def _log_fast_paths(config) -> None:
    from distil.eval.fastpaths import log_fast_paths, model_on_meta

    try:
        log_fast_paths(model_on_meta(config), "teacher")
    except Exception as e:  # a report, never a reason to stop
        logger.warning(f"preflight: cannot tell which kernels the teacher will use ({type(e).__name__}: {e})")


# -- wiring: one call per entry point -------------------------------------------------------


def check_eval(args) -> int | None:
    """`distil-eval`: None when every check passes, else 2 (usage) after one line on stderr."""
    import json
    import sys

    from distil.eval.args import UsageError, devices_of, spec_values
    from distil.eval.spec import EvalSpec

    try:  # a malformed --devices is a usage error, said in one line like the others
        values = {k: v for k, v in spec_values(args).items() if k != "dataset"}
    except UsageError as e:
        print(f"distil-eval: error: {e}", file=sys.stderr)
        return 2
    try:
        if args.round:
            with open(args.round, encoding="utf-8") as f:
                spec = EvalSpec.from_dict({**json.load(f).get("spec", {}), **values})
        else:
            spec = EvalSpec(**values)
    except (OSError, ValueError, TypeError, AttributeError):
        return None  # the usual argument checks report it
    sources = [("--teacher", args.teacher)] + [("--student", s) for s in args.student]
    hub_students = [s for s in args.student if not os.path.isdir(s)]
    try:
        devices = devices_of(args)
        preflight(device=spec.device, device_flag="--devices" if devices else "--device", devices=devices, sources=sources, spec=spec,
                  max_student_params=_max_params(), cache_dir=None, max_cache_gb=None,
                  students_to_download=0, student_sources=hub_students)
    except (PreflightError, UsageError) as e:
        print(f"distil-eval: error: {e}", file=sys.stderr)
        return 2
    return None


def check_validator(validator) -> int | None:
    """The validator: None when every check passes, else 1 after one line on stderr."""
    import sys

    from distil.hub import LocalModelStore

    config = validator.config
    teacher = validator.teacher.name
    downloads = 0 if isinstance(validator.store, LocalModelStore) else 2  # a local store serves directories in place
    if not os.path.isdir(teacher) and config.eval.teacher_revision:
        teacher = f"{teacher}@{config.eval.teacher_revision}"
    try:
        preflight(device=config.neuron.device, device_flag="--neuron.devices" if validator.devices else "--neuron.device",
                  devices=validator.devices, sources=[("--eval.teacher", teacher)],
                  spec=validator.spec, max_student_params=int(config.checks.max_params),
                  cache_dir=config.checks.cache_dir, max_cache_gb=config.checks.max_cache_gb, students_to_download=downloads)
    except PreflightError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return None


def _max_params() -> int:
    from distil import MAX_PARAMS

    return MAX_PARAMS
