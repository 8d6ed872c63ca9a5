"""The tokenizer check: a student's tokenizer must be the teacher's.

Scores are computed on the teacher's token ids, so a student with another tokenizer is
useless to anyone who runs it; a different tokenizer is also the cheapest way to smuggle a
different vocabulary behind the right `vocab_size`. The teacher's tokenizer is read once
into a `TokenizerReference` (plain data), then every student is compared against it three
times:

0. its file, before anything loads it (TOKENIZER_PIPELINE): the sections of `tokenizer.json`
   that turn text into pieces and back — `normalizer`, `pre_tokenizer`, `decoder`,
   `post_processor` — must equal the teacher's file's, as parsed JSON. The files are compared, not the loaded
   backends: transformers rebuilds the pre-tokenizer for some model types only, so the
   same file loads differently under different configs, and a hostile pre-tokenizer (a
   Sequence of backtracking regexes) costs seconds per string to run but nothing to compare;
1. directly (TOKENIZER_VOCAB): the vocabulary (token → id), the BPE merges in order, the
   added tokens (content → id) and the special tokens. Normalised so that an honest re-save
   passes: merges written as ``"a b"`` strings or as ``["a", "b"]`` pairs are the same
   merges, and added-token flags (``lstrip``, ``rstrip``, ``normalized``, ``single_word``,
   ``special``) are not compared — the special tokens are compared as a set of names;
2. by the string battery (TOKENIZER_MISMATCH): fixed strings must encode to the same ids.
   It covers what the inventory does not (normaliser, pre-tokeniser, post-processor).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distil.checks.bounded_json import clip
from distil.checks.files import TOKENIZER_FILES, TOKENIZER_JSON
from distil.checks.result import CheckFailure, CheckLimits
from distil.hub.store import local_io_failure

# The sections of tokenizer.json, besides the vocabulary and merges, that decide how text
# becomes token ids and back (see `pipeline_of`).
PIPELINE_SECTIONS = ("normalizer", "pre_tokenizer", "decoder", "post_processor")

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
class TokenizerInventory:
    """A tokenizer's vocabulary, merges, added and special tokens, normalised for comparison."""

    model_type: str | None
    vocab: dict  # token → id (the model's own vocabulary, added tokens apart)
    merges: tuple[tuple[str, ...], ...]  # in priority order; each merge as its pair of parts
    added: dict  # added token content → id
    special: tuple[str, ...]  # the special tokens' names, sorted


@dataclass(frozen=True)
class TokenizerReference:
    """What the teacher's tokenizer answers: its length, the battery's encodings (for each
    string: without, then with, special tokens added), its inventory and the pipeline of its
    tokenizer.json (`pipeline_of`). Inventory and pipeline None: not compared, for
    references built by hand."""

    source: str
    vocab_length: int
    encodings: tuple[tuple[int, ...], ...]
    inventory: TokenizerInventory | None = None
    pipeline: dict | None = None


def pipeline_of(tokenizer_json: dict) -> dict:
    """The sections of a parsed tokenizer.json compared with the teacher's file: normalizer,
    pre_tokenizer, decoder, post_processor. The vocabulary, merges and added tokens are the
    inventory's (compared after normalising what an honest re-save changes)."""
    return {name: tokenizer_json.get(name) for name in PIPELINE_SECTIONS}


def _brief(value) -> str:
    if isinstance(value, dict):
        kind = value.get("type")
        return f"an object{f' of type {clip(str(kind), 40)!r}' if isinstance(kind, str) else ''} ({len(value)} keys)"
    if isinstance(value, list):
        return f"a list of {len(value):,}"
    return clip(json.dumps(value), 80)


def first_difference(mine, theirs, where: str) -> str | None:
    """Where two parsed JSON values first differ ("pre_tokenizer.pretokenizers: a list of 201;
    the teacher's: a list of 2"), or None when equal. Types are compared strictly (true is
    not 1), lists in order, objects by key."""
    if type(mine) is not type(theirs):
        return f"{where} is {_brief(mine)}; the teacher's is {_brief(theirs)}"
    if isinstance(mine, dict):
        for key in sorted(set(mine) | set(theirs), key=lambda k: (k != "type", str(k))):  # the kind first
            if key not in theirs:
                return f"{where}.{clip(str(key), 40)} is not in the teacher's file"
            if key not in mine:
                return f"{where}.{clip(str(key), 40)} of the teacher's file is missing"
            found = first_difference(mine[key], theirs[key], f"{where}.{clip(str(key), 40)}")
            if found:
                return found
        return None
    if isinstance(mine, list):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        if len(mine) != len(theirs):
            return f"{where} is {_brief(mine)}; the teacher's is {_brief(theirs)}"
        return None
    return None if mine == theirs else f"{where} is {_brief(mine)}; the teacher's is {_brief(theirs)}"


