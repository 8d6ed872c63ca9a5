"""`check_commitment`: every pre-check of one commitment, cheapest first, fail-closed.

Order (each a step of the report; the first failure ends the run, later steps are
skipped):

1. revision — metadata at the pinned revision; public (UNAVAILABLE otherwise)
2. files — symlinks, code, allow-list, required files, sizes, shard layout
3. exact-file duplicates — the weight files' hash set against earlier commitments
4. config — every JSON file of the repo (config, generation config, tokenizer files, the
   index) fetched alone and parsed within bounds; config.json and tokenizer_config.json judged
5. weight index — shards vs model.safetensors.index.json
6. safetensors headers — two ranged reads per shard: structure, dtypes, quantisation,
   parameter count, embedding shape
7. architecture — config.json's model built on the meta device against the headers: within
   the cap, every tensor it needs present, every tensor present used, shapes equal
   ---- nothing above downloads a weight byte ----
8. download — the snapshot at the pinned revision
9. content — headers re-read locally, NaN/inf scan, canonical content hash, duplicates
10. tokenizer — the battery against the teacher's reference
11. load — the validator's own load function (`load_causal_lm`: the architecture guard again,
   then AutoModelForCausalLM, trust_remote_code=False, no missing/unexpected keys)

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
from dataclasses import dataclass, field
from typing import Callable

from loguru import logger

from distil.checks.bounded_json import clip
from distil.checks.config import check_config, check_tokenizer_config, parse_json_object
from distil.checks.files import (
    CONFIG,
    CONFIG_FILES,
    JSON_FILES,
    TOKENIZER_CONFIG,
    WEIGHTS_INDEX,
    FileLayout,
    check_files,
    check_index,
)
from distil.checks.hashing import ContentScan, files_hash, scan_weights
from distil.checks.loading import check_loads
from distil.checks.result import STEP_FAIL, STEP_PASS, STEP_SKIP, CheckFailure, CheckLimits, CheckResult, CheckStep
from distil.checks.safetensors_header import SafetensorsHeader, check_tensors, header_length, parse_header
from distil.checks.tokenizer import BATTERY, TokenizerReference, compare_to_reference, is_rust_panic, load_tokenizer
from distil.commitment import Commitment
from distil.hub.store import (
    HubError,
    HubTransientError,
    LocalStorageError,
    ModelStore,
    RepoMetadata,
    RepoUnavailable,
    is_disk_error,
    storage_error,
)

STEPS = (
    "revision",
    "files",
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


@dataclass
class _Run:
    store: ModelStore
    commitment: Commitment
    limits: CheckLimits
    teacher: TokenizerReference
    owner_of: OwnerLookup | None
    progress: bool
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
        """One JSON file of the repo, fetched alone (no weights) and parsed within bounds."""
        cap = self._json_cap(name)
        data = read_capped(self.store.fetch_file(self.commitment, name), cap, name)
        self.json_digests[name] = hashlib.sha256(data).hexdigest()
        return parse_json_object(data, name, cap)

    def config(self) -> str:
        # Every JSON file the repo holds is parsed here, bounded, before any weight byte is
        # fetched: transformers and tokenizers later read only files that parsed.
        parsed = {name: self._repo_json(name) for name in JSON_FILES if self.meta.file(name) is not None}
        self.config_json = parsed[CONFIG]
        summary = check_config(self.config_json, self.limits)
        check_tokenizer_config(parsed[TOKENIZER_CONFIG])
        self.index = parsed.get(WEIGHTS_INDEX)
        self.hidden_size = summary.hidden_size
        arch = f" ({', '.join(summary.architectures)})" if summary.architectures else ""
        return (
            f"model_type {summary.model_type}{arch}, vocab_size {summary.vocab_size:,}, no remote code or "
            f"quantization; {len(parsed)} JSON files parse within bounds"
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
        from distil.checks.architecture import check_architecture, check_config_sizes, config_from_dict

        raw = self.config_json
        tensors = {t.name: (t.dtype, t.shape) for h in self.headers for t in h.tensors}
        check_config_sizes(raw, len(tensors))
        report = check_architecture(config_from_dict(raw), tensors, max_params=self.limits.max_params)
        return (f"config.json describes a {report.model_class} of {report.params:,} parameters "
                f"that uses exactly the {report.tensors} tensors of the weight files")

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
                parse_json_object(data, name, cap)
        compare_to_reference(load_tokenizer(self.path), self.teacher)
        return (f"vocabulary, merges and added tokens equal the teacher's; {len(BATTERY)} strings encode alike "
                f"({self.teacher.source})")

    def load(self) -> str:
        name = check_loads(self.path, self.limits.max_params, self.limits.vocab_size)
        return f"loads as {name} (the validator's load function) with no missing, unexpected or mismatched weights"


def read_capped(path, cap: int, name: str) -> bytes:
    """A repo file's bytes from our disk, FILE_SIZE when it is over `cap` (read stops there)."""
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise CheckFailure("FILE_SIZE", f"{name} is larger than {cap:,} bytes")
    return data


def hub_failure(e: HubError) -> tuple[str, str]:
    """(code, detail) for a store error: UNAVAILABLE codes, LOCAL_IO_ERROR, HUB_TRANSIENT or HUB_ERROR."""
    if isinstance(e, LocalStorageError):
        return "LOCAL_IO_ERROR", str(e)
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


def _crashed(step: str, commitment: Commitment, e: Exception) -> tuple[str, str]:
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
    teacher: TokenizerReference | None,
    owner_of: OwnerLookup | None = None,
    progress: bool = False,
    steps: tuple[str, ...] = STEPS,
) -> CheckResult:
    """Run every pre-check on `commitment` through `store`; never raises for the model's faults.

    `teacher` is the tokenizer reference (`load_reference`). `owner_of(hash)` returns the
    commitment string of an *earlier* commitment owning that hash, or None (build it with
    `DuplicateRegistry.copy_lookup(claim)`); without it, duplicates are not judged here.
    `steps` = `HEADER_ONLY_STEPS` runs only the checks that read no weight byte (what
    `distil-eval` asks of every student before its teacher pass); `teacher` may then be None.
    """
    if steps != STEPS[: len(steps)]:
        raise ValueError(f"steps must be a prefix of {STEPS}")
    if "tokenizer" in steps and not isinstance(teacher, TokenizerReference):
        raise TypeError("teacher must be a TokenizerReference (see distil.checks.load_reference)")
    run = _Run(store, commitment, limits, teacher, owner_of, progress)
    to_run, steps = steps, []  # the names asked for; the report's CheckSteps
    failure: tuple[str, str] | None = None
    for name in to_run:
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
        except CheckFailure as f:
            failure = (f.code, f.detail)
        except HubError as e:
            failure = hub_failure(e)
        except MemoryError:
            failure = ("CHECKER_OUT_OF_MEMORY", f"out of memory during the {name} check; it will be retried")
        except OSError as e:
            if not is_disk_error(e):
                failure = _crashed(name, commitment, e)
            else:  # reading or writing our own disk (the snapshot, the cache): ours, not the repo's
                failure = ("LOCAL_IO_ERROR", str(storage_error(f"during the {name} check", e)))
        except Exception as e:  # fail closed: a checker bug never passes a model, nor disqualifies it
            failure = _crashed(name, commitment, e)
        except BaseException as e:  # a Rust library's panic (pyo3 PanicException) must not escape either
            if not is_rust_panic(e):
                raise
            failure = _crashed(name, commitment, e)
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
    return CheckResult(ok=True, reason=None, code=None, detail="every pre-check passed", **fields)
