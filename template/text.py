"""One function for every string from outside that a person reads: `printable`.

A miner controls its commitment text, its repo's file and tensor names and what its
model's loader says; a peer controls what it answers over the axon. Printed raw, such a
string can forge whole log lines (a newline, then a fake timestamp), rewrite the line
before it (`\\r`, `ESC[2K`) or hide what follows (`ESC[8m`). Every place that formats such
a string for a person (log lines, the validator's summary, `distil-state show`,
`distil-check`, status answers, W&B tables) passes it through `printable`, which

- escapes the C0 and C1 control characters (U+0000–U+001F, U+007F–U+009F; `\\n`, `\\r`
  and `\\t` by name, the rest as `\\xNN`), the Unicode line and paragraph separators and
  the bidirectional overrides and isolates (as `\\uNNNN`), so that one value is one run of
  visible characters on one line;
- bounds the result to `limit` characters, saying how long the value really was.

Backslashes are left alone, so the function is idempotent: a value escaped when it was
stored (a check's detail) is unchanged when it is printed again.
"""

from __future__ import annotations

import re

DEFAULT_LIMIT = 300  # one field: a hotkey, a commitment, a tensor name, a check's detail
LINE_LIMIT = 2000  # one printed line made of several fields
LOG_LIMIT = 8192  # one log message (the resolved spec, a list of failures)

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PARTIAL_ESCAPE = re.compile(r"\\(?:x[0-9a-f]?|u[0-9a-f]{0,3})?$")


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """`value` as text safe to show a person: control characters escaped, at most `limit` characters.

    A value cut short ends with `…[N characters]`, N being its length before escaping.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit and not _UNSAFE.search(text):
        return text
    escaped = _UNSAFE.sub(_escape, text[:limit])  # never more than `limit` characters of input are scanned
    if len(text) <= limit and len(escaped) <= limit:
        return escaped
    marker = f"…[{len(text):,} characters]"
    kept = _PARTIAL_ESCAPE.sub("", escaped[: max(0, limit - len(marker))])  # no half escape before the marker
    return kept + marker
