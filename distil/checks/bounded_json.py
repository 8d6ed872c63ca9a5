"""One bounded JSON parser for every JSON file a repo holds (config, tokenizer, index,
generation config, safetensors headers).

Python's `json` recurses once per nesting level (a 100,000-deep list raises RecursionError,
deeper ones can exhaust the C stack), converts digit strings to int without bound (a
5,000-digit integer raises ValueError under the int-str limit), accepts NaN/Infinity, keeps
the last of duplicate keys and decodes lone surrogates (``"\\ud800"``) into strings that
cannot be encoded again. So before `json.loads` sees a byte, a linear pre-scan measures
the nesting depth, the longest number token and the number of values, and refuses any
over its bound; after parsing, NaN/Infinity, duplicate keys and lone surrogates are
refused too. Every refusal is a `JsonRejected` naming what was wrong; callers turn it into
the repo's verdict (MALFORMED_JSON, HEADER_INVALID), never a checker crash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from template.text import printable

# Honest files nest a handful of levels (tokenizer.json about 6) and write numbers of at
# most ~25 characters (a float repr with exponent); the caps leave a wide margin.
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 100
# About a million values in the teacher's tokenizer.json (vocab + merges); 4x that bounds
# the Python objects a file can make us build.
MAX_VALUES = 4_000_000

# A JSON string (escapes included). The closing quote is optional so an unterminated string
# runs to the end in one pass instead of being retried from every later quote.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NUMBER = re.compile(rb"[-+0-9.eE]+")


class JsonRejected(Exception):
    """The bytes are not JSON we accept; `reason` says why, `duplicate_key` is set when a key repeats."""

    def __init__(self, reason: str, duplicate_key: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.duplicate_key = duplicate_key


@dataclass(frozen=True)
class JsonBounds:
    max_bytes: int
    max_depth: int = MAX_DEPTH
    max_number_chars: int = MAX_NUMBER_CHARS
    max_values: int = MAX_VALUES


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs):
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return obj


def _no_constants(name: str):
    raise JsonRejected(f"holds {name}, which is not standard JSON (NaN and Infinity are not allowed)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JsonRejected(f"holds the number {clip(text, 40)}, which overflows a float")
    return value


def prescan(data: bytes, bounds: JsonBounds) -> None:
    """Refuse, in one linear pass and before any parsing, what would make the parser recurse,
    convert or allocate without bound. Exact for valid JSON; for invalid JSON exact up to the
    first syntax error, which is as far as the parser gets."""
    if len(data) > bounds.max_bytes:
        raise JsonRejected(f"{len(data):,} bytes; at most {bounds.max_bytes:,} allowed")
    skeleton = _STRING.sub(b'""', data)  # structure, numbers and literals only
    codes = np.frombuffer(skeleton, dtype=np.uint8)
    opens = (codes == ord("[")) | (codes == ord("{"))
    closes = (codes == ord("]")) | (codes == ord("}"))
    if opens.any():
        depth = int(np.cumsum(opens.astype(np.int64) - closes.astype(np.int64)).max())
        if depth > bounds.max_depth:
            raise JsonRejected(f"nested {depth:,} levels deep; at most {bounds.max_depth} allowed")
    longest = max(map(len, _NUMBER.findall(skeleton)), default=0)
    if longest > bounds.max_number_chars:
        raise JsonRejected(f"holds a {longest:,}-character number; at most {bounds.max_number_chars} allowed")
    values = int(opens.sum()) + skeleton.count(b",")
    if values > bounds.max_values:
        raise JsonRejected(f"holds about {values:,} values; at most {bounds.max_values:,} allowed")


def load_bounded_json(data: bytes, bounds: JsonBounds) -> Any:
    """Parse `data` (UTF-8 JSON) within `bounds`; JsonRejected for anything else. Never raises
    anything but JsonRejected for any input (MemoryError aside, which the bounds make
    proportional to the input)."""
    prescan(data, bounds)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonRejected(f"is not UTF-8 text (byte {e.start})") from None
    try:
        value = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite_float
        )
    except _Duplicate as e:
        key = e.args[0]
        raise JsonRejected(f"repeats the key {clip(key)!r}", duplicate_key=key) from None
    except json.JSONDecodeError as e:
        raise JsonRejected(f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError, TypeError) as e:  # belt and braces: the pre-scan stops these
        raise JsonRejected(f"cannot be parsed: {type(e).__name__}: {clip(str(e))}") from None
    try:
        # Lone surrogates decode into str objects that cannot be encoded again; one C-speed
        # re-serialisation finds any, in keys or values, at any depth.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRejected("holds a string with a lone UTF-16 surrogate escape (not valid Unicode)") from None
    return value


def clip(text: str, limit: int = 120) -> str:
    """A repo's string (a file, tensor or key name) for a message: `template.text.printable`, which
    escapes control characters and cuts it to `limit` characters (repo strings can be megabytes long)."""
    return printable(text, limit)
