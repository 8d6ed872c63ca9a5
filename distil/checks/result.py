"""Values the checks produce: limits in, one `CheckResult` out (frozen, JSON-ready)."""

from __future__ import annotations

from dataclasses import dataclass, field

from distil import MAX_PARAMS, SCORED_LENGTH, VOCAB_SIZE
from distil.checks.codes import reason_of, transient_scope
from template.text import printable

DETAIL_LIMIT = 1000  # a check's detail: stored in state, answered over the axon, printed

STEP_PASS = "pass"
STEP_FAIL = "fail"
STEP_SKIP = "skip"


class CheckFailure(Exception):
    """Raised by a check: `code` (see codes.py) and a sentence a miner understands."""

    def __init__(self, code: str, detail: str):
        reason_of(code)  # unknown codes fail loudly, at the raise site
        # the detail quotes the repo (names, keys, values): escaped and bounded once, here, for every check
        detail = printable(detail, DETAIL_LIMIT)
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class CheckLimits:
    """What a model must satisfy. Defaults are the production limits.

    `require_public` is off only for a miner checking a private repo before publishing it.
    `scored_length` is the scored window a model must read (the spec's prompt cap plus
    max_new_tokens; the validator passes its `EvalSpec.scored_length`).
    """

    max_params: int = MAX_PARAMS
    vocab_size: int = VOCAB_SIZE
    scored_length: int = SCORED_LENGTH
    require_public: bool = True
    max_small_file_bytes: int = 64 * 1024 * 1024  # config, tokenizer, README, ...: never weights
    max_config_bytes: int = 4 * 1024 * 1024  # config.json, tokenizer_config.json, the index
    max_header_bytes: int = 16 * 1024 * 1024  # one safetensors header
    max_total_header_bytes: int = 64 * 1024 * 1024  # all headers together
    max_weight_files: int = 256  # safetensors shards (a 5B model needs a handful)
    max_metadata_bytes: int = 64 * 1024  # all shards' __metadata__ together, serialised

    def __post_init__(self) -> None:
        for name in (
            "max_params",
            "vocab_size",
            "scored_length",
            "max_small_file_bytes",
            "max_config_bytes",
            "max_header_bytes",
            "max_total_header_bytes",
            "max_weight_files",
            "max_metadata_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"CheckLimits.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class CheckStep:
    """One line of the report: a named check, pass/fail/skip, and what it found."""

    name: str
    status: str
    detail: str = ""
    code: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of pre-checking one commitment.

    ok: every check passed. reason: None when ok, else INVALID / COPY / UNAVAILABLE /
    TRANSIENT (see codes.py). code: the failing check's code (None when ok). detail: a
    sentence for people. params: parameter count from the safetensors headers, when read.
    content_hash: ``sha256:<hex>`` canonical tensor hash, when computed. files_hash:
    ``sha256:<hex>`` over the sorted sha256 of every weight file (from hub metadata, no
    download), when known. file_hashes: those per-file hashes, sorted. local_path: the
    verified snapshot on disk (set once downloaded). copy_of: the earlier commitment that
    owns a hash, for COPY. seen_public: the repo was read publicly at the pinned revision
    during this check (the validator remembers it: a later disappearance is REMOVED).
    steps: every check in order, for the readable report.
    """

    ok: bool
    reason: str | None
    code: str | None
    detail: str
    commitment: str | None = None
    params: int | None = None
    content_hash: str | None = None
    files_hash: str | None = None
    file_hashes: tuple[str, ...] = ()
    local_path: str | None = None
    copy_of: str | None = None
    seen_public: bool = False
    steps: tuple[CheckStep, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.ok and (self.reason is not None or self.code is not None):
            raise ValueError("an ok CheckResult has no reason and no code")
        if not self.ok and (self.reason is None or self.code is None):
            raise ValueError("a failed CheckResult needs a reason and a code")
        if self.code is not None and reason_of(self.code) != self.reason:
            raise ValueError(f"code {self.code} implies reason {reason_of(self.code)}, not {self.reason}")

    @property
    def transient_scope(self) -> str | None:
        """For a TRANSIENT result, whose trouble it is: "repo" (this repo's check failed; a
        strike), "hub" (a strike only if other repos got through the hub this epoch) or
        "local" (our disk, cache or memory; never a strike). None otherwise."""
        return transient_scope(self.code) if self.code is not None else None

    @classmethod
    def failure(cls, code: str, detail: str, **fields) -> "CheckResult":
        return cls(ok=False, reason=reason_of(code), code=code, detail=detail, **fields)

    def to_json(self) -> dict:
        """The `distil-check --json` object."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "code": self.code,
            "detail": self.detail,
            "params": self.params,
            "content_hash": self.content_hash,
        }
