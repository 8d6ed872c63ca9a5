"""The Hugging Face hub as a model store, through the real `huggingface_hub` client.

Every read names the pinned revision. Metadata comes from `model_info(revision=...,
files_metadata=True)` (sizes, git blob ids, LFS sha256), byte ranges from a ranged GET
on the file's resolve URL (the request `parse_safetensors_file_metadata` makes, but
asking for exactly the header's bytes), snapshots from `snapshot_download` into a
cache directory kept under a byte budget (least recently used snapshots evicted).

huggingface_hub reads `HF_ENDPOINT` at import time; pass `endpoint=` to point a store
at a mirror or at the test server.

Every call has an overall deadline (`distil.hub.deadline`), not only a timeout per read:
`request_deadline_s` for metadata, ranged reads and single files, and for a snapshot
`request_deadline_s` + its expected bytes at `min_download_bytes_per_s`. `deadline_at(t)`
caps every call made inside it at the `time.monotonic()` instant t (the validator's
pre-check downloads of one epoch). A call past its deadline raises `HubTransientError`
(`HubDeadlineExceeded`): the hub's trouble for that repo, never a verdict; one cut by the
cap raises `BudgetExhausted`: ours, resumed later.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from distil.commitment import Commitment
from distil.hub.cache import evict_hf_cache, touch_snapshot
from distil.hub.store import (
    BudgetExhausted,
    HubDeadlineExceeded,
    HubError,
    HubTransientError,
    ModelStore,
    RepoFile,
    RepoMetadata,
    RepoUnavailable,
    is_disk_error,
    storage_error,
)


def _causes(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def translate_hub_error(repo: str, exc: Exception, endpoint: str | None = None) -> HubError:
    """Map huggingface_hub / HTTP errors onto our classes: unavailable vs transient vs other.

    The cause chain is searched, because the client wraps a failed HEAD (a 503, say) in
    `LocalEntryNotFoundError` when nothing is cached. A hub that cannot be reached is named
    by its `endpoint` ("Name or service not known" alone does not say which host).
    """
    import httpx2
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, HubError):
        return exc
    for e in _causes(exc):
        if isinstance(e, hf_errors.GatedRepoError):
            return RepoUnavailable(repo, "gated", f"repository {repo} is gated; it must be public")
        if isinstance(e, hf_errors.DisabledRepoError):
            return RepoUnavailable(repo, "disabled", f"repository {repo} is disabled on the hub")
        if isinstance(e, hf_errors.RevisionNotFoundError):
            return RepoUnavailable(repo, "revision", f"the pinned revision does not exist in {repo}")
        if isinstance(e, hf_errors.RemoteEntryNotFoundError):
            return RepoUnavailable(repo, "file", f"a file of {repo} is not found at the pinned revision: {e}")
        if isinstance(e, hf_errors.RepositoryNotFoundError):
            # The hub answers 401/404 alike for private and missing repos.
            return RepoUnavailable(repo, "missing", f"repository {repo} not found (missing or private)")
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(status, int) and status >= 400:
            if status in (408, 429) or status >= 500:
                return HubTransientError(f"hub answered HTTP {status} for {repo}; try again later")
            if status in (401, 403):
                return RepoUnavailable(repo, "private", f"repository {repo} is not public (HTTP {status})")
            if status == 404:
                return RepoUnavailable(repo, "missing", f"repository {repo} not found (HTTP 404)")
            return HubError(f"hub answered HTTP {status} for {repo}: {e}")
        if isinstance(e, hf_errors.OfflineModeIsEnabled):
            return HubTransientError(f"HF_HUB_OFFLINE is set: cannot reach the hub for {repo}")
        if isinstance(e, (httpx2.TransportError, TimeoutError, ConnectionError)):
            where = f" at {endpoint}" if endpoint else ""
            return HubTransientError(f"hub{where} unreachable for {repo}: {type(e).__name__}: {e}")
        if is_disk_error(e):  # the cache: our disk, not the repo
            return storage_error(f"in the download cache for {repo}", e)
    if isinstance(exc, hf_errors.LocalEntryNotFoundError):
        where = f" at {endpoint}" if endpoint else ""
        return HubTransientError(f"hub{where} unreachable for {repo} and nothing cached: {exc}")
    return HubError(f"hub error for {repo}: {type(exc).__name__}: {exc}")


# A call's overall deadline (distil.hub.deadline): generous for honest hubs, finite for one that
# trickles. A snapshot gets REQUEST_DEADLINE_S plus its bytes at MIN_DOWNLOAD_BYTES_PER_S
# (10.5 GB, a 5.25B bf16 model, at 10 MB/s: about 19 minutes).
REQUEST_DEADLINE_S = 120.0
MIN_DOWNLOAD_BYTES_PER_S = 10e6


def _silent_tqdm():
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


class HuggingFaceStore(ModelStore):
    """Models on the Hugging Face hub (or any endpoint speaking its API).

    `cache_dir` defaults to huggingface_hub's cache; with `max_cache_bytes` set, each
    download first evicts least recently used snapshots so the cache (plus the new
    snapshot) stays within the budget. Snapshots named with `pin` are never evicted.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | bool | None = None,
        timeout: float = 30.0,
        cache_dir: str | Path | None = None,
        max_cache_bytes: int | None = None,
        request_deadline_s: float = REQUEST_DEADLINE_S,
        min_download_bytes_per_s: float = MIN_DOWNLOAD_BYTES_PER_S,
    ):
        from huggingface_hub import HfApi

        from distil.hub import deadline

        if not (request_deadline_s > 0 and min_download_bytes_per_s > 0):
            raise ValueError("request_deadline_s and min_download_bytes_per_s must be positive")
        deadline.install()
        self.api = HfApi(endpoint=endpoint, token=token)
        self.endpoint = self.api.endpoint
        self.token = token
        self.timeout = timeout
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_cache_bytes = max_cache_bytes
        self.pinned: set[str] = set()
        self.request_deadline_s = request_deadline_s
        self.min_download_bytes_per_s = min_download_bytes_per_s
        self._cap: float | None = None  # deadline_at's instant

    # -- deadlines --------------------------------------------------------------------

    @contextmanager
    def deadline_at(self, instant: float | None):
        """Every call made inside ends by the `time.monotonic()` instant `instant` (None: no cap)."""
        previous, self._cap = self._cap, instant
        try:
            yield self
        finally:
            self._cap = previous

    @contextmanager
    def _deadline(self, what: str, repo: str, expected_bytes: int = 0):
        """The call's deadline (its headers for huggingface_hub); a failure met past it is
        HubDeadlineExceeded (or BudgetExhausted when deadline_at's cap cut it)."""
        from distil.hub.deadline import deadline_headers

        seconds = self.request_deadline_s + max(0, expected_bytes) / self.min_download_bytes_per_s
        own = time.monotonic() + seconds
        capped = self._cap is not None and self._cap < own
        instant = self._cap if capped else own
        if capped and instant <= time.monotonic():
            raise BudgetExhausted(f"no time left in this epoch's budget to {what} for {repo}; resumed later")
        try:
            yield deadline_headers(instant)
        except Exception as e:
            if time.monotonic() < instant:
                raise
            if capped:
                raise BudgetExhausted(f"this epoch's budget ran out while {what} for {repo}; resumed later") from e
            raise HubDeadlineExceeded(f"the hub gave no complete answer within {seconds:.0f}s while {what} for {repo} "
                                      f"({type(e).__name__}); try again later") from e

    # -- metadata ---------------------------------------------------------------------

    def _api(self, headers: dict):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self.token, headers=headers)

    def resolve_revision(self, repo: str) -> str:
        try:
            with self._deadline("resolving its revision", repo) as headers:
                info = self._api(headers).model_info(repo, timeout=self.timeout)
        except Exception as e:
            raise translate_hub_error(repo, e, self.endpoint) from e
        if not info.sha:
            raise HubError(f"hub returned no commit sha for {repo}")
        return info.sha

    def _info(self, commitment: Commitment, files_metadata: bool):
        try:
            with self._deadline("reading its metadata", commitment.repo) as headers:
                info = self._api(headers).model_info(
                    commitment.repo, revision=commitment.revision, files_metadata=files_metadata, timeout=self.timeout
                )
        except Exception as e:
            raise translate_hub_error(commitment.repo, e, self.endpoint) from e
        if info.sha != commitment.revision:
            raise HubError(f"hub answered revision {info.sha!r} when asked for {commitment}")
        if files_metadata and info.siblings is None:
            raise HubError(f"hub listed no files for {commitment}")  # a partial answer, not an empty repo
        return info

    @staticmethod
    def _metadata(commitment: Commitment, info) -> RepoMetadata:
        files = tuple(
            RepoFile(
                name=s.rfilename,
                size=s.size,
                sha256=s.lfs.sha256 if s.lfs is not None else None,
                blob_id=s.blob_id,
            )
            for s in (info.siblings or ())
        )
        return RepoMetadata(
            repo=commitment.repo,
            revision=commitment.revision,
            files=files,
            private=bool(info.private),
            gated=bool(info.gated),
            disabled=bool(info.disabled),
        )

    def repo_metadata(self, commitment: Commitment) -> RepoMetadata:
        return self._metadata(commitment, self._info(commitment, files_metadata=True))

    def probe(self, commitment: Commitment) -> RepoMetadata:
        return self._metadata(commitment, self._info(commitment, files_metadata=False))

    # -- bytes ------------------------------------------------------------------------

    def read_range(self, commitment: Commitment, filename: str, start: int, end: int) -> bytes:
        """A ranged GET of the file's resolve URL at the pinned revision.

        Reads at most `end` bytes even from a server that ignores the Range header.
        """
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        if not 0 <= start <= end:
            raise ValueError(f"bad byte range [{start}, {end})")
        if start == end:
            return b""
        url = hf_hub_url(commitment.repo, filename, revision=commitment.revision, endpoint=self.endpoint)
        headers = build_hf_headers(token=self.token)
        headers["Range"] = f"bytes={start}-{end - 1}"
        headers["Accept-Encoding"] = "identity"
        try:
            with self._deadline(f"reading {filename}", commitment.repo) as deadline, \
                    get_session().stream("GET", url, headers={**headers, **deadline}, timeout=self.timeout) as response:
                if response.status_code >= 400:
                    response.read()
                hf_raise_for_status(response)
                skip = start if response.status_code == 200 else 0  # 200: the server ignored the range
                want = end - start
                chunks, have = [], 0
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    have += len(chunk)
                    if have >= skip + want:
                        break
        except Exception as e:
            raise translate_hub_error(commitment.repo, e, self.endpoint) from e
        data = b"".join(chunks)[skip : skip + want]
        if len(data) != want:
            raise HubError(f"asked {filename} of {commitment} for {want} bytes at {start}, got {len(data)}")
        return data

    def download(
        self,
        commitment: Commitment,
        allow_patterns: Iterable[str] | None = None,
        progress: bool = False,
        expected_bytes: int = 0,
    ) -> Path:
        """`snapshot_download` at the pinned revision into the bounded cache; returns the snapshot."""
        from huggingface_hub import snapshot_download

        key = str(commitment)
        if self.max_cache_bytes is not None:
            self._evict(keep=self.pinned | {key}, incoming=expected_bytes)
        try:
            with self._deadline("downloading its snapshot", commitment.repo, expected_bytes) as headers:
                path = snapshot_download(
                    commitment.repo,
                    revision=commitment.revision,
                    cache_dir=self.cache_dir,
                    endpoint=self.endpoint,
                    token=self.token,
                    allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
                    etag_timeout=self.timeout,
                    tqdm_class=None if progress else _silent_tqdm(),
                    headers=headers,
                )
        except Exception as e:
            raise translate_hub_error(commitment.repo, e, self.endpoint) from e
        touch_snapshot(path)
        if self.max_cache_bytes is not None:
            self._evict(keep=self.pinned | {key})
        return Path(path)

    def fetch_file(self, commitment: Commitment, filename: str) -> Path:
        from huggingface_hub import hf_hub_download

        try:
            with self._deadline(f"fetching {filename}", commitment.repo) as headers:
                path = hf_hub_download(
                    commitment.repo,
                    filename,
                    revision=commitment.revision,
                    cache_dir=self.cache_dir,
                    endpoint=self.endpoint,
                    token=self.token,
                    etag_timeout=self.timeout,
                    tqdm_class=_silent_tqdm(),
                    headers=headers,
                )
        except Exception as e:
            raise translate_hub_error(commitment.repo, e, self.endpoint) from e
        return Path(path)

    # -- cache ------------------------------------------------------------------------

    def pin(self, commitment: Commitment) -> None:
        """Never evict this snapshot (the king's, say) until `unpin`."""
        self.pinned.add(str(commitment))

    def unpin(self, commitment: Commitment) -> None:
        self.pinned.discard(str(commitment))

    def _cache_root(self) -> Path:
        from huggingface_hub import constants

        return self.cache_dir if self.cache_dir is not None else Path(constants.HF_HUB_CACHE)

    def _evict(self, keep: set[str], incoming: int = 0) -> list[str]:
        root = self._cache_root()
        try:
            return evict_hf_cache(root, self.max_cache_bytes, keep=keep, incoming=incoming)
        except OSError as e:  # the cache is ours: an unreadable one is no verdict on any repo
            raise storage_error(f"scanning the model cache {root}", e) from e
