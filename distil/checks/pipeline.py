"""`check_commitment`: every pre-check of one commitment, cheapest first, fail-closed.

Order (each a step of the report; the first failure ends the run, later steps are
skipped):

1. revision — metadata at the pinned revision; public (UNAVAILABLE otherwise)
2. files — symlinks, code, allow-list, required files, sizes, shard layout
3. owner — spec v3: distil.json names the committing hotkey (`distil.checks.owner`); before
   the duplicate checks, so a copied `repo@revision` string is INVALID, never an owner
4. exact-file duplicates — the weight files' hash set against earlier commitments
5. config — every JSON file of the repo (config, generation config, tokenizer files, the
   index) fetched alone and parsed within bounds; config.json and tokenizer_config.json
   judged; tokenizer.json's pipeline sections against the teacher's file
6. weight index — shards vs model.safetensors.index.json
7. safetensors headers — two ranged reads per shard: structure, dtypes, quantisation,
   parameter count, embedding shape
8. architecture — config.json's model built on the meta device against the headers: within
   the cap, every tensor it needs present, every tensor present used, shapes equal; a
   declared context shorter than the scored window refused (ARCH_CONTEXT)
   ---- nothing above downloads a weight byte ----
9. download — the snapshot at the pinned revision
10. content — headers re-read locally, NaN/inf scan, canonical content hash, duplicates
11. tokenizer — the battery against the teacher's reference
12. load — the validator's own load function (`load_causal_lm`: the architecture guard again,
   then AutoModelForCausalLM, trust_remote_code=False, no missing/unexpected keys), then a
   short forward at the end of the scored window (ARCH_CONTEXT)

Hub trouble is never a verdict: rate limits, 5xx and timeouts give TRANSIENT; a repo
that cannot be read gives UNAVAILABLE (see `publication_verdict`). Failures on our side
are TRANSIENT too: our disk or cache (LOCAL_IO_ERROR), out of memory
(CHECKER_OUT_OF_MEMORY). Every repo file is parsed within bounds and what does not parse
is the repo's (INVALID), so an exception no check classified is a checker bug this repo
triggers: CHECKER_ERROR, one warning line, traceback at DEBUG. `CheckResult.transient_scope`
says whose trouble a TRANSIENT is. Only a CheckFailure from a check gives INVALID or COPY.
"""

from __future__ import annotations

import hashlib
import importlib
import signal
from dataclasses import dataclass, field
from typing import Callable

from loguru import logger

from distil.checks.bounded_json import clip
from distil.checks.clock import Deadlines, default_deadlines
from distil.checks.config import check_config, check_tokenizer_config, parse_json_object
from distil.checks.files import (
    CONFIG,
    CONFIG_FILES,
    JSON_FILES,
    OWNER_FILE,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    WEIGHTS_INDEX,
    FileLayout,
    check_files,
    check_index,
)
from distil.checks.hashing import ContentScan, files_hash, scan_weights
from distil.checks.owner import check_owner, named_hotkey
from distil.checks.result import STEP_FAIL, STEP_PASS, STEP_SKIP, CheckFailure, CheckLimits, CheckResult, CheckStep
from distil.checks.safetensors_header import SafetensorsHeader, check_tensors, header_length, parse_header
from distil.checks.sandbox import ChildDied, StepTimeout, run_step
from distil.checks.tokenizer import (BATTERY, TokenizerReference, check_pipeline, compare_to_reference, is_rust_panic,
                                     load_tokenizer)
from distil.commitment import Commitment
from distil.hub.store import (
    BudgetExhausted,
    HubError,
    HubTransientError,
    LocalStorageError,
    ModelStore,
    RepoMetadata,
    RepoUnavailable,
    is_disk_error,
    local_io_failure,
    storage_error,
)

STEPS = (
    "revision",
    "files",
    "owner",
    "exact-file duplicates",
    "config",
    "weight index",
    "safetensors headers",
    "architecture",
    "download",
    "content",
    "tokenizer",
    "load",
)
HEADER_ONLY_STEPS = STEPS[: STEPS.index("download")]

