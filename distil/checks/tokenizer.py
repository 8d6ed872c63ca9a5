"""The tokenizer battery: a student's tokenizer must encode fixed strings exactly as the teacher's.

Scores are computed on the teacher's token ids, so a student with another tokenizer is
useless to anyone who runs it; a different tokenizer is also the cheapest way to smuggle a
different vocabulary behind the right `vocab_size`. The teacher's answers are computed
once into a `TokenizerReference` (plain data), then every student is compared against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from distil.checks.files import TOKENIZER_FILES
from distil.checks.result import CheckFailure

BATTERY: tuple[str, ...] = (
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n\n\n  indented",
    "def square(x):\n    return x ** 2  # comment\n",
    "1234567890 3.14159 -42 1e-9 0x1F 1,000,000",
    "naïve café résumé Ångström",
    "e\u0301 versus \u00e9",  # NFD and NFC forms of é
    "日本語のテキストと中文文本",
    "한국어 텍스트",
    "Русский текст, ελληνικά",
    "مرحبا بالعالم",
    "emoji 🙂🚀 👩‍👩‍👧‍👦",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "<think>\nstep by step\n</think>\n\nanswer",
    "https://example.com/path?query=1&x=y#frag",
    "\u200bzero width\ufeffBOM\u00a0nbsp",
    "a" * 64,
    "",
)


@dataclass(frozen=True)
class TokenizerReference:
    """What the teacher's tokenizer answers: its length and the battery's encodings
    (for each string: without, then with, special tokens added)."""

    source: str
    vocab_length: int
    encodings: tuple[tuple[int, ...], ...]


def _encodings(tokenizer) -> tuple[tuple[int, ...], ...]:
    out = []
    for text in BATTERY:
        for special in (False, True):
            out.append(tuple(int(i) for i in tokenizer.encode(text, add_special_tokens=special)))
    return tuple(out)


def reference_from_tokenizer(tokenizer, source: str) -> TokenizerReference:
    return TokenizerReference(source=source, vocab_length=len(tokenizer), encodings=_encodings(tokenizer))


def load_tokenizer(path: str | Path):
    """AutoTokenizer from a local directory, never running repo code; TOKENIZER_INVALID on failure."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except Exception as e:  # any failure to load is the repo's problem
        raise CheckFailure(
            "TOKENIZER_INVALID", f"the tokenizer does not load with AutoTokenizer: {type(e).__name__}: {str(e)[:300]}"
        ) from None


def load_reference(source: str | Path, store=None) -> TokenizerReference:
    """The teacher's reference from a local directory, or from a repo (`ns/name` or
    `ns/name@revision`) read through `store` (only the tokenizer files are downloaded)."""
    path = Path(source)
    if path.is_dir():
        return reference_from_tokenizer(load_tokenizer(path), str(path))
    if store is None:
        raise ValueError(f"teacher tokenizer {source!r} is not a directory and no model store was given")
    from distil.commitment import Commitment, validate_repo

    text = str(source)
    if "@" in text:
        commitment = Commitment.parse(text)
    else:
        repo = validate_repo(text)
        commitment = Commitment(repo, store.resolve_revision(repo))
    directory = store.download(commitment, allow_patterns=list(TOKENIZER_FILES))
    return reference_from_tokenizer(load_tokenizer(directory), str(commitment))


def _short(ids, limit: int = 12) -> str:
    ids = list(ids)
    return str(ids[:limit])[:-1] + (", ...]" if len(ids) > limit else "]")


def compare_to_reference(tokenizer, reference: TokenizerReference) -> None:
    """TOKENIZER_MISMATCH naming the first string encoded differently."""
    length = len(tokenizer)
    if length != reference.vocab_length:
        raise CheckFailure(
            "TOKENIZER_MISMATCH",
            f"the tokenizer has {length:,} tokens; the teacher's ({reference.source}) has {reference.vocab_length:,}",
        )
    encodings = _encodings(tokenizer)
    if len(encodings) != len(reference.encodings):
        raise ValueError("the tokenizer reference was built from another battery; rebuild it")
    for i, (mine, theirs) in enumerate(zip(encodings, reference.encodings)):
        if mine != theirs:
            text = BATTERY[i // 2]
            special = " (with special tokens)" if i % 2 else ""
            raise CheckFailure(
                "TOKENIZER_MISMATCH",
                f"{text[:40]!r}{special} encodes to {_short(mine)}; the teacher's tokenizer gives {_short(theirs)}",
            )
