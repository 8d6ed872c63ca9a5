"""`check_commitment`: every pre-check of one commitment, cheapest first, fail-closed.

Order (each a step of the report; the first failure ends the run, later steps are
skipped):

1. revision — metadata at the pinned revision; public (UNAVAILABLE otherwise)
2. files — symlinks, code, allow-list, required files, sizes, shard layout
3. exact-file duplicates — the weight files' hash set against earlier commitments
4. config — config.json and tokenizer_config.json (small files), the index
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
that cannot be read gives UNAVAILABLE (see `publication_verdict`); a checker failure
(out of memory, a bug) gives TRANSIENT with code CHECKER_ERROR. Only a CheckFailure from
a check gives INVALID or COPY.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from loguru import logger

from distil.checks.config import check_config, check_tokenizer_config, parse_json_object
from distil.checks.files import CONFIG, TOKENIZER_CONFIG, WEIGHTS_INDEX, FileLayout, check_files, check_index
from distil.checks.hashing import ContentScan, files_hash, scan_weights
from distil.checks.loading import check_loads
from distil.checks.result import STEP_FAIL, STEP_PASS, STEP_SKIP, CheckFailure, CheckLimits, CheckResult, CheckStep
from distil.checks.safetensors_header import SafetensorsHeader, check_tensors, header_length, parse_header
from distil.checks.tokenizer import BATTERY, TokenizerReference, compare_to_reference, load_tokenizer
from distil.commitment import Commitment
from distil.hub.store import HubError, HubTransientError, ModelStore, RepoMetadata, RepoUnavailable

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
    index: dict | None = None
    weight_map: dict | None = None
    headers: list[SafetensorsHeader] = field(default_factory=list)
    params: int | None = None
    path: str | None = None
    scan: ContentScan | None = None
    copy_of: str | None = None
    seen_public: bool = False

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

    def _small_json(self, name: str) -> dict:
        path = self.store.fetch_file(self.commitment, name)
        with open(path, "rb") as f:
            data = f.read(self.limits.max_config_bytes + 1)
        if len(data) > self.limits.max_config_bytes:
            raise CheckFailure("FILE_SIZE", f"{name} is larger than {self.limits.max_config_bytes:,} bytes")
        return parse_json_object(data, name)

    def config(self) -> str:
        summary = check_config(self._small_json(CONFIG), self.limits)
        check_tokenizer_config(self._small_json(TOKENIZER_CONFIG))
        if self.layout.indexed:
            self.index = self._small_json(WEIGHTS_INDEX)
        self.hidden_size = summary.hidden_size
        arch = f" ({', '.join(summary.architectures)})" if summary.architectures else ""
        return f"model_type {summary.model_type}{arch}, vocab_size {summary.vocab_size:,}, no remote code or quantization"

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
            self.headers.append(parse_header(raw, name, size))
        summary = check_tensors(self.headers, self.limits, self.weight_map, self.hidden_size)
        self.params = summary.params
        return (
            f"{summary.tensors} tensors, {summary.params:,} parameters (cap {self.limits.max_params:,}), "
            f"dtypes {'/'.join(summary.dtypes)}"
        )

    def architecture(self) -> str:
        from distil.checks.architecture import check_architecture, check_config_sizes, config_from_dict

        raw = self._small_json(CONFIG)
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
        compare_to_reference(load_tokenizer(self.path), self.teacher)
        return (f"vocabulary, merges and added tokens equal the teacher's; {len(BATTERY)} strings encode alike "
                f"({self.teacher.source})")

    def load(self) -> str:
        name = check_loads(self.path, self.limits.max_params, self.limits.vocab_size)
        return f"loads as {name} (the validator's load function) with no missing, unexpected or mismatched weights"


def hub_failure(e: HubError) -> tuple[str, str]:
    """(code, detail) for a store error: UNAVAILABLE codes, HUB_TRANSIENT or HUB_ERROR."""
    if isinstance(e, RepoUnavailable):
        if e.kind == "revision":
            return "REVISION_NOT_FOUND", str(e)
        if e.kind == "file":
            return "HUB_ERROR", str(e)
        return "NOT_PUBLIC", str(e)
    if isinstance(e, HubTransientError):
        return "HUB_TRANSIENT", str(e)
    return "HUB_ERROR", str(e)


def check_commitment(
    store: ModelStore,
    commitment: Commitment,
    limits: CheckLimits = CheckLimits(),
    *,
    teacher: TokenizerReference,
    owner_of: OwnerLookup | None = None,
    progress: bool = False,
) -> CheckResult:
    """Run every pre-check on `commitment` through `store`; never raises for the model's faults.

    `teacher` is the tokenizer reference (`load_reference`). `owner_of(hash)` returns the
    commitment string of an *earlier* commitment owning that hash, or None (build it with
    `DuplicateRegistry.copy_lookup(claim)`); without it, duplicates are not judged here.
    """
    if not isinstance(teacher, TokenizerReference):
        raise TypeError("teacher must be a TokenizerReference (see distil.checks.load_reference)")
    run = _Run(store, commitment, limits, teacher, owner_of, progress)
    steps: list[CheckStep] = []
    failure: tuple[str, str] | None = None
    for name in STEPS:
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
            failure = ("CHECKER_ERROR", f"out of memory during the {name} check; it will be retried")
        except Exception as e:  # fail closed: a checker bug never passes a model, nor disqualifies it
            logger.exception(f"pre-check {name} of {commitment} crashed")
            failure = ("CHECKER_ERROR", f"the {name} check crashed: {type(e).__name__}: {str(e)[:300]}")
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
        logger.info(f"pre-check {commitment}: {failure[0]}: {failure[1]}")
        return CheckResult.failure(failure[0], failure[1], **fields)
    return CheckResult(ok=True, reason=None, code=None, detail="every pre-check passed", **fields)
