"""The model store interface, its errors and the metadata it returns.

A store answers for a repo pinned at a revision (a `Commitment`): what files it holds
(with sizes and content hashes, no download), byte ranges of one file (safetensors
headers are read this way, so weights are never fetched before the header checks pass),
and a local copy of the whole snapshot once the cheap checks have passed.

Errors fall in three classes, because the validator treats them differently:
`RepoUnavailable` (missing, private, gated, disabled, revision gone: the miner's doing),
`HubTransientError` (429, 5xx, timeouts: nobody's fault, try again; its subclass
`LocalStorageError` when our own disk or cache failed) and plain `HubError` (anything
else; never taken as a verdict on the model). REMOVED is derived only from
`RepoUnavailable`: an error reading our own disk must never look like a missing repo.
"""

from __future__ import annotations

import errno
import os
import re
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from distil.commitment import Commitment

# What `RepoUnavailable.kind` may be.
UNAVAILABLE_KINDS = ("missing", "private", "gated", "disabled", "revision", "file")


class HubError(Exception):
    """A store operation failed; the message says what and why."""


class HubTransientError(HubError):
    """Rate limit (429), server error (5xx) or timeout: try again later, judge nothing."""


class HubDeadlineExceeded(HubTransientError):
    """The hub (or a proxy, a CDN) did not finish answering within the call's overall deadline:
    the hub's trouble for that repo, like a timeout."""


class BudgetExhausted(HubTransientError):
    """The caller's time budget (the epoch's pre-check downloads) ran out before or during
    the call: our schedule, not the hub's nor the repo's; the work resumes later."""


class LocalStorageError(HubTransientError):
    """Our own disk or cache could not be read or written (permissions, I/O error, disk
    full): the validator's trouble, never a verdict on the repo (a king whose directory we
    cannot read is not removed). `path` names what failed."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


# errno values that mean a file system or the file table refused us (not a socket: those
# are the hub's). ENODEV: mmap of something that is not a regular file on our disk.
DISK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EACCES", "EPERM", "EIO", "ENOSPC", "EROFS", "EDQUOT", "ENOENT", "ENOTDIR", "EISDIR",
                 "EMFILE", "ENFILE", "ESTALE", "ENXIO", "EBUSY", "ETXTBSY", "EFBIG", "ENAMETOOLONG", "ENODEV")
    if hasattr(errno, name)
)
# Rust libraries raise an io::Error as OSError with errno None (safetensors) or as a plain
# Exception (tokenizers), whose whole message is "<strerror> (os error N)".
_RUST_OS_ERROR = re.compile(r"(.+) \(os error (\d+)\)")


def os_errno(e: BaseException) -> int | None:
    """The errno of an OSError, or of a Rust library's io::Error: only when the whole message
    is the system's own text for that errno (a message quoting a repo's file cannot pass)."""
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno
    found = _RUST_OS_ERROR.fullmatch(str(e))
    if found is None:
        return None
    number = int(found.group(2))
    return number if found.group(1) == os.strerror(number) else None


def is_disk_error(e: BaseException) -> bool:
    """An OSError from a file system call (an errno of DISK_ERRNOS), not a network error."""
    import ssl

    if not isinstance(e, OSError) or isinstance(e, (ConnectionError, TimeoutError, ssl.SSLError)):
        return False
    return os_errno(e) in DISK_ERRNOS


# A path that does not exist or is not a file (ENOENT, ENOTDIR, EISDIR, ENAMETOOLONG) can
# follow from a name a repo's own files give a library (a tokenizer file its config names);
# the other disk errors never follow from what a file says.
_PATH_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOENT", "ENOTDIR", "EISDIR", "ENAMETOOLONG") if hasattr(errno, n))
MACHINE_ERRNOS = DISK_ERRNOS - _PATH_ERRNOS


def disk_error_in(e: BaseException) -> BaseException | None:
    """The first error of our machine in `e` or its causes and contexts (libraries wrap the
    OSError of a failed read in their own exceptions): an OSError, or the tokenizers
    library's plain Exception, whose errno (`os_errno`) is one of MACHINE_ERRNOS. None when
    there is none."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (is_disk_error(e) or type(e) is Exception) and os_errno(e) in MACHINE_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def storage_error(what: str, e: BaseException) -> LocalStorageError:
    """A LocalStorageError for an OSError (or a Rust library's io::Error) met while `what`
    (e.g. "reading /cache/x")."""
    number = os_errno(e)
    if number is None:  # e.g. safetensors' FileNotFoundError when the file table is full
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    else:
        why = f"{getattr(e, 'strerror', None) or os.strerror(number)} (errno {number})"
    return LocalStorageError(f"our own storage failed {what}: {why}; retried later", getattr(e, "filename", None))


