"""The model store interface and its errors."""

from __future__ import annotations

from abc import ABC, abstractmethod


class HubError(Exception):
    """A store operation failed; the message says what and why."""


class HubTransientError(HubError):
    """Rate limit (429), server error (5xx) or timeout: try again later, judge nothing."""


class RepoUnavailable(HubError):
    """The repo or revision cannot be read: `kind` is "missing", "private", "gated" or "revision"."""

    def __init__(self, repo: str, kind: str, message: str):
        super().__init__(message)
        self.repo = repo
        self.kind = kind


class ModelStore(ABC):
    """Where committed models are read from."""

    @abstractmethod
    def resolve_revision(self, repo: str) -> str:
        """The 40-hex commit sha the repo's default branch points at now."""
