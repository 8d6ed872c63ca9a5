"""Model stores: where committed models live (the Hugging Face hub, or local directories).

A store answers for a repo pinned at a revision: its files and their hashes (no
download), byte ranges of a file (safetensors headers), and a local snapshot.
`HuggingFaceStore` uses the real `huggingface_hub` client (pass `endpoint=` to point it
at a mirror or the test server); `LocalModelStore` serves directories as repos, for
`--mock`, `distil-check PATH` and tests.
"""

from distil.hub.store import (
    BudgetExhausted,
    HubDeadlineExceeded,
    HubError,
    HubTransientError,
    LocalStorageError,
    ModelStore,
    RepoFile,
    RepoMetadata,
    RepoUnavailable,
)
from distil.hub.local import LocalModelStore, directory_revision, file_sha256
from distil.hub.huggingface import HuggingFaceStore, translate_hub_error

__all__ = [
    "BudgetExhausted",
    "HubDeadlineExceeded",
    "HubError",
    "HubTransientError",
    "LocalStorageError",
    "ModelStore",
    "RepoFile",
    "RepoMetadata",
    "RepoUnavailable",
    "LocalModelStore",
    "HuggingFaceStore",
    "directory_revision",
    "file_sha256",
    "translate_hub_error",
]
