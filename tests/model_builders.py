"""Build model directories for the pre-check tests: a valid tiny student and hostile variants.

Variants start from the valid directory with hard links (cheap, ~64 MB shared) and
replace whole files; a hard-linked file is never written in place.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from distil import VOCAB_SIZE, tiny

WEIGHTS = "model.safetensors"


# The hotkey the valid model's distil.json names (spec v3): checks without a committing
# hotkey only need the file to name one; a test committing it names this one or rewrites the file.
VALID_OWNER = "5ValidModelOwnerHotkeyForTheTestsXXXXXXXXXXXXXXX"


def build_valid(path: Path, seed: int = 1, owner: str = VALID_OWNER) -> Path:
    """The tiny Qwen3.5 student (248,320 vocab, bf16, ~32M params) with the tiny tokenizer and
    a distil.json naming `owner`."""
    from distil.checks.owner import write_owner_file

    tiny.save_student(path, seed=seed)
    write_owner_file(path, owner)
    return path


def owned_by(src: Path, dst: Path, hotkey: str) -> Path:
    """`src` hard-linked into `dst`, with its own distil.json naming `hotkey`: the same weights
    re-uploaded by another committer (or a model served under a test's hotkey)."""
    from distil.checks.owner import write_owner_file

    clone(src, dst, skip=("distil.json",))
    write_owner_file(dst, hotkey)
    return dst


def clone(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    """Hard-link every file of `src` into a new `dst` (copy when linking fails)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name in skip:
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)
    return dst


def replace_file(path: Path, data: bytes | str) -> None:
    """Write a new file at `path` (unlinking first, so a hard-linked original is untouched)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    replace_file(path, json.dumps(data, indent=2))


def tensors(src: Path) -> dict[str, torch.Tensor]:
    return load_file(str(src / WEIGHTS))


def save_tensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    if path.exists():
        path.unlink()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})


def rewrite_weights(src: Path, dst: Path, transform: Callable[[dict], dict]) -> Path:
    """A clone of `src` whose model.safetensors is `transform(tensors)`."""
    clone(src, dst, skip=(WEIGHTS,))
    save_tensors(dst / WEIGHTS, transform(tensors(src)))
    return dst


def reshard(src: Path, dst: Path, shards: int = 3) -> Path:
    """The same tensors in `shards` files (reverse name order, round robin) with an index."""
    clone(src, dst, skip=(WEIGHTS,))
    state = tensors(src)
    names = sorted(state, reverse=True)
    files = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    weight_map = {}
    for i, fname in enumerate(files):
        part = {n: state[n] for n in names[i::shards]}
        save_file(part, str(dst / fname), metadata={"format": "pt", "shard": str(i)})
        weight_map.update({n: fname for n in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (dst / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )
    return dst


def raw_safetensors(header: bytes | dict, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file from a header (JSON text or object) and a data buffer, with an
    optional lying length prefix."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def header_of(path: Path) -> tuple[dict, bytes]:
    """(header object, data buffer) of a safetensors file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def hostile_tokenizer_json(text: str) -> str:
    """The tiny tokenizer with the ids of 'a' and 'b' swapped: same size, different encodings."""
    data = json.loads(text)
    vocab = data["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    return json.dumps(data)


def tiny_gpt2_config(**overrides):
    """A tiny GPT-2 at the teacher's vocabulary (tied embeddings, learned positions)."""
    from transformers import GPT2Config

    kwargs = dict(vocab_size=VOCAB_SIZE, n_embd=64, n_layer=2, n_head=4, n_positions=2048,
                  bos_token_id=tiny.EOS_ID, eos_token_id=tiny.EOS_ID)
    kwargs.update(overrides)
    return GPT2Config(**kwargs)