def local_io_failure(what: str, e: BaseException) -> LocalStorageError | None:
    """The LocalStorageError to raise for `e` met while `what` (a library reading a repo's
    files), when `e` is our own disk's or file table's trouble (a LocalStorageError, or an
    error of MACHINE_ERRNOS among its causes); else None."""
    if isinstance(e, LocalStorageError):
        return e
    disk = disk_error_in(e)
    return None if disk is None else storage_error(what, disk)


class RepoUnavailable(HubError):
    """The repo, revision or file cannot be read publicly.

    `kind` is one of "missing", "private", "gated", "disabled", "revision" (the pinned
    commit does not exist in the repo) or "file" (a file listed at the revision cannot be
    fetched).
    """

    def __init__(self, repo: str, kind: str, message: str):
        if kind not in UNAVAILABLE_KINDS:
            raise ValueError(f"unknown unavailability kind {kind!r}; expected one of {UNAVAILABLE_KINDS}")
        super().__init__(message)
        self.repo = repo
        self.kind = kind


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo at a revision, as the store describes it without downloading it.

    `sha256` is the content's sha256 when the store knows it (the hub gives it for LFS
    files, which weights always are; the local store computes it); `blob_id` the git blob
    id the hub gives for every file. `symlink_target` is set only by stores that can hold
    symlinks (local directories); `symlink_escapes` says the link resolves outside the
    repo or nowhere.
    """

    name: str
    size: int | None
    sha256: str | None = None
    blob_id: str | None = None
    symlink_target: str | None = None
    symlink_escapes: bool = False

    @property
    def is_symlink(self) -> bool:
        return self.symlink_target is not None


@dataclass(frozen=True)
class RepoMetadata:
    """A repo at a pinned revision: its files and whether it is public."""

    repo: str
    revision: str
    files: tuple[RepoFile, ...]
    private: bool = False
    gated: bool = False
    disabled: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)

    def file(self, name: str) -> RepoFile | None:
        for f in self.files:
            if f.name == name:
                return f
        return None

    @property
    def is_public(self) -> bool:
        return not (self.private or self.gated or self.disabled)

    def visibility_problem(self) -> str | None:
        """None when public, else a sentence naming the problem."""
        if self.disabled:
            return f"repository {self.repo} is disabled on the hub"
        if self.private:
            return f"repository {self.repo} is private; validators can only read public repos"
        if self.gated:
            return f"repository {self.repo} is gated; it must be public without an access request"
        return None


class ModelStore(ABC):
    """Where committed models are read from; every read is at a pinned revision."""

    @abstractmethod
    def resolve_revision(self, repo: str) -> str:
        """The 40-hex commit sha the repo's default branch points at now."""

    @abstractmethod
    def repo_metadata(self, commitment: Commitment) -> RepoMetadata:
        """Files (names, sizes, hashes) and visibility at the pinned revision; downloads nothing.

        Raises RepoUnavailable when the repo or the revision cannot be read,
        HubTransientError on rate limits, server errors and timeouts.
        """

    @abstractmethod
    def read_range(self, commitment: Commitment, filename: str, start: int, end: int) -> bytes:
        """Bytes `[start, end)` of one file at the pinned revision, and nothing more."""

    @abstractmethod
    def download(
        self,
        commitment: Commitment,
        allow_patterns: Iterable[str] | None = None,
        progress: bool = False,
        expected_bytes: int = 0,
    ) -> Path:
        """A local directory holding the snapshot at the pinned revision (only `allow_patterns`
        when given; `progress` shows a progress bar; `expected_bytes` lets a bounded cache make
        room first). Files in it are read-only to the caller."""

    def probe(self, commitment: Commitment) -> RepoMetadata:
        """Cheap re-check that the pinned revision still resolves (integrity checks).

        Stores may answer without per-file metadata; the default asks for everything.
        """
        return self.repo_metadata(commitment)

    def fetch_file(self, commitment: Commitment, filename: str) -> Path:
        """One (small) file at the pinned revision, as a local path."""
        return self.download(commitment, allow_patterns=[filename]) / filename

    @contextmanager
    def deadline_at(self, instant: float | None):
        """Calls made inside end by the `time.monotonic()` instant `instant` (BudgetExhausted
        past it); a no-op for stores that make no network calls."""
        yield self

    def pin(self, commitment: Commitment) -> None:
        """Keep this snapshot out of cache eviction until `unpin` (no-op where nothing is evicted)."""

    def unpin(self, commitment: Commitment) -> None:
        """Let this snapshot be evicted again."""
