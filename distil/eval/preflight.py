"""Start-up preflight of the validator, `distil-eval` and `distil-train`: refuse early, in
one line, what would fail late.

Before the first epoch (validator) / before any teacher work (`distil-eval`, `distil-train`):

- the device must exist: `cuda` with no CUDA ("CUDA is not available"), `cuda:3` on a
  one-GPU machine are refused;
- every model source must be a local directory with a config.json or a well-formed
  `namespace/name[@revision]` repo id (a path that does not exist is refused);
- the teacher passes the header-level checks its load would make (`teacher_facts`: config.json
  within bounds, the safetensors headers, the architecture on the meta device, the
  vocabulary; its tokenizer files parse): a local teacher that does not is refused, naming
  the file; a hub teacher is read without downloading a weight (a validator only warns when
  the hub does not answer at start-up, `distil-eval` and `distil-train` refuse);
- `distil-eval`'s students (`check_students`) are resolved (a hub repo's current commit is
  pinned) and put through the pre-checks that read no weight byte (the validators' own:
  files, config and tokenizer JSON, safetensors headers, architecture); one that fails gets
  its verdict there, before the teacher runs, and is not downloaded;
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
`check_validator(validator)` are the one-call wiring of each entry point; exit status 2 for
every refusal (distil/exits.py): none of them is a verdict on a student.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from loguru import logger

from distil.checks.args import source_problem
from distil.eval.memory_plan import GIB, PlanInputs, Verdict, cache_shape, judge_disk, judge_memory, plan_memory
from distil.eval.results import INVALID, TRANSIENT, ModelFailure
from distil.exits import EXIT_ERROR

STORED_BYTES_PER_PARAM = 2  # students are stored in bf16 / fp16 (pre-check: no other dtype)
# Tensors of the hub checkpoint that the causal LM does not load (vision tower, multi-token prediction).
DROPPED_TENSOR = re.compile(r"(^|\.)(visual|vision_tower|mtp)\.|^mtp\.")


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
    """The teacher directory as its load will see it, through the load function's own guard
    (`guard_architecture`: config.json parsed within bounds, the safetensors headers, the
    architecture built on the meta device against them); raises InvalidModel naming the
    file. Its tokenizer files must parse too (the prompts are tokenised with them)."""
    from distil.checks.config import parse_json_object
    from distil.checks.files import REQUIRED_TOKENIZER
    from distil.checks.loading import InvalidModel, guard_architecture, weight_files
    from distil.checks.pipeline import read_capped
    from distil.checks.result import CheckFailure, CheckLimits

    config, report = guard_architecture(path, None, teacher=True)
    for name in REQUIRED_TOKENIZER:
        file = Path(path) / name
        if not file.is_file():
            raise InvalidModel(f"no {name}: the prompts are tokenised with the teacher's tokenizer", code="MISSING_FILE")
        try:
            parse_json_object(read_capped(file, CheckLimits().max_small_file_bytes, name), name)
        except CheckFailure as f:
            raise InvalidModel(f.detail, code=f.code) from None
    stored = sum(f.stat().st_size for f in weight_files(Path(path)))
    return TeacherFacts(config, report.params, stored, 0)


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


def teacher_problem(source: str, flag: str, error: BaseException) -> str:
    """One line for a teacher whose config or headers could not be read: the model's fault
    (the check code and the file), our disk's, or the hub's (naming the endpoint)."""
    from distil.checks.loading import InvalidModel

    if isinstance(error, InvalidModel):
        return f"{flag} {source}: {error.code + ': ' if error.code else ''}{error}"
    if isinstance(error, OSError) and error.filename:
        return f"{flag} {source}: cannot read {error.filename}: {error.strerror or type(error).__name__}"
    if os.path.isdir(source):
        return f"{flag} {source}: cannot read its config and weight headers ({type(error).__name__}: {error})"
    from distil.hub.huggingface import translate_hub_error

    return f"{flag} {source}: {translate_hub_error(source.partition('@')[0], error, endpoint=hub_endpoint())}"


def hub_endpoint() -> str:
    """The hub this process talks to (`HF_ENDPOINT`, read by huggingface_hub at import)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


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
              devices: Sequence[str] | None = None, student_sources: Sequence[str] = (),
              strict_teacher: bool = False, check_students: Callable[[], Sequence[str]] | None = None) -> list[Verdict]:
    """Run every start-up check; raise PreflightError (one line) on the first refusal.

    `sources` = [(flag, source)], the teacher first. A teacher whose config and headers
    cannot be read is refused when it is a local directory, or with `strict_teacher` (a
    program that cannot do anything without it); a validator whose hub teacher does not
    answer at start-up only warns (the plan is partial; rounds retry). `devices` (the fan-out list, which
    overrides `device`): every one must exist, and the memory plan is judged on each (the
    teacher runs on the first, a student on any). The disk must hold what is still to
    download: `student_sources` (distil-eval's hub students) at their real size from their
    headers, the cap's size for one the hub cannot describe; else `students_to_download`
    students at the cap (a validator's next commitments are unknown). `check_students()`,
    when given, runs once the teacher passed and before the plan: it judges the students
    and returns the hub sources still to download (`student_sources` is then ignored).
    Returns the verdicts (plan, disk) that were logged.
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
    teacher_flag, teacher_source = sources[0]
    try:
        t = teacher(teacher_source, cache_dir)
    except Exception as e:
        if strict_teacher or os.path.isdir(teacher_source):  # its own files, or a program that needs it now
            raise PreflightError(teacher_problem(teacher_source, teacher_flag, e)) from None
        # a validator's hub teacher while the hub is down at start-up: the plan is partial, not a refusal
        logger.warning(f"preflight: {teacher_problem(teacher_source, teacher_flag, e)}; no memory plan")
        t = None
    if t is not None:
        from distil.checks.loading import vocab_size_of

        vocab = vocab_size_of(t.config)
        if vocab != spec.vocab_size:
            raise PreflightError(f"{teacher_flag} {teacher_source}: vocab_size {vocab} in its config.json, the scoring "
                                 f"spec's is {spec.vocab_size}")
    if check_students is not None:  # before the plan: a student that cannot be scored is not budgeted
        student_sources = check_students()
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
        # install hints only where kernels could run: a device with memory of its own, not the host
        _log_fast_paths(t.config, cuda=any(f.enforce for f in all_facts.values()))
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


def _log_fast_paths(config, cuda: bool) -> None:
    from distil.eval.fastpaths import log_fast_paths, model_on_meta

    try:
        log_fast_paths(model_on_meta(config), "teacher", cuda=cuda)
    except Exception as e:  # a report, never a reason to stop
        logger.warning(f"preflight: cannot tell which kernels the teacher will use ({type(e).__name__}: {e})")


# -- wiring: one call per entry point -------------------------------------------------------


@dataclass(frozen=True)
class StudentCheck:
    """A `distil-eval` student after the header-level checks: `fetch` is what to download or
    load (its directory, or `repo@<commit>` pinned); `failure` its verdict when it failed."""

    source: str
    fetch: str | None
    failure: ModelFailure | None = None


def check_students(students: Sequence[str], vocab_size: int, max_params: int, endpoint: str | None = None,
                   store_factory: Callable[[], object] | None = None,
                   teacher: str | None = None) -> list[StudentCheck]:
    """Resolve each student and run on it the pre-checks that read no weight byte (the
    validators' own, `HEADER_ONLY_STEPS`: revision, files, config and tokenizer JSON, weight
    index, safetensors headers, architecture), in order. A hub repo without a revision is
    pinned at its current commit, so what is checked is what is downloaded. A student that
    fails gets a ModelFailure in phase "precheck" ("invalid" for a verdict on the model:
    `is_verdict`; "transient" for the hub's trouble or ours), with its code and detail.
    `teacher` (a directory or `repo[@revision]`): whose tokenizer.json the students' pipeline
    sections must equal (only its tokenizer files are read)."""
    from distil.checks.codes import is_verdict
    from distil.checks.pipeline import HEADER_ONLY_STEPS, check_commitment, hub_failure
    from distil.checks.result import CheckFailure, CheckLimits
    from distil.commitment import Commitment, CommitmentError
    from distil.hub import HubError, HuggingFaceStore, LocalModelStore

    limits = CheckLimits(max_params=max_params, vocab_size=vocab_size, require_public=False)
    hub: list = []

    def hub_store():
        if not hub:
            hub.append(store_factory() if store_factory else HuggingFaceStore(endpoint=endpoint))
        return hub[0]

    reference = None
    if teacher is not None:
        from distil.checks.tokenizer import load_reference

        try:
            reference = load_reference(teacher, store=None if os.path.isdir(teacher) else hub_store())
        except HubError as e:
            raise PreflightError(f"--teacher {teacher}: cannot read its tokenizer: {hub_failure(e)[1]}") from None
        except CheckFailure as e:
            raise PreflightError(f"--teacher {teacher}: its tokenizer: {e.code}: {e.detail}") from None
        except (OSError, ValueError) as e:
            raise PreflightError(f"--teacher {teacher}: cannot read its tokenizer: {e}") from None
    out = []
    for source in students:
        try:
            if os.path.isdir(source):
                store, name = LocalModelStore(), "local/model"
                commitment = Commitment(name, store.add(name, source))
                fetch = source
            else:
                repo, at, revision = source.partition("@")
                store = hub_store()
                commitment = Commitment.parse(source) if at else Commitment(repo, store.resolve_revision(repo))
                fetch = str(commitment)
            logger.info(f"preflight: {source}: the pre-checks that read no weight (pinned {commitment.revision[:12]})")
            result = check_commitment(store, commitment, limits, teacher=reference, steps=HEADER_ONLY_STEPS,
                                      owner_exempt="distil-eval scores a model, not a commitment")
            code, detail = (None, None) if result.ok else (result.code, result.detail)
        except HubError as e:  # resolving the repo's current commit
            (code, detail), fetch = hub_failure(e), None
        except CommitmentError as e:  # a revision that is not a commit sha: a bad argument
            raise PreflightError(f"--student {source}: {e}") from None
        except OSError as e:  # a file of a local student we cannot read: a bad argument too
            raise PreflightError(f"--student {source}: cannot read {e.filename or 'it'}: "
                                 f"{e.strerror or type(e).__name__}") from None
        if code is None:
            out.append(StudentCheck(source, fetch))
            continue
        kind = INVALID if is_verdict(code) else TRANSIENT
        logger.warning(f"{source}: {kind} before the teacher pass: {code}: {detail}")
        out.append(StudentCheck(source, None, ModelFailure(source, kind, "precheck", f"{code}: {detail}")))
    return out


def read_round(path: str) -> dict:
    """A `--round` file, validated (`round_from_json`); UsageError naming the file otherwise."""
    import json

    from distil.eval.args import UsageError
    from distil.eval.report import round_from_json

    try:
        with open(path, encoding="utf-8") as f:
            return round_from_json(json.load(f))
    except FileNotFoundError:
        raise UsageError(f"--round {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"--round {path}: a directory, not a round file") from None
    except OSError as e:
        raise UsageError(f"--round {path}: cannot read it ({e.strerror or type(e).__name__})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"--round {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except ValueError as e:  # not JSON (JSONDecodeError), or not a round document
        raise UsageError(f"--round {path}: {' '.join(str(e).split())}") from None


def check_eval(args) -> tuple[int | None, list[StudentCheck]]:
    """`distil-eval`, before any teacher work: (None, the students' checks) when it may go on,
    else (2, []) after one line on stderr (a bad argument, teacher, device or disk; none of
    them a verdict on a student). A student that fails its header-level checks is not a
    refusal: it gets its verdict in the checks and is neither downloaded nor scored."""
    import sys

    from distil import MAX_PARAMS
    from distil.eval.args import UsageError, devices_of, spec_error, spec_values
    from distil.eval.spec import EvalSpec

    def refuse(message) -> tuple[int, list]:
        print(f"distil-eval: error: {message}", file=sys.stderr)
        return EXIT_ERROR, []

    try:  # a malformed --devices is a usage error, said in one line like the others
        values = {k: v for k, v in spec_values(args).items() if k != "dataset"}
    except UsageError as e:
        return refuse(e)
    try:
        spec = EvalSpec.from_dict({**read_round(args.round)["spec"], **values}) if args.round else EvalSpec(**values)
    except UsageError as e:
        return refuse(e)
    except (ValueError, TypeError) as e:  # a bad number, or a spec the round file should not hold
        return refuse(f"--round {args.round}: its spec: {e}" if args.round else spec_error(e))
    if len(set(args.student)) != len(args.student):
        return refuse("each --student may be given once")
    if not args.round and not args.seed:
        return refuse("--seed is required (the seed block's hash, hex)")
    if args.seed:
        from distil.eval.prompts import seed_from_block_hash

        try:
            seed_from_block_hash(args.seed)
        except ValueError:
            return refuse(f"--seed {args.seed}: not a hex block hash")
    if args.prompts_file:
        from distil.eval.prompts import prompts_file_problem

        if problem := prompts_file_problem(args.prompts_file, spec.n_prompts, "--prompts-file", spec.text_column):
            return refuse(problem)
    sources = [("--teacher", args.teacher)] + [("--student", s) for s in args.student]
    checks: list[StudentCheck] = []

    def students() -> list[str]:
        checks.extend(check_students(args.student, spec.vocab_size, MAX_PARAMS, endpoint=hub_endpoint(),
                                     teacher=args.teacher))
        return [c.fetch for c in checks if c.failure is None and not os.path.isdir(c.fetch)]

    try:
        devices = devices_of(args)
        preflight(device=spec.device, device_flag="--devices" if devices else "--device", devices=devices, sources=sources, spec=spec,
                  max_student_params=MAX_PARAMS, cache_dir=None, max_cache_gb=None, students_to_download=0,
                  strict_teacher=True, check_students=students)
    except (PreflightError, UsageError) as e:
        return refuse(e)
    return None, checks


def check_validator(validator) -> int | None:
    """The validator: None when every check passes, else 2 (it cannot start) after one line on stderr."""
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
        return EXIT_ERROR
    return None



