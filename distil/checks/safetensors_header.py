"""Safetensors headers: parse them strictly and judge the tensors they declare.

A safetensors file is ``u64 little-endian N`` + ``N bytes of JSON`` + the data buffer. The
JSON maps tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets
relative to the buffer) plus an optional ``__metadata__`` of strings. The format requires
the buffer to be indexed entirely, without holes or overlaps; we also require it to end
where the file ends, so nothing can hide in trailing bytes.

Everything here is pure: the caller fetches the 8-byte prefix and the header bytes (two
ranged reads, no weight byte) and passes them in.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod
from typing import Sequence

from distil.checks.bounded_json import JsonBounds, JsonRejected, clip, load_bounded_json
from distil.checks.result import CheckFailure, CheckLimits

# Bits per element of every dtype safetensors 0.8 knows.
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
ALLOWED_DTYPES = frozenset({"BF16", "F16"})
# Integer, 8-bit and sub-byte float weights in a language model are quantised weights.
QUANTIZED_DTYPES = frozenset(
    {"U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2"}
)
# Last name components that only quantisation schemes write (GPTQ, AWQ, bitsandbytes,
# FP8 / compressed-tensors, HQQ).
QUANT_TENSOR_SUFFIXES = frozenset(
    {
        "qweight",
        "qzeros",
        "scales",
        "g_idx",
        "absmax",
        "quant_map",
        "nested_absmax",
        "nested_quant_map",
        "SCB",
        "weight_format",
        "weight_scale",
        "weight_scale_inv",
        "input_scale",
        "output_scale",
        "weight_zero_point",
        "weight_packed",
        "weight_shape",
        "weight_global_scale",
        "input_global_scale",
    }
)
QUANT_TENSOR_PREFIXES = ("quant_state", "bitsandbytes__")
INPUT_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight", "embed_in.weight")
OUTPUT_EMBEDDING_SUFFIXES = ("lm_head.weight", "embed_out.weight")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int
    filename: str

    @property
    def numel(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    filename: str
    header_size: int  # N, the JSON's length
    tensors: tuple[TensorInfo, ...]  # in file order
    metadata_bytes: int = 0  # __metadata__, serialised

    @property
    def data_start(self) -> int:
        return 8 + self.header_size


def header_length(prefix: bytes, filename: str, file_size: int, max_header_bytes: int) -> int:
    """N from the file's first 8 bytes, checked against the file size and the cap before any
    of it is read (a header "claiming gigabytes" stops here)."""
    if file_size < 8 or len(prefix) < 8:
        raise CheckFailure("HEADER_INVALID", f"{filename} is {file_size} bytes: too short for a safetensors file")
    (n,) = struct.unpack("<Q", prefix[:8])
    if n > max_header_bytes:
        raise CheckFailure(
            "HEADER_INVALID", f"{filename} claims a {n:,}-byte header; at most {max_header_bytes:,} allowed"
        )
    if n < 2 or 8 + n > file_size:
        raise CheckFailure(
            "HEADER_INVALID", f"{filename} claims a {n:,}-byte header but the file is {file_size:,} bytes"
        )
    return n


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# Real tensors have at most 5 dimensions; byte offsets and dimensions fit in a u64 (the
# format's own integer type). Bounding both keeps `prod(shape)` a small computation.
MAX_RANK = 8
_U64 = 1 << 64
# torch keeps sizes and strides as int64: a shape whose dimensions multiply past it (zeros
# aside, so an empty tensor with no data bytes cannot claim [0, 2**63]) is no tensor at all.
_I64 = 1 << 63


def _fits_int64(shape: list[int]) -> bool:
    return prod(max(d, 1) for d in shape) < _I64


def metadata_bytes(meta: dict[str, str]) -> int:
    """The size `__metadata__` takes serialised (compact JSON, UTF-8)."""
    return len(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def parse_header(raw: bytes, filename: str, file_size: int, max_metadata_bytes: int = 64 * 1024) -> SafetensorsHeader:
    """Parse and validate the N header bytes of a `file_size`-byte safetensors file."""
    n = len(raw)
    bad = lambda why: CheckFailure("HEADER_INVALID", f"{filename}: {why}")  # noqa: E731
    if not raw.startswith(b"{"):
        raise bad("header does not start with '{'")
    try:
        obj = load_bounded_json(raw, JsonBounds(max_bytes=n))
    except JsonRejected as e:
        if e.duplicate_key is not None:
            raise CheckFailure("DUPLICATE_TENSOR", f"{filename}: header repeats the key {clip(e.duplicate_key)!r}") from None
        raise bad(f"header {e.reason}") from None
    if not isinstance(obj, dict):
        raise bad("header is not a JSON object")

    meta = obj.pop("__metadata__", None)
    if meta is not None and not (
        isinstance(meta, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    ):
        raise CheckFailure("HEADER_METADATA", f"{filename}: __metadata__ must map strings to strings")
    meta_size = metadata_bytes(meta) if meta else 0
    if meta_size > max_metadata_bytes:
        raise CheckFailure(
            "HEADER_METADATA",
            f"{filename}: __metadata__ is {meta_size:,} bytes; at most {max_metadata_bytes:,} allowed (data rides in no metadata)",
        )
    if not obj:
        raise bad("header declares no tensors")

    tensors = []
    for name, entry in obj.items():
        if not name:
            raise bad("a tensor has an empty name")
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {clip(name)!r} must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        name_ = clip(name)
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            raise bad(f"tensor {name_!r} has unknown dtype {clip(repr(dtype))}")
        if not (
            isinstance(shape, list) and len(shape) <= MAX_RANK and all(_is_int(d) and 0 <= d < _U64 for d in shape)
        ):
            raise bad(f"tensor {name_!r} has an invalid shape {clip(repr(shape))} (at most {MAX_RANK} dimensions)")
        if not _fits_int64(shape):
            raise bad(f"tensor {name_!r} has a shape {clip(repr(shape))} whose dimensions multiply past 2**63")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) and o < _U64 for o in offsets)):
            raise bad(f"tensor {name_!r} has invalid data_offsets {clip(repr(offsets))}")
        begin, end = offsets
        if not 0 <= begin <= end:
            raise bad(f"tensor {name_!r} has data_offsets {offsets} out of order")
        bits = prod(shape) * DTYPE_BITS[dtype]
        if bits % 8 or end - begin != bits // 8:
            need = f"{bits // 8:,}" if bits % 8 == 0 else f"{bits / 8:,.1f}"
            raise bad(f"tensor {name_!r} ({dtype} {shape}) needs {need} bytes but data_offsets span {end - begin:,}")
        tensors.append(TensorInfo(name, dtype, tuple(shape), begin, end, filename))

    # The buffer must be covered exactly: no holes, no overlaps, nothing after the last tensor.
    buffer = file_size - 8 - n
    position = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin != position:
            what = "overlaps the previous tensor" if t.begin < position else "leaves a hole before it"
            raise bad(f"tensor {clip(t.name)!r} at bytes {t.begin}-{t.end} {what}")
        position = t.end
    if position != buffer:
        raise bad(
            f"tensors cover {position:,} bytes but the data buffer is {buffer:,} bytes"
            + (" (trailing bytes after the last tensor)" if position < buffer else " (file truncated)")
        )
    return SafetensorsHeader(filename=filename, header_size=n, tensors=tuple(tensors), metadata_bytes=meta_size)


def _is_quant_name(name: str) -> bool:
    parts = name.split(".")
    return parts[-1] in QUANT_TENSOR_SUFFIXES or any(p.startswith(QUANT_TENSOR_PREFIXES) for p in parts)


@dataclass(frozen=True)
class TensorSummary:
    params: int
    tensors: int
    dtypes: tuple[str, ...]


def check_tensors(
    headers: Sequence[SafetensorsHeader],
    limits: CheckLimits,
    weight_map: dict[str, str] | None = None,
    hidden_size: int | None = None,
) -> TensorSummary:
    """Across all shards: DUPLICATE_TENSOR, WEIGHT_INDEX (index vs headers), QUANTIZED, DTYPE,
    TOO_MANY_PARAMS (counted here, never from the config), EMBEDDING_SHAPE."""
    metadata = sum(h.metadata_bytes for h in headers)
    if metadata > limits.max_metadata_bytes:
        raise CheckFailure(
            "HEADER_METADATA",
            f"the shards' __metadata__ add up to {metadata:,} bytes; at most {limits.max_metadata_bytes:,} allowed",
        )
    owner: dict[str, str] = {}
    tensors: list[TensorInfo] = []
    for header in headers:
        for t in header.tensors:
            if t.name in owner:
                raise CheckFailure(
                    "DUPLICATE_TENSOR", f"tensor {clip(t.name)!r} is in both {owner[t.name]} and {header.filename}"
                )
            owner[t.name] = header.filename
            tensors.append(t)

    if weight_map is not None:
        wrong = sorted(n for n, f in owner.items() if weight_map.get(n) != f)
        unlisted = sorted(set(weight_map) - set(owner))
        if wrong or unlisted:
            parts = []
            if wrong:
                parts.append(f"tensor(s) not where the index says: {', '.join(clip(n) for n in wrong[:5])}")
            if unlisted:
                parts.append(f"index entries with no tensor: {', '.join(clip(n) for n in unlisted[:5])}")
            raise CheckFailure("WEIGHT_INDEX", "model.safetensors.index.json disagrees with the shards: " + "; ".join(parts))

    quant_names = [t.name for t in tensors if _is_quant_name(t.name)]
    if quant_names:
        raise CheckFailure(
            "QUANTIZED", f"quantisation tensors {', '.join(clip(n) for n in quant_names[:5])}: publish unquantised BF16 or F16 weights"
        )
    quant_dtypes = sorted({t.dtype for t in tensors if t.dtype in QUANTIZED_DTYPES})
    if quant_dtypes:
        example = next(t.name for t in tensors if t.dtype in QUANTIZED_DTYPES)
        raise CheckFailure(
            "QUANTIZED", f"{'/'.join(quant_dtypes)} tensors (e.g. {clip(example)}) are quantised weights; publish BF16 or F16"
        )
    bad = sorted({t.dtype for t in tensors if t.dtype not in ALLOWED_DTYPES})
    if bad:
        example = next(t.name for t in tensors if t.dtype not in ALLOWED_DTYPES)
        raise CheckFailure("DTYPE", f"{'/'.join(bad)} tensors (e.g. {clip(example)}); only BF16 and F16 are allowed")

    params = sum(t.numel for t in tensors)
    if params > limits.max_params:
        raise CheckFailure(
            "TOO_MANY_PARAMS",
            f"{params:,} parameters in the safetensors headers; at most {limits.max_params:,} allowed",
        )

    check_embeddings(tensors, limits.vocab_size, hidden_size)
    return TensorSummary(params=params, tensors=len(tensors), dtypes=tuple(sorted({t.dtype for t in tensors})))


def check_embeddings(tensors: Sequence[TensorInfo], vocab_size: int, hidden_size: int | None) -> None:
    inputs = [t for t in tensors if t.name.endswith(INPUT_EMBEDDING_SUFFIXES)]
    if not inputs:
        raise CheckFailure(
            "EMBEDDING_SHAPE", f"no input embedding tensor (a name ending in {INPUT_EMBEDDING_SUFFIXES[0]})"
        )
    for t in inputs:
        if len(t.shape) != 2 or t.shape[0] != vocab_size:
            raise CheckFailure(
                "EMBEDDING_SHAPE", f"{clip(t.name)} has shape {list(t.shape)}; expected [{vocab_size}, hidden_size]"
            )
        if hidden_size is not None and t.shape[1] != hidden_size:
            raise CheckFailure(
                "EMBEDDING_SHAPE", f"{clip(t.name)} has shape {list(t.shape)} but config.json hidden_size is {hidden_size}"
            )
    for t in tensors:
        if t.name.endswith(OUTPUT_EMBEDDING_SUFFIXES) and (len(t.shape) != 2 or t.shape[0] != vocab_size):
            raise CheckFailure(
                "EMBEDDING_SHAPE", f"{clip(t.name)} has shape {list(t.shape)}; expected [{vocab_size}, hidden_size]"
            )