def check_pipeline(tokenizer_json: dict, reference: TokenizerReference) -> None:
    """TOKENIZER_PIPELINE naming the first difference between the pipeline of a parsed
    tokenizer.json (`pipeline_of`) and the teacher's; nothing when the reference has none."""
    if reference.pipeline is None:
        return
    mine = pipeline_of(tokenizer_json)
    for name in PIPELINE_SECTIONS:
        found = first_difference(mine[name], reference.pipeline[name], name)
        if found:
            raise CheckFailure("TOKENIZER_PIPELINE", f"{TOKENIZER_JSON}: {found} ({reference.source})")


def is_rust_panic(exc: BaseException) -> bool:
    """A panic inside a Rust extension (tokenizers, safetensors) arrives as pyo3's
    PanicException, a BaseException that `except Exception` does not catch."""
    return type(exc).__name__ == "PanicException"


def _panic_failure(exc: BaseException, doing: str) -> CheckFailure:
    # E.g. a pre-tokeniser or normaliser regex with catastrophic backtracking: Oniguruma stops
    # at its retry limit and the tokenizers library panics. Deterministic: the repo's fault.
    return CheckFailure("TOKENIZER_INVALID", f"the tokenizer library panics while {doing}: {str(exc)[:200]}")


def _merge_pair(merge) -> tuple[str, ...]:
    """`"a b"` (the older notation) and `["a", "b"]` (the newer one) as the same pair."""
    if isinstance(merge, str):
        return tuple(merge.split(" ", 1))
    return tuple(str(part) for part in merge)


def inventory_of(tokenizer) -> TokenizerInventory:
    """The inventory of a fast (tokenizer.json) tokenizer; TOKENIZER_INVALID for another kind."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise CheckFailure("TOKENIZER_INVALID", f"{type(tokenizer).__name__} is not a fast (tokenizer.json) tokenizer")
    data = json.loads(backend.to_str())
    model = data.get("model") or {}
    vocab = model.get("vocab") or {}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...], the id is the position
        vocab = {entry[0]: i for i, entry in enumerate(vocab)}
    return TokenizerInventory(
        model_type=model.get("type"),
        vocab=dict(vocab),
        merges=tuple(_merge_pair(m) for m in model.get("merges") or ()),
        added={t["content"]: t["id"] for t in data.get("added_tokens") or ()},
        special=tuple(sorted(set(tokenizer.all_special_tokens))),
    )


def _first_vocab_difference(mine: dict, theirs: dict, what: str) -> str | None:
    for token, i in theirs.items():
        if token not in mine:
            return f"{what} {token!r} (id {i}) of the teacher's is missing"
        if mine[token] != i:
            return f"{what} {token!r} has id {mine[token]}; the teacher's has {i}"
    for token, i in mine.items():
        if token not in theirs:
            return f"{what} {token!r} (id {i}) is not the teacher's"
    return None


def inventory_difference(mine: TokenizerInventory, theirs: TokenizerInventory) -> str | None:
    """The first difference between two inventories, as a sentence (None: the same)."""
    if mine.model_type != theirs.model_type:
        return f"the tokenizer model is {mine.model_type}; the teacher's is {theirs.model_type}"
    problem = _first_vocab_difference(mine.vocab, theirs.vocab, "vocabulary entry")
    if problem:
        return problem
    if mine.merges != theirs.merges:
        for i, (a, b) in enumerate(zip(mine.merges, theirs.merges)):
            if a != b:
                return f"merge #{i} is {' '.join(a)!r}; the teacher's is {' '.join(b)!r}"
        return f"{len(mine.merges):,} merges; the teacher's tokenizer has {len(theirs.merges):,}"
    problem = _first_vocab_difference(mine.added, theirs.added, "added token")
    if problem:
        return problem
    if mine.special != theirs.special:
        return f"special tokens {list(mine.special)}; the teacher's are {list(theirs.special)}"
    return None


def _encodings(tokenizer) -> tuple[tuple[int, ...], ...]:
    out = []
    for text in BATTERY:
        for special in (False, True):
            try:
                ids = tokenizer.encode(text, add_special_tokens=special)
            except BaseException as e:
                if is_rust_panic(e):
                    raise _panic_failure(e, f"encoding {text[:40]!r}") from None
                raise
            out.append(tuple(int(i) for i in ids))
    return tuple(out)


def reference_from_tokenizer(tokenizer, source: str, tokenizer_json: dict | None = None) -> TokenizerReference:
    """The reference of a loaded tokenizer; `tokenizer_json`, the parsed file it was loaded
    from, gives the pipeline students' files are compared with."""
    return TokenizerReference(source=source, vocab_length=len(tokenizer), encodings=_encodings(tokenizer),
                              inventory=inventory_of(tokenizer),
                              pipeline=None if tokenizer_json is None else pipeline_of(tokenizer_json))