OwnerLookup = Callable[[str], "str | None"]


class _Skipped(Exception):
    """A step with nothing to do (e.g. no duplicate registry given); not a failure."""


class _StepFailed(Exception):
    """A step run in a child failed there: (code, detail) as the child classified it."""

    def __init__(self, code: str, detail: str):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail


@dataclass
class _Run:
    store: ModelStore
    commitment: Commitment
    limits: CheckLimits
    teacher: TokenizerReference
    owner_of: OwnerLookup | None
    progress: bool
    deadlines: Deadlines
    hotkey: str | None = None  # the committing hotkey distil.json must name (None: not known here)
    owner_exempt: str | None = None  # why this commitment needs no distil.json (it predates the rule)
    meta: RepoMetadata | None = None
    layout: FileLayout | None = None
    files_hash: str | None = None
    file_hashes: tuple[str, ...] = ()
    hidden_size: int | None = None
    config_json: dict | None = None  # config.json as parsed (bounded) in the config step
    index: dict | None = None
    weight_map: dict | None = None
    headers: list[SafetensorsHeader] = field(default_factory=list)
    params: int | None = None
    path: str | None = None
    scan: ContentScan | None = None
    copy_of: str | None = None
    seen_public: bool = False
    json_digests: dict[str, str] = field(default_factory=dict)  # sha256 of each JSON file parsed
    parsed_json: dict[str, dict] = field(default_factory=dict)  # each JSON file parsed, fetched once
    peak_bytes: dict[str, int] = field(default_factory=dict)  # each isolated step's peak memory

    # -- steps (each returns the report line, raises CheckFailure / _Skipped) ----------

    def revision(self) -> str:
        self.meta = self.store.repo_metadata(self.commitment)
        problem = self.meta.visibility_problem()
        if problem is not None and self.limits.require_public:
            raise CheckFailure("NOT_PUBLIC", problem)
        self.seen_public = problem is None
        where = "public" if problem is None else f"NOT PUBLIC ({problem}; validators wait for it)"
        return f"{where} at revision {self.commitment.revision[:12]}, {len(self.meta.files)} files"

    def files(self) -> str:
        self.layout = check_files(self.meta, self.limits)
        self.files_hash, self.file_hashes = files_hash(self.meta, self.layout.weight_files)
        size = sum(self.meta.file(n).size for n in self.layout.weight_files)
        return f"{len(self.meta.files)} files allowed; weights {', '.join(self.layout.weight_files)} ({size:,} bytes)"

    def owner(self) -> str:
        if self.owner_exempt is not None:
            raise _Skipped(f"{OWNER_FILE} not required: {self.owner_exempt}")
        if self.meta.file(OWNER_FILE) is None:
            raise CheckFailure(
                "OWNER_MISSING",
                f"no {OWNER_FILE} at this revision: since spec v3 every commitment's repo names the hotkey that "
                "commits it (write it with `python neurons/miner.py --write-owner DIR`)",
            )
        named = named_hotkey(self._repo_json(OWNER_FILE))
        if self.hotkey is None:
            return f"{OWNER_FILE} names {named}; validators count the commitment only from that hotkey"
        check_owner(named, self.hotkey)
        return f"{OWNER_FILE} names the committing hotkey {named}"

    def exact_file_duplicates(self) -> str:
        if self.owner_of is None:
            raise _Skipped("no duplicate registry given")
        if self.files_hash is None:
            raise _Skipped("the store gives no hash for some weight file")
        owner = self.owner_of(self.files_hash)
        if owner is not None:
            self.copy_of = owner
            raise CheckFailure(
                "DUPLICATE_FILES", f"the weight files are byte-identical to those of the earlier commitment {owner}"
            )
        return f"files hash {self.files_hash[:23]}... owned by no earlier commitment"

    def _json_cap(self, name: str) -> int:
        return self.limits.max_config_bytes if name in CONFIG_FILES else self.limits.max_small_file_bytes

    def _repo_json(self, name: str) -> dict:
        """One JSON file of the repo, fetched alone (no weights) and parsed within bounds, once."""
        if name not in self.parsed_json:
            cap = self._json_cap(name)
            data = read_capped(self.store.fetch_file(self.commitment, name), cap, name)
            self.json_digests[name] = hashlib.sha256(data).hexdigest()
            self.parsed_json[name] = parse_json_object(data, name, cap)
        return self.parsed_json[name]

    def config(self) -> str:
        # Every JSON file the repo holds is parsed here, bounded, before any weight byte is
        # fetched: transformers and tokenizers later read only files that parsed.
        parsed = {name: self._repo_json(name) for name in JSON_FILES if self.meta.file(name) is not None}
        self.config_json = parsed[CONFIG]
        summary = check_config(self.config_json, self.limits)
        check_tokenizer_config(parsed[TOKENIZER_CONFIG])
        # Compared as a file, before anything runs it: a hostile pre-tokenizer costs seconds
        # per string to run and nothing to compare.
        check_pipeline(parsed[TOKENIZER_JSON], self.teacher)
        self.index = parsed.get(WEIGHTS_INDEX)
        self.hidden_size = summary.hidden_size
        arch = f" ({', '.join(summary.architectures)})" if summary.architectures else ""
        return (
            f"model_type {summary.model_type}{arch}, vocab_size {summary.vocab_size:,}, no remote code or "
            f"quantization; {len(parsed)} JSON files parse within bounds; tokenizer.json's pipeline is the teacher's"
        )

    def weight_index(self) -> str:
        if not self.layout.indexed:
            return "single file model.safetensors"
        self.weight_map = check_index(self.index, self.layout)
        return f"{len(self.weight_map)} tensors mapped to {len(self.layout.weight_files)} shards"

    def safetensors_headers(self) -> str:
        total = 0
        for name in self.layout.weight_files:
            size = self.meta.file(name).size
            prefix = self.store.read_range(self.commitment, name, 0, 8)
            n = header_length(prefix, name, size, self.limits.max_header_bytes)
            total += n
            if total > self.limits.max_total_header_bytes:
                raise CheckFailure(
                    "HEADER_INVALID",
                    f"the safetensors headers add up to more than {self.limits.max_total_header_bytes:,} bytes",
                )
            raw = self.store.read_range(self.commitment, name, 8, 8 + n)
            self.headers.append(parse_header(raw, name, size, self.limits.max_metadata_bytes))
        summary = check_tensors(self.headers, self.limits, self.weight_map, self.hidden_size)
        self.params = summary.params
        return (
            f"{summary.tensors} tensors, {summary.params:,} parameters (cap {self.limits.max_params:,}), "
            f"dtypes {'/'.join(summary.dtypes)}"
        )

    def architecture(self) -> str:
        tensors = {t.name: (t.dtype, t.shape) for h in self.headers for t in h.tensors}
        return self._isolated("architecture", "distil.checks.architecture:architecture_step",
                              {"raw": self.config_json, "tensors": tensors, "max_params": self.limits.max_params,
                               "scored_length": self.limits.scored_length},
                              self.deadlines.architecture(len(tensors)))

    def _isolated(self, step: str, function: str, kwargs: dict, deadline_s: float) -> str:
        """Run a step that executes the repo's files in a child with a deadline (sandbox):
        its report line, or _StepFailed with the child's own verdict."""
        report = run_step("distil.checks.pipeline:child_step", {"step": step, "function": function, "kwargs": kwargs},
                          step=f"{step} check", deadline_s=deadline_s)
        if "failure" in report.value:
            raise _StepFailed(*report.value["failure"])
        self.peak_bytes[step] = report.peak_bytes
        return report.value["detail"]

    def download(self) -> str:
        expected = sum(f.size or 0 for f in self.meta.files)
        # Every file passed the allow-list, so the whole snapshot is fetched (no patterns: a
        # file name with glob characters must not slip past the filter).
        path = self.store.download(self.commitment, progress=self.progress, expected_bytes=expected)
        for name in self.layout.weight_files:
            local = path / name
            want = self.meta.file(name).size
            if not local.is_file() or local.stat().st_size != want:
                raise HubError(f"downloaded {name} is missing or not {want:,} bytes")
        self.path = str(path)
        return f"snapshot at {path}"

    def content(self) -> str:
        from pathlib import Path

        self.scan = scan_weights([Path(self.path) / n for n in self.layout.weight_files], self.limits)
        remote = {(h.filename, h.tensors) for h in self.headers}
        local = {(h.filename, h.tensors) for h in self.scan.headers}
        if remote != local:
            raise CheckFailure("HEADER_INVALID", "the downloaded safetensors headers differ from those checked on the hub")
        if self.scan.nonfinite:
            raise CheckFailure(
                "NONFINITE",
                f"{len(self.scan.nonfinite)} tensor(s) hold NaN or infinity: {', '.join(self.scan.nonfinite[:5])}",
            )
        if self.owner_of is not None:
            owner = self.owner_of(self.scan.content_hash)
            if owner is not None:
                self.copy_of = owner
                raise CheckFailure(
                    "DUPLICATE_CONTENT",
                    f"the tensors (names, dtypes, shapes, bytes) equal those of the earlier commitment {owner}",
                )
        return f"content hash {self.scan.content_hash}, {self.scan.nbytes:,} bytes, all finite"

    def tokenizer(self) -> str:
        # The snapshot's JSON files must be the bytes parsed in the config step (re-parsed,
        # bounded, if not), and readable by us: a read error here is our disk's, which
        # AutoTokenizer would otherwise report as the repo's TOKENIZER_INVALID.
        from pathlib import Path

        for name, digest in self.json_digests.items():
            cap = self._json_cap(name)
            data = read_capped(Path(self.path) / name, cap, name)
            if hashlib.sha256(data).hexdigest() != digest:
                value = parse_json_object(data, name, cap)
                if name == TOKENIZER_JSON:
                    check_pipeline(value, self.teacher)
        size = sum((f.size or 0) for f in self.meta.files if f.name.startswith("tokenizer") or f.name in
                   ("vocab.json", "merges.txt", "special_tokens_map.json"))
        return self._isolated("tokenizer", "distil.checks.pipeline:tokenizer_step",
                              {"path": self.path, "teacher": self.teacher}, self.deadlines.tokenizer(size))

    def load(self) -> str:
        weight_bytes = sum(self.meta.file(n).size or 0 for n in self.layout.weight_files)
        tensors = sum(len(h.tensors) for h in self.headers)
        deadline = self.deadlines.load(weight_bytes, self.params or 0, self.limits.vocab_size, self.hidden_size or 0,
                                       tensors)
        return self._isolated("load", "distil.checks.pipeline:load_step",
                              {"path": self.path, "max_params": self.limits.max_params,
                               "vocab_size": self.limits.vocab_size, "scored_length": self.limits.scored_length},
                              deadline)


