"""Directories served as model repos, for `--mock`, `distil-check PATH` and tests.

A directory's revision is derived from its contents (sha1 over the sorted file names and
their sha256), so it is a stable 40-hex id that changes whenever any file changes, like
a git commit would. A repo's only readable revision is the one its directory has now,
plus any older snapshot registered with `add_revision`; editing a directory therefore
"force-pushes" it and a commitment to the old revision no longer resolves.

For tests of the validator the store can pretend a repo is missing, private or gated
(`set_unavailable`) and fail the next calls with a transient error (`fail_transient`).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
import threading
from pathlib import Path
from typing import Iterable

from distil.commitment import Commitment, CommitmentError, validate_repo
from distil.hub.store import (
    HubError,
    HubTransientError,
    ModelStore,
    RepoFile,
    RepoMetadata,
    RepoUnavailable,
    UNAVAILABLE_KINDS,
    storage_error,
)

_BLOCK = 8 << 20
_sha_cache: dict[tuple, str] = {}
_sha_lock = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, streamed (8 MiB blocks, one reused buffer).

    Remembered per (path, inode, size, mtime) so that asking again for an unchanged file
    (the local store asks often: revision, metadata, integrity) costs a stat.
    """
    st = os.stat(path)
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    with _sha_lock:
        cached = _sha_cache.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    buf = bytearray(_BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    digest = h.hexdigest()
    with _sha_lock:
        if len(_sha_cache) > 4096:
            _sha_cache.clear()
        _sha_cache[key] = digest
    return digest


def _raise(error: OSError) -> None:
    raise error


def _entries(root: Path) -> list[Path]:
    """Regular files and symlinks (to anything) under `root`, never following links.

    A directory that cannot be listed raises its OSError: skipping it silently (os.walk's
    default) would hash an incomplete tree, and the revision would seem gone (REMOVED)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        base = Path(dirpath)
        for name in dirnames:
            if (base / name).is_symlink():
                out.append(base / name)
        for name in filenames:
            out.append(base / name)
    return sorted(out)  # Path order, as directory_revision has always used


def directory_revision(path: str | Path) -> str:
    """A 40-hex revision for a directory's contents (names and bytes of every file)."""
    root = Path(path)
    h = hashlib.sha1()
    for file in _entries(root):
        rel = file.relative_to(root).as_posix()
        if file.is_symlink():
            digest = "symlink:" + str(file.readlink())
        elif file.is_file():
            digest = file_sha256(file)
        else:  # sockets, fifos: nothing a repo can hold
            digest = "special"
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def _symlink_info(root: Path, link: Path) -> tuple[str, bool, Path | None]:
    """(link text, escapes the repo or dangles, resolved target inside the repo or None)."""
    target_text = str(link.readlink())
    try:
        resolved = link.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError, RuntimeError):  # dangling, or a loop
        return target_text, True, None
    except OSError as e:
        if e.errno == errno.ELOOP:
            return target_text, True, None
        raise  # a read error of ours (permissions, I/O), not the repo's link
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
        return target_text, True, None
    return target_text, False, resolved