def read_tokenizer_json(directory: str | Path, max_bytes: int = CheckLimits.max_small_file_bytes) -> dict:
    """The parsed tokenizer.json of a directory, bounded (MALFORMED_JSON, FILE_SIZE otherwise)."""
    from distil.checks.config import parse_json_object

    with open(Path(directory) / TOKENIZER_JSON, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise CheckFailure("FILE_SIZE", f"{TOKENIZER_JSON} is larger than {max_bytes:,} bytes")
    return parse_json_object(data, TOKENIZER_JSON, max_bytes)


def _reference_of_directory(directory: str | Path, source: str) -> TokenizerReference:
    try:
        tokenizer_json = read_tokenizer_json(directory)
    except FileNotFoundError:
        raise ValueError(f"the teacher's tokenizer {source} has no {TOKENIZER_JSON}: students' files are compared "
                         "with it") from None
    return reference_from_tokenizer(load_tokenizer(directory), source, tokenizer_json)


def load_tokenizer(path: str | Path):
    """AutoTokenizer from a local directory, never running repo code; TOKENIZER_INVALID on failure."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, local_files_only=True)
    except BaseException as e:  # any failure to load is the repo's problem, but our disk's
        if not isinstance(e, Exception) and not is_rust_panic(e):
            raise  # KeyboardInterrupt, SystemExit
        local = local_io_failure(f"loading the tokenizer in {path}", e)
        if local is not None:
            raise local from e  # EIO, EMFILE, ...: LOCAL_IO_ERROR, never TOKENIZER_INVALID
        raise CheckFailure(
            "TOKENIZER_INVALID", f"the tokenizer does not load with AutoTokenizer: {type(e).__name__}: {str(e)[:300]}"
        ) from None


def load_reference(source: str | Path, store=None) -> TokenizerReference:
    """The teacher's reference from a local directory, or from a repo (`ns/name` or
    `ns/name@revision`) read through `store` (only the tokenizer files are downloaded)."""
    path = Path(source)
    if path.is_dir():
        return _reference_of_directory(path, str(path))
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
    return _reference_of_directory(directory, str(commitment))


def _short(ids, limit: int = 12) -> str:
    ids = list(ids)
    return str(ids[:limit])[:-1] + (", ...]" if len(ids) > limit else "]")


def compare_to_reference(tokenizer, reference: TokenizerReference) -> None:
    """TOKENIZER_VOCAB naming the first difference of vocabulary, merges or added/special
    tokens; then TOKENIZER_MISMATCH naming the first string encoded differently."""
    length = len(tokenizer)
    if length != reference.vocab_length:
        raise CheckFailure(
            "TOKENIZER_MISMATCH",
            f"the tokenizer has {length:,} tokens; the teacher's ({reference.source}) has {reference.vocab_length:,}",
        )
    if reference.inventory is not None:
        problem = inventory_difference(inventory_of(tokenizer), reference.inventory)
        if problem:
            raise CheckFailure("TOKENIZER_VOCAB", f"{problem} ({reference.source})")
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