# -- the steps that run in a child (distil.checks.sandbox) ----------------------------------


def child_step(step: str, function: str, kwargs: dict) -> dict:
    """In the child: run one step; {"detail": its report line} or {"failure": [code, detail]}.
    Every failure is classified here, where the exception is, so only JSON goes back."""
    module, _, name = function.partition(":")
    try:
        return {"detail": getattr(importlib.import_module(module), name)(**kwargs)}
    except BaseException as e:  # noqa: BLE001 - classified by the same rule as the parent's steps
        return {"failure": list(step_failure(step, "the snapshot", e))}


def tokenizer_step(path: str, teacher: TokenizerReference) -> str:
    compare_to_reference(load_tokenizer(path), teacher)
    return (f"vocabulary, merges and added tokens equal the teacher's; {len(BATTERY)} strings encode alike "
            f"({teacher.source})")


def load_step(path: str, max_params: int, vocab_size: int, scored_length: int) -> str:
    from distil.checks.loading import check_loads

    name = check_loads(path, max_params, vocab_size, scored_length)
    return (f"loads as {name} (the validator's load function) with no missing, unexpected or mismatched weights; "
            f"reads position {scored_length - 1:,} (the end of the scored window)")


def read_capped(path, cap: int, name: str) -> bytes:
    """A repo file's bytes from our disk, FILE_SIZE when it is over `cap` (read stops there)."""
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise CheckFailure("FILE_SIZE", f"{name} is larger than {cap:,} bytes")
    return data


