"""Weight hashes for duplicate detection, and the registry deciding who owns a hash.

Two hashes, both ``sha256:<hex>``:

* **files hash** — from hub metadata alone (no download): sha256 over the sorted list of
  the weight files' own hashes (LFS sha256, or the git blob id of a non-LFS file). It
  covers the *whole set* of weight files, so sharing one shard with another model is not a
  copy; uploading the same files again is.
* **content hash** — after download: sha256 over the tensors sorted by name, each
  contributing its name, dtype, shape and raw bytes. Sharding, shard names, tensor order
  within a file and ``__metadata__`` do not enter it, so a re-sharded copy hashes the same.
  Framing (version 1)::

      sha256( b"distil-content-v1\\n"
              + for each tensor, by name (Unicode code point order):
                  u64le(len(M)) + M          M = JSON [name, dtype, shape], compact, UTF-8
                  + u64le(nbytes) + raw bytes )

  It is streamed through one reused buffer (never the whole model in RAM) and, in the same
  pass, BF16/F16/F32/F64 tensors are scanned for NaN and infinity.

`DuplicateRegistry` is pure: the earliest claim owns a hash. Claims order by
`distil.precedence`, the one tie rule of every kind of copy: the earlier commit block, and
in the same block a draw from that block's hash and the hotkey, which the committer can
neither predict nor grind (the chain's commitment map does not expose the order of
extrinsics within a block); then the commitment string (one hotkey, one commitment).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping, Sequence

import numpy as np

from distil.checks.result import CheckFailure, CheckLimits
from distil.checks.safetensors_header import SafetensorsHeader, TensorInfo, header_length, parse_header
from distil.hub.store import RepoMetadata
from distil.precedence import precedence

CONTENT_HASH_PREFIX = b"distil-content-v1\n"
_CHUNK = 8 << 20

# (numpy view, magnitude mask, smallest non-finite magnitude): an IEEE float is NaN or
# infinite iff its exponent bits are all ones, i.e. |bits| >= the threshold.
_NONFINITE = {
    "BF16": (np.dtype("<u2"), 0x7FFF, 0x7F80),
    "F16": (np.dtype("<u2"), 0x7FFF, 0x7C00),
    "F32": (np.dtype("<u4"), 0x7FFFFFFF, 0x7F800000),
    "F64": (np.dtype("<u8"), 0x7FFFFFFFFFFFFFFF, 0x7FF0000000000000),
}


def files_hash(meta: RepoMetadata, weight_files: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
    """(set hash, sorted per-file ids) of the weight files, from metadata; (None, ()) when
    a file's hash is unknown."""
    ids = []
    for name in weight_files:
        f = meta.file(name)
        if f is None:
            return None, ()
        if f.sha256:
            ids.append(f"sha256:{f.sha256}")
        elif f.blob_id:
            ids.append(f"git:{f.blob_id}")
        else:
            return None, ()
    ids.sort()
    return "sha256:" + hashlib.sha256("\n".join(ids).encode()).hexdigest(), tuple(ids)


