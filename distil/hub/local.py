"""Directories served as model repos, for `--mock` and tests.

A directory's revision is derived from its contents (sha1 over the sorted file names and
their sha256), so it is a stable 40-hex id that changes whenever any file changes, like
a git commit would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from distil.hub.store import ModelStore, RepoUnavailable


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def directory_revision(path: str | Path) -> str:
    """A 40-hex revision for a directory's contents (names and bytes of every file)."""
    root = Path(path)
    h = hashlib.sha1()
    for file in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        rel = file.relative_to(root).as_posix()
        digest = "symlink:" + str(file.readlink()) if file.is_symlink() else _file_sha256(file)
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


class LocalModelStore(ModelStore):
    """Serve `{repo_id: directory}` as repos whose only revision is `directory_revision`."""

    def __init__(self, repos: dict[str, str | Path] | None = None):
        self.repos: dict[str, Path] = {repo: Path(path) for repo, path in (repos or {}).items()}

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

    def add(self, repo: str, path: str | Path) -> str:
        """Serve `path` as `repo`; returns its revision."""
        self.repos[repo] = Path(path)
        return directory_revision(path)

    def path_of(self, repo: str) -> Path:
        path = self.repos.get(repo)
        if path is None or not path.is_dir():
            raise RepoUnavailable(repo, "missing", f"repository {repo} not found in the local model store")
        return path

    def resolve_revision(self, repo: str) -> str:
        return directory_revision(self.path_of(repo))