def hub_failure(e: HubError) -> tuple[str, str]:
    """(code, detail) for a store error: UNAVAILABLE codes, LOCAL_IO_ERROR, PRECHECK_BUDGET,
    HUB_TRANSIENT (a deadline overrun included) or HUB_ERROR."""
    if isinstance(e, LocalStorageError):
        return "LOCAL_IO_ERROR", str(e)
    if isinstance(e, BudgetExhausted):
        return "PRECHECK_BUDGET", str(e)
    if isinstance(e, RepoUnavailable):
        if e.kind == "revision":
            return "REVISION_NOT_FOUND", str(e)
        if e.kind == "file":
            return "HUB_ERROR", str(e)
        return "NOT_PUBLIC", str(e)
    if isinstance(e, HubTransientError):
        return "HUB_TRANSIENT", str(e)
    return "HUB_ERROR", str(e)


MAX_DETAIL_CHARS = 1000  # a failure's detail (logged, stored, shown to miners)


def step_failure(name: str, commitment: str, e: BaseException) -> tuple[str, str]:
    """(code, detail) of a step that raised `e`: the check's own verdict (CheckFailure), the
    hub's (HubError), ours (our disk, memory, a deadline, a stopped validator), or a checker
    bug this repo triggers (CHECKER_ERROR). KeyboardInterrupt and SystemExit propagate."""
    if isinstance(e, _StepFailed):
        return e.code, e.detail
    if isinstance(e, CheckFailure):
        return e.code, e.detail
    if isinstance(e, HubError):
        return hub_failure(e)
    if isinstance(e, MemoryError):
        return "CHECKER_OUT_OF_MEMORY", f"out of memory during the {name} check; it will be retried"
    if isinstance(e, StepTimeout):
        return "CHECK_TIMEOUT", f"the {name} check ran past its deadline of {e.deadline_s:.0f}s and was stopped"
    if isinstance(e, ChildDied):
        if e.signal == signal.SIGBUS:  # a read of a memory-mapped file failed: our disk
            return "LOCAL_IO_ERROR", f"{e} (SIGBUS: an I/O error reading our disk)"
        if e.ours:
            return "CHECKER_STOPPED", f"the {name} check was stopped: the validator is shutting down"
        return _crashed(name, commitment, e)
    if isinstance(e, OSError) and is_disk_error(e):  # our own disk (the snapshot, the cache): ours
        return "LOCAL_IO_ERROR", str(storage_error(f"during the {name} check", e))
    if isinstance(e, Exception):
        local = local_io_failure(f"during the {name} check", e)  # a library wrapping our disk's error
        if local is not None:
            return "LOCAL_IO_ERROR", str(local)
    if isinstance(e, Exception) or is_rust_panic(e):  # fail closed: a bug never passes nor disqualifies
        return _crashed(name, commitment, e)
    raise e