def read_local_header(path: str | Path, limits: CheckLimits = CheckLimits()) -> SafetensorsHeader:
    """Parse and validate the header of a local safetensors file (same rules as remote)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        n = header_length(prefix, path.name, size, limits.max_header_bytes)
        raw = f.read(n)
    return parse_header(raw, path.name, size, limits.max_metadata_bytes)


@dataclass(frozen=True)
class ContentScan:
    content_hash: str
    params: int
    nbytes: int
    nonfinite: tuple[str, ...]  # names of tensors holding NaN or infinity
    headers: tuple[SafetensorsHeader, ...]


class _NonfiniteScanner:
    def __init__(self, chunk: int):
        self._scratch = {dt.itemsize: np.empty(chunk // dt.itemsize, dtype=dt) for dt, _, _ in _NONFINITE.values()}

    def any(self, data: memoryview, dtype: str) -> bool:
        spec = _NONFINITE.get(dtype)
        if spec is None:
            return False
        view_dtype, mask, threshold = spec
        n = len(data) // view_dtype.itemsize
        if n == 0:
            return False
        values = np.frombuffer(data, dtype=view_dtype, count=n)
        scratch = self._scratch[view_dtype.itemsize][:n]
        np.bitwise_and(values, view_dtype.type(mask), out=scratch)
        return bool(scratch.max() >= threshold)


def scan_weights(
    paths: Sequence[str | Path],
    limits: CheckLimits = CheckLimits(),
    scan_nonfinite: bool = True,
    chunk_bytes: int = _CHUNK,
) -> ContentScan:
    """Content hash (see the module docstring) and NaN/infinity scan of local safetensors files.

    Raises CheckFailure HEADER_INVALID / DUPLICATE_TENSOR for malformed files.
    """
    chunk_bytes -= chunk_bytes % 8
    headers = tuple(read_local_header(p, limits) for p in paths)
    located: dict[str, tuple[TensorInfo, int, int]] = {}  # name -> (tensor, file index, data start)
    for i, header in enumerate(headers):
        for t in header.tensors:
            if t.name in located:
                raise CheckFailure("DUPLICATE_TENSOR", f"tensor {t.name!r} is in more than one file")
            located[t.name] = (t, i, header.data_start)

    h = hashlib.sha256(CONTENT_HASH_PREFIX)
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    scanner = _NonfiniteScanner(chunk_bytes) if scan_nonfinite else None
    nonfinite: list[str] = []
    params = nbytes = 0
    files = [open(p, "rb", buffering=0) for p in paths]
    try:
        for name in sorted(located):
            t, i, data_start = located[name]
            meta = json.dumps([t.name, t.dtype, list(t.shape)], ensure_ascii=False, separators=(",", ":")).encode()
            h.update(struct.pack("<Q", len(meta)))
            h.update(meta)
            h.update(struct.pack("<Q", t.nbytes))
            f = files[i]
            f.seek(data_start + t.begin)
            remaining = t.nbytes
            bad = False
            while remaining:
                k = f.readinto(view[: min(chunk_bytes, remaining)])
                if not k:
                    raise CheckFailure("HEADER_INVALID", f"{Path(paths[i]).name} ends inside tensor {name!r}")
                h.update(view[:k])
                if scanner is not None and not bad:
                    bad = scanner.any(view[:k], t.dtype)
                remaining -= k
            if bad:
                nonfinite.append(name)
            params += t.numel
            nbytes += t.nbytes
    finally:
        for f in files:
            f.close()
    return ContentScan("sha256:" + h.hexdigest(), params, nbytes, tuple(nonfinite), headers)


def content_hash(paths: Sequence[str | Path]) -> str:
    """The canonical content hash of local safetensors files (no NaN scan)."""
    return scan_weights(paths, scan_nonfinite=False).content_hash


def safetensors_files(directory: str | Path) -> list[Path]:
    """The `*.safetensors` files directly in a directory, sorted by name."""
    return sorted(Path(directory) / n for n in os.listdir(directory) if n.endswith(".safetensors"))


# -- who owns a hash ---------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A commitment claiming a hash: on-chain commit block, hotkey, commitment string, and the
    commit block's hash (the same-block draw; None: unknown, spec v2's hotkey order)."""

    commit_block: int
    hotkey: str
    commitment: str
    block_hash: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.commit_block, int) or isinstance(self.commit_block, bool) or self.commit_block < 0:
            raise ValueError(f"commit_block must be a non-negative int, got {self.commit_block!r}")
        if not self.hotkey or not self.commitment:
            raise ValueError("a claim needs a hotkey and a commitment")
        if self.block_hash is not None and (not isinstance(self.block_hash, str) or not self.block_hash.strip()):
            raise ValueError(f"block_hash must be a hex string or None, got {self.block_hash!r}")

    @property
    def order(self) -> tuple:
        return (*precedence(self.commit_block, self.block_hash, self.hotkey), self.commitment)

    def precedes(self, other: "Claim") -> bool:
        return self.order < other.order


@dataclass(frozen=True)
class DuplicateRegistry:
    """hash -> owning claim. Immutable: `claim` returns a new registry."""

    owners: Mapping[str, Claim] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "owners", MappingProxyType(dict(self.owners)))

    def owner(self, digest: str) -> Claim | None:
        return self.owners.get(digest)

    def earlier_owner(self, digest: str, claim: Claim) -> Claim | None:
        """The claim owning `digest` if it precedes `claim` (so `claim` is a copy), else None."""
        owner = self.owners.get(digest)
        return owner if owner is not None and owner.precedes(claim) else None

    def claim(self, digest: str, claim: Claim) -> tuple["DuplicateRegistry", Claim, Claim | None]:
        """Record `claim` on `digest`: (new registry, owner, displaced).

        `owner` is the earliest claim seen; `displaced` the previous owner when `claim`
        precedes it (it was checked first, and is now the copy).
        """
        current = self.owners.get(digest)
        if current is None or claim.precedes(current):
            owners = dict(self.owners)
            owners[digest] = claim
            return DuplicateRegistry(owners), claim, current
        return self, current, None

    def copy_lookup(self, claim: Claim) -> Callable[[str], str | None]:
        """For `check_commitment(owner_of=...)`: the earlier owner's commitment string, or None."""

        def owner_of(digest: str) -> str | None:
            owner = self.earlier_owner(digest, claim)
            return owner.commitment if owner is not None else None

        return owner_of

    def to_json(self) -> dict:
        return {
            "version": 1,
            "owners": {d: [c.commit_block, c.hotkey, c.commitment, c.block_hash] for d, c in sorted(self.owners.items())},
        }

    @classmethod
    def from_json(cls, data: dict) -> "DuplicateRegistry":
        """Version 1; an owner without its block hash (written before spec v3) keeps None."""
        if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("owners"), dict):
            raise ValueError("not a version-1 duplicate registry")
        owners = {}
        for d, fields in data["owners"].items():
            b, h, c, *rest = fields
            owners[d] = Claim(int(b), str(h), str(c), str(rest[0]) if rest and rest[0] is not None else None)
        return cls(owners)
