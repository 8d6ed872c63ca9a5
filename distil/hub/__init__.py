"""Model stores: where committed models live (the Hugging Face hub, or local directories).

A store answers for a repo id and a pinned revision. `HuggingFaceStore` uses the real
`huggingface_hub` client (its endpoint comes from `HF_ENDPOINT`, so tests point it at a
local server); `LocalModelStore` serves directories as repos, for `--mock` and tests.
"""

from distil.hub.store import (
    HubError,
    HubTransientError,
    ModelStore,
    RepoUnavailable,
)
from distil.hub.local import LocalModelStore, directory_revision
from distil.hub.huggingface import HuggingFaceStore

__all__ = [
    "HubError",
    "HubTransientError",
    "ModelStore",
    "RepoUnavailable",
    "LocalModelStore",
    "HuggingFaceStore",
    "directory_revision",
]