def _disk_errors_are_ours(method):
    """An OSError while reading the directories (permissions, I/O, a file vanishing mid-read)
    is our disk's trouble: LocalStorageError (transient), never RepoUnavailable. Only
    `path_of` says a repo is gone, and only when its directory no longer exists."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except OSError as e:
            raise storage_error(f"in the local store's {method.__name__}", e) from e

    return wrapper


class LocalModelStore(ModelStore):
    """Serve `{repo_id: directory}` as repos whose current revision is `directory_revision`."""

    def __init__(self, repos: dict[str, str | Path] | None = None):
        self.repos: dict[str, Path] = {repo: Path(path) for repo, path in (repos or {}).items()}
        self._older: dict[str, dict[str, Path]] = {}
        self._unavailable: dict[str, str] = {}
        self._transient: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []  # (operation, repo): what tests may assert on
        self.root: Path | None = None  # see serve_root

    @classmethod
    def from_root(cls, root: str | Path) -> "LocalModelStore":
        """Every `root/<namespace>/<name>` directory becomes the repo `namespace/name`."""
        root = Path(root)
        repos = {}
        if root.is_dir():
            for ns in sorted(p for p in root.iterdir() if p.is_dir()):
                for name in sorted(p for p in ns.iterdir() if p.is_dir()):
                    repos[f"{ns.name}/{name.name}"] = name
        return cls(repos)

    # -- set-up -----------------------------------------------------------------------

    def serve_root(self, root: str | Path) -> None:
        """Also serve `root/<namespace>/<name>` as the repo `namespace/name`, looked up when a
        repo is asked for: a model placed there after start-up is found (a mock miner's)."""
        self.root = Path(root)

    def add(self, repo: str, path: str | Path) -> str:
        """Serve `path` as `repo` (its current revision); returns that revision."""
        self.repos[repo] = Path(path)
        return directory_revision(path)

    def add_revision(self, repo: str, path: str | Path) -> str:
        """Keep `path` readable as an older revision of `repo`; returns that revision."""
        revision = directory_revision(path)
        self._older.setdefault(repo, {})[revision] = Path(path)
        return revision

    def set_unavailable(self, repo: str, kind: str = "private") -> None:
        """Answer for `repo` as the hub does for a missing, private, gated or disabled repo."""
        if kind not in UNAVAILABLE_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {UNAVAILABLE_KINDS}")
        self._unavailable[repo] = kind

    def set_public(self, repo: str) -> None:
        self._unavailable.pop(repo, None)

    def fail_transient(self, repo: str, times: int = 1) -> None:
        """The next `times` calls about `repo` raise HubTransientError (a 503, say)."""
        self._transient[repo] = self._transient.get(repo, 0) + times

    # -- reads ------------------------------------------------------------------------

    def _gate(self, operation: str, repo: str) -> None:
        self.calls.append((operation, repo))
        if self._transient.get(repo, 0) > 0:
            self._transient[repo] -= 1
            raise HubTransientError(f"local store: simulated transient failure for {repo}")
        kind = self._unavailable.get(repo)
        if kind is not None:
            raise RepoUnavailable(repo, kind, f"repository {repo} is {kind} (simulated by the local store)")

    def path_of(self, repo: str) -> Path:
        """The repo's directory. RepoUnavailable only when it no longer exists (or is not a
        directory); LocalStorageError when it cannot be looked at."""
        path = self.repos.get(repo)
        gone = RepoUnavailable(repo, "missing", f"repository {repo} not found in the local model store")
        if path is None and self.root is not None:
            try:
                path = self.root / validate_repo(repo)  # a valid repo id: two plain names, no `..`
            except CommitmentError:
                raise gone from None
        if path is None:
            raise gone
        try:
            mode = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise gone from None
        except OSError as e:
            raise storage_error(f"looking at {path}", e) from e
        if not stat.S_ISDIR(mode):
            raise gone
        return path

    @_disk_errors_are_ours
    def resolve_revision(self, repo: str) -> str:
        self._gate("resolve_revision", repo)
        return directory_revision(self.path_of(repo))

    def _snapshot(self, commitment: Commitment) -> Path:
        repo, revision = commitment.repo, commitment.revision
        head = self.path_of(repo)
        if directory_revision(head) == revision:
            return head
        older = self._older.get(repo, {}).get(revision)
        if older is not None and older.is_dir() and directory_revision(older) == revision:
            return older
        raise RepoUnavailable(repo, "revision", f"revision {revision} not found in {repo}")

    @_disk_errors_are_ours
    def repo_metadata(self, commitment: Commitment) -> RepoMetadata:
        self._gate("repo_metadata", commitment.repo)
        root = self._snapshot(commitment)
        files = []
        for entry in _entries(root):
            name = entry.relative_to(root).as_posix()
            if entry.is_symlink():
                text, escapes, target = _symlink_info(root, entry)
                size = target.stat().st_size if target is not None else None
                sha = file_sha256(target) if target is not None else None
                files.append(RepoFile(name, size, sha256=sha, symlink_target=text, symlink_escapes=escapes))
            elif entry.is_file():
                files.append(RepoFile(name, entry.stat().st_size, sha256=file_sha256(entry)))
            else:
                files.append(RepoFile(name, None))
        return RepoMetadata(repo=commitment.repo, revision=commitment.revision, files=tuple(files))

    def _file(self, commitment: Commitment, filename: str) -> Path:
        root = self._snapshot(commitment)
        path = root / filename
        if ".." in Path(filename).parts or Path(filename).is_absolute():
            raise HubError(f"refusing to read {filename!r}: not a path inside the repo")
        if path.is_symlink():
            _, escapes, target = _symlink_info(root, path)
            if escapes:
                raise HubError(f"refusing to read {filename!r}: a symlink out of the repo")
            path = target
        if not path.is_file():
            raise RepoUnavailable(commitment.repo, "file", f"{filename} not found in {commitment}")
        return path

    @_disk_errors_are_ours
    def read_range(self, commitment: Commitment, filename: str, start: int, end: int) -> bytes:
        self._gate("read_range", commitment.repo)
        if not 0 <= start <= end:
            raise ValueError(f"bad byte range [{start}, {end})")
        with open(self._file(commitment, filename), "rb") as f:
            f.seek(start)
            return f.read(end - start)

    @_disk_errors_are_ours
    def download(
        self,
        commitment: Commitment,
        allow_patterns: Iterable[str] | None = None,
        progress: bool = False,
        expected_bytes: int = 0,
    ) -> Path:
        """The directory itself: a local repo needs no copy."""
        self._gate("download", commitment.repo)
        return self._snapshot(commitment)

    @_disk_errors_are_ours
    def fetch_file(self, commitment: Commitment, filename: str) -> Path:
        self._gate("fetch_file", commitment.repo)
        return self._file(commitment, filename)
