"""Which files a model repo may hold, which it must hold, and how big they may be.

Pure functions over `RepoMetadata` (names, sizes, symlink flags): nothing is downloaded.
The allow-list is deliberately short: every other file is rejected by name, so teacher
weights cannot ride along as pickle, numpy, GGUF or ONNX, and no code can be loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distil.checks.bounded_json import clip
from distil.checks.result import CheckFailure, CheckLimits
from distil.hub.store import RepoMetadata

CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
SINGLE_WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
# Spec v3: the file naming the committing hotkey (distil.checks.owner).
OWNER_FILE = "distil.json"

TOKENIZER_FILES = (
    TOKENIZER_JSON,
    TOKENIZER_CONFIG,
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
DOC_FILES = ("README.md", "LICENSE", "LICENSE.md", "LICENSE.txt", ".gitattributes")
ALLOWED_NAMES = frozenset((CONFIG, GENERATION_CONFIG, WEIGHTS_INDEX, OWNER_FILE, *TOKENIZER_FILES, *DOC_FILES))
REQUIRED_TOKENIZER = (TOKENIZER_JSON, TOKENIZER_CONFIG)
# Small JSON files read before any download: each is capped at `max_config_bytes`.
CONFIG_FILES = (CONFIG, GENERATION_CONFIG, TOKENIZER_CONFIG, WEIGHTS_INDEX, OWNER_FILE)
# Every JSON file a repo may hold: each is parsed, bounded, before any weight is downloaded
# (the others within `max_small_file_bytes`), so nothing later (transformers, tokenizers)
# meets JSON we have not parsed.
JSON_FILES = tuple(n for n in sorted(ALLOWED_NAMES) if n.endswith(".json"))
# Weight file names: plain characters and a length no file system refuses (a name the
# cache cannot create would fail our disk, not the repo).
_WEIGHT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,115}\.safetensors")

_CODE_SUFFIXES = (".py", ".pyc", ".pyo")
_WHY = {
    (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"): "pickle weights",
    (".npy", ".npz"): "numpy arrays",
    (".gguf", ".ggml"): "GGUF weights",
    (".onnx", ".onnx_data"): "ONNX model",
    (".h5", ".hdf5", ".keras"): "Keras/HDF5 weights",
    (".msgpack", ".flax"): "Flax weights",
    (".tflite", ".pb"): "TensorFlow model",
    (".so", ".dll", ".dylib", ".sh", ".exe"): "executable code",
}


def is_weight_file(name: str) -> bool:
    return "/" not in name and name.endswith(".safetensors")


def _why_forbidden(name: str) -> str:
    if "/" in name:
        return "in a subdirectory"
    if is_weight_file(name):
        return "a weight file name must be letters, digits, '.', '_' or '-', at most 128 characters"
    for suffixes, why in _WHY.items():
        if name.lower().endswith(suffixes):
            return why
    return "not on the allow-list"


def _names(items, limit: int = 8) -> str:
    items = list(items)
    shown = ", ".join(clip(str(i), 240) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


@dataclass(frozen=True)
class FileLayout:
    """The weight files to read (sorted) and whether an index maps tensors to them."""

    weight_files: tuple[str, ...]
    indexed: bool


def check_files(meta: RepoMetadata, limits: CheckLimits) -> FileLayout:
    """SYMLINK, REMOTE_CODE (code files), FORBIDDEN_FILE, MISSING_FILE, FILE_SIZE, WEIGHT_INDEX
    (layout without an index), in that order."""
    names = sorted(meta.names)

    links = [f.name for f in meta.files if f.is_symlink and f.symlink_escapes]
    if links:
        raise CheckFailure(
            "SYMLINK",
            "symlink(s) leading out of the repo or nowhere: "
            + _names(f"{f.name} -> {f.symlink_target}" for f in meta.files if f.name in links),
        )

    code = [n for n in names if n.lower().endswith(_CODE_SUFFIXES)]
    if code:
        raise CheckFailure(
            "REMOTE_CODE",
            f"the repo holds code ({_names(code)}); models are loaded with trust_remote_code=False, "
            "so remove every .py file",
        )

    forbidden = [n for n in names if not (n in ALLOWED_NAMES or (is_weight_file(n) and _WEIGHT_NAME.fullmatch(n)))]
    if forbidden:
        raise CheckFailure(
            "FORBIDDEN_FILE",
            "files not allowed: " + _names(f"{clip(n, 80)!r} ({_why_forbidden(n)})" for n in forbidden)
            + "; allowed: config.json, generation_config.json, *.safetensors and their index, "
            "tokenizer files, distil.json, README.md, LICENSE, .gitattributes",
        )

    weights = tuple(n for n in names if is_weight_file(n))
    missing = []
    if CONFIG not in names:
        missing.append(CONFIG)
    if not weights:
        missing.append(f"{SINGLE_WEIGHTS} (or shards with {WEIGHTS_INDEX})")
    elif WEIGHTS_INDEX not in names and SINGLE_WEIGHTS not in names:
        missing.append(f"{WEIGHTS_INDEX} (needed for the shards {_names(weights)})")
    missing += [n for n in REQUIRED_TOKENIZER if n not in names]
    if missing:
        raise CheckFailure("MISSING_FILE", "missing required file(s): " + ", ".join(missing))

    unknown = [f.name for f in meta.files if f.size is None]
    if unknown:
        raise CheckFailure("FILE_SIZE", f"the store gives no size for {_names(unknown)}")
    for f in meta.files:
        if f.name in CONFIG_FILES and f.size > limits.max_config_bytes:
            raise CheckFailure(
                "FILE_SIZE", f"{f.name} is {f.size:,} bytes; at most {limits.max_config_bytes:,} allowed"
            )
        if not is_weight_file(f.name) and f.size > limits.max_small_file_bytes:
            raise CheckFailure(
                "FILE_SIZE",
                f"{f.name} is {f.size:,} bytes; non-weight files may be at most {limits.max_small_file_bytes:,}",
            )

    if len(weights) > limits.max_weight_files:
        raise CheckFailure(
            "WEIGHT_INDEX", f"{len(weights)} safetensors files; at most {limits.max_weight_files} shards allowed"
        )
    indexed = WEIGHTS_INDEX in names
    if not indexed and weights != (SINGLE_WEIGHTS,):
        raise CheckFailure(
            "WEIGHT_INDEX",
            f"several safetensors files ({_names(weights)}) but no {WEIGHTS_INDEX}: transformers would load "
            f"only {SINGLE_WEIGHTS}; add the index or remove the extra files",
        )
    return FileLayout(weight_files=weights, indexed=indexed)


def check_index(index: dict, layout: FileLayout) -> dict[str, str]:
    """The index's weight_map, checked against the weight files: every shard it names exists
    and every safetensors file is one of its shards (a decoy beside the index is rejected)."""
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckFailure("WEIGHT_INDEX", f"{WEIGHTS_INDEX} has no weight_map object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckFailure("WEIGHT_INDEX", f"{WEIGHTS_INDEX} weight_map must map tensor names to file names")
    shards = set(weight_map.values())
    present = set(layout.weight_files)
    missing = sorted(shards - present)
    if missing:
        raise CheckFailure("WEIGHT_INDEX", f"{WEIGHTS_INDEX} names shard(s) not in the repo: {_names(missing)}")
    stray = sorted(present - shards)
    if stray:
        raise CheckFailure(
            "WEIGHT_INDEX", f"safetensors file(s) not listed in {WEIGHTS_INDEX}: {_names(stray)}"
        )
    return weight_map