def _crashed(step: str, commitment: str, e: BaseException) -> tuple[str, str]:
    """CHECKER_ERROR for an exception no check classified. Every parse of a repo file is
    bounded and turns its failures into the repo's verdict (bounded_json), so this is a bug
    of ours that this repo triggers. It recurs each epoch until the validator's strikes end
    it, so it is logged as the one result line (a warning), with the traceback at DEBUG."""
    logger.opt(exception=e).debug(f"pre-check {step} of {commitment} crashed; traceback:")
    return "CHECKER_ERROR", f"the {step} check crashed: {type(e).__name__}: {clip(str(e), 300)}"


def check_commitment(
    store: ModelStore,
    commitment: Commitment,
    limits: CheckLimits = CheckLimits(),
    *,
    teacher: TokenizerReference,
    owner_of: OwnerLookup | None = None,
    hotkey: str | None = None,
    owner_exempt: str | None = None,
    progress: bool = False,
    deadlines: Deadlines | None = None,
    steps: tuple[str, ...] = STEPS,
) -> CheckResult:
    """Run every pre-check on `commitment` through `store`; never raises for the model's faults.

    `teacher` is the tokenizer reference (`load_reference`). `owner_of(hash)` returns the
    commitment string of an *earlier* commitment owning that hash, or None (build it with
    `DuplicateRegistry.copy_lookup(claim)`); without it, duplicates are not judged here.
    `hotkey` is the committing hotkey the repo's distil.json must name (spec v3); without it
    the file must still name a hotkey, and the report says which. `owner_exempt` (a reason:
    the commitment predates the ownership rule) skips that step.
    The steps that run the repo's files (architecture, tokenizer, load) run in a child
    process within `deadlines` (default: this machine's, `distil.checks.clock`).
    `steps` = `HEADER_ONLY_STEPS` runs only the checks that read no weight byte (what
    `distil-eval` asks of every student before its teacher pass; the config step compares
    the tokenizer's pipeline sections with the teacher's there too).
    """
    if steps != STEPS[: len(steps)]:
        raise ValueError(f"steps must be a prefix of {STEPS}")
    if not isinstance(teacher, TokenizerReference):
        raise TypeError("teacher must be a TokenizerReference (see distil.checks.load_reference)")
    run = _Run(store, commitment, limits, teacher, owner_of, progress, deadlines or default_deadlines(),
               hotkey=hotkey, owner_exempt=owner_exempt)
    return _execute(run, steps)


