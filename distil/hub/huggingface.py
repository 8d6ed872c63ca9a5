"""The Hugging Face hub as a model store, through the real `huggingface_hub` client."""

from __future__ import annotations

from distil.hub.store import HubError, HubTransientError, ModelStore, RepoUnavailable


def translate_hub_error(repo: str, exc: Exception) -> HubError:
    """Map huggingface_hub / HTTP errors onto our classes: unavailable vs transient."""
    from huggingface_hub import errors as hf_errors

    if isinstance(exc, hf_errors.GatedRepoError):
        return RepoUnavailable(repo, "gated", f"repository {repo} is gated; it must be public")
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return RepoUnavailable(repo, "revision", f"revision not found in {repo}: {exc}")
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        # The hub answers 401/404 alike for private and missing repos.
        return RepoUnavailable(repo, "missing", f"repository {repo} not found (missing or private)")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        if status == 429 or status >= 500:
            return HubTransientError(f"hub answered {status} for {repo}; try again later")
        if status in (401, 403):
            return RepoUnavailable(repo, "private", f"repository {repo} is not public (HTTP {status})")
        if status == 404:
            return RepoUnavailable(repo, "missing", f"repository {repo} not found (HTTP 404)")
    name = type(exc).__name__.lower()
    if isinstance(exc, (TimeoutError, ConnectionError, OSError)) or "timeout" in name or "connect" in name:
        return HubTransientError(f"hub unreachable for {repo}: {type(exc).__name__}: {exc}")
    return HubError(f"hub error for {repo}: {type(exc).__name__}: {exc}")


class HuggingFaceStore(ModelStore):
    def __init__(self, endpoint: str | None = None, token: str | None = None, timeout: float = 30.0):
        from huggingface_hub import HfApi

        self.api = HfApi(endpoint=endpoint, token=token)
        self.timeout = timeout

    def resolve_revision(self, repo: str) -> str:
        try:
            info = self.api.model_info(repo, timeout=self.timeout)
        except Exception as e:
            raise translate_hub_error(repo, e) from e
        if not info.sha:
            raise HubError(f"hub returned no commit sha for {repo}")
        return info.sha