OWNER_STEPS = ("revision", "owner")  # metadata, then distil.json alone (fetched within its cap)


def check_ownership(store: ModelStore, commitment: Commitment, hotkey: str,
                    limits: CheckLimits = CheckLimits()) -> CheckResult:
    """The ownership check alone, with the metadata it needs (`OWNER_STEPS`; nothing else is
    fetched): what `miner.py --skip-checks` still runs, since a commitment whose repo does
    not name its hotkey is INVALID whatever its weights."""
    run = _Run(store, commitment, limits, None, None, False, None, hotkey=hotkey)  # no step here runs repo files
    return _execute(run, OWNER_STEPS)


def _execute(run: _Run, names: tuple[str, ...]) -> CheckResult:
    """Run the steps `names` in order; the first failure skips the rest."""
    commitment = run.commitment
    steps: list[CheckStep] = []
    failure: tuple[str, str] | None = None
    for name in names:
        if failure is not None:
            steps.append(CheckStep(name, STEP_SKIP, "not run: an earlier check failed"))
            continue
        try:
            detail = getattr(run, name.replace(" ", "_").replace("-", "_"))()
            steps.append(CheckStep(name, STEP_PASS, detail))
            continue
        except _Skipped as s:
            steps.append(CheckStep(name, STEP_SKIP, str(s)))
            continue
        except BaseException as e:  # noqa: BLE001 - classified, or re-raised (KeyboardInterrupt)
            failure = step_failure(name, str(commitment), e)
        failure = (failure[0], clip(failure[1], MAX_DETAIL_CHARS))
        steps.append(CheckStep(name, STEP_FAIL, failure[1], code=failure[0]))

    fields = dict(
        commitment=str(commitment),
        params=run.params,
        content_hash=run.scan.content_hash if run.scan is not None else None,
        files_hash=run.files_hash,
        file_hashes=run.file_hashes,
        local_path=run.path,
        copy_of=run.copy_of,
        seen_public=run.seen_public,
        steps=tuple(steps),
    )
    if failure is not None:
        level = "WARNING" if failure[0] == "CHECKER_ERROR" else "INFO"
        logger.log(level, f"pre-check {commitment}: {failure[0]}: {failure[1]}")
        return CheckResult.failure(failure[0], failure[1], **fields)
    passed = "every pre-check passed" if names == STEPS else f"the {', '.join(names)} checks passed"
    return CheckResult(ok=True, reason=None, code=None, detail=passed, **fields)
