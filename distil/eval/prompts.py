"""Block-hash-seeded prompts: the seed, the sampler (versioned) and the prompt sources.

The seed of a round is the hash of its seed block, the first block of the epoch window
(`seed_block`): the block *number* is predictable, its hash is not. Every random choice
is a SHA-256 ranking keyed by the seed (`rank`), so the sampler depends on no library's
RNG stream and gives the same prompts on any machine, forever, for a given
`SAMPLER_VERSION`.

Sampler v1 over a corpus of data files:
  1. files = the sorted data files of the dataset at its pinned revision;
  2. the `dataset_shards` files with the smallest sha256(seed | "shard" | file) are read,
     each for its first `rows_per_shard` rows;
  3. rows with empty text (after strip) are dropped; the remaining rows are ranked by
     sha256(seed | "row" | file | row index) and the first `n_prompts` are the prompts,
     in that order.
A JSONL file is one "file" whose lines are its rows (step 2 reads all of it).

Prompt text is cut to `max_prompt_chars` characters, tokenised without a chat template and
with `add_special_tokens=False` (none added; special-token text already in the prompt, such
as `<|endoftext|>`, still becomes its special id: docs/scoring.md), and cut to
`max_prompt_tokens` ids (`tokenize_prompts`). Everything after that is token ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

SAMPLER_VERSION = 1
_HEX = re.compile(r"^[0-9a-f]+$")
DATA_EXTENSIONS = (".parquet", ".jsonl", ".json", ".jsonl.gz", ".json.gz")


def seed_block(block: int, epoch_length: int) -> int:
    """The round's seed block: the first block of the epoch window holding `block`."""
    if epoch_length < 1 or block < 0:
        raise ValueError(f"need block >= 0 and epoch_length >= 1, got {block}, {epoch_length}")
    return block - block % epoch_length


def seed_from_block_hash(block_hash_hex: str) -> str:
    """The round seed: the seed block's hash as lower-case hex without '0x'.

    Raises ValueError for anything that is not hex, so a block number cannot slip in as a
    "seed" by accident (a decimal number is rejected unless it is also valid hex, which is
    why the validator must pass the hash, never the number).
    """
    if not isinstance(block_hash_hex, str):
        raise ValueError(f"seed must be a hex string, got {type(block_hash_hex).__name__}")
    seed = block_hash_hex.strip().lower().removeprefix("0x")
    if not seed or not _HEX.match(seed):
        raise ValueError(f"seed {block_hash_hex!r} is not a hex block hash")
    return seed


def rank_key(seed: str, *parts: str) -> bytes:
    """sha256 over the sampler version, the seed and `parts`: the sort key of every choice."""
    text = "|".join(("distil-sampler", str(SAMPLER_VERSION), seed, *parts))
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass(frozen=True)
class Prompt:
    """One sampled prompt: raw `text` or ready `input_ids`, and where it came from."""

    source_id: str
    text: str | None = None
    input_ids: tuple[int, ...] | None = None


class PromptSource(ABC):
    """Where a round's prompts come from."""

    @abstractmethod
    def sample(self, seed: str, n: int) -> list[Prompt]:
        """`n` prompts chosen by `seed`; the same seed gives the same prompts."""

    @abstractmethod
    def describe(self) -> dict:
        """What identifies this source (name, revision, file digest): part of the resolved spec."""


def _pick(seed: str, rows: list[tuple[str, int, Prompt]], n: int, what: str) -> list[Prompt]:
    ranked = sorted(rows, key=lambda r: rank_key(seed, "row", r[0], str(r[1])))
    if len(ranked) < n:
        raise ValueError(f"{what} has only {len(ranked)} usable prompts, {n} requested")
    return [prompt for _, _, prompt in ranked[:n]]


def _row_prompt(row: dict, source_id: str, text_column: str) -> Prompt | None:
    """A Prompt from a row `{text_column: str}` or `{"input_ids": [...]}`; None if empty."""
    if "input_ids" in row and row["input_ids"] is not None:
        ids = row["input_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ValueError(f"{source_id}: input_ids must be a list of integers")
        return Prompt(source_id, input_ids=tuple(ids)) if ids else None
    text = row.get(text_column)
    if text is None:
        raise ValueError(f"{source_id}: row has neither {text_column!r} nor 'input_ids'")
    if not isinstance(text, str):
        raise ValueError(f"{source_id}: {text_column!r} must be a string")
    return Prompt(source_id, text=text) if text.strip() else None


class JsonlPromptSource(PromptSource):
    """Prompts from a local JSONL file: one `{"text": ...}` or `{"input_ids": [...]}` per line."""

    def __init__(self, path: str | Path, text_column: str = "text"):
        self.path = Path(path)
        self.text_column = text_column

    def _rows(self) -> list[tuple[str, int, Prompt]]:
        rows = []
        with open(self.path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{self.path}:{i + 1}: not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{self.path}:{i + 1}: expected a JSON object")
                prompt = _row_prompt(row, f"{self.path.name}:{i}", self.text_column)
                if prompt is not None:
                    rows.append(("jsonl", i, prompt))  # ranked by line number, not file name
        return rows

    def sample(self, seed: str, n: int) -> list[Prompt]:
        return _pick(seed_from_block_hash(seed), self._rows(), n, f"prompts file {self.path}")

    def describe(self) -> dict:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {"kind": "jsonl", "path": str(self.path), "sha256": digest}


# any valid seed: a start-up check only needs to know that `n` prompts can be drawn
PROBE_SEED = "0" * 64


def prompts_file_problem(path: str | Path, n_prompts: int, flag: str, text_column: str = "text") -> str | None:
    """Why the JSONL prompts file at `path` cannot give `n_prompts` prompts (one line naming
    `flag` and the file), or None. The file is read in full and sampled once: missing, a
    directory, unreadable, not UTF-8, a line that is not a JSON object with text or
    input_ids, too few non-empty lines."""
    where = f"{flag} {path}"
    try:
        JsonlPromptSource(path, text_column).sample(PROBE_SEED, n_prompts)
    except UnicodeDecodeError as e:
        return f"{where}: not UTF-8 text ({e.reason} at byte {e.start})"
    except FileNotFoundError:
        return f"{where}: no such file"
    except IsADirectoryError:
        return f"{where}: a directory, not a JSONL file"
    except OSError as e:
        return f"{where}: cannot read it ({e.strerror or type(e).__name__})"
    except ValueError as e:  # the source's words, the file named once, lines counted from 1
        text = " ".join(str(e).split()).replace(f"prompts file {path} ", "")
        text = re.sub(rf"^{re.escape(str(path))}:(\d+): ", r"line \1: ", text)
        text = re.sub(rf"^{re.escape(Path(path).name)}:(\d+): ", lambda m: f"line {int(m.group(1)) + 1}: ", text)
        return f"{where}: {text}"
    return None


class DatasetPromptSource(PromptSource):
    """Prompts from a corpus read with `datasets` (streaming), cached locally as JSONL.

    `name` is a Hugging Face dataset repo (ClimbMix by default, FineWeb as option) or a
    local folder of parquet/JSONL files; both go through the same code: list the data
    files, choose shards by the seed, stream each chosen file with
    `datasets.load_dataset(<parquet|json>, data_files=[...], streaming=True)` (hub files
    as `hf://datasets/NAME@SHA/FILE`), keep its first `rows_per_shard` texts, cache them
    under `cache_dir/<name>/<revision>/`. A cached shard is never read again.
    """

    def __init__(self, name: str, revision: str = "main", text_column: str = "text", shards: int = 4,
                 rows_per_shard: int = 2048, data_dir: str = "", cache_dir: str | Path = ""):
        self.name = name
        self.revision = revision
        self.text_column = text_column
        self.shards = shards
        self.rows_per_shard = rows_per_shard
        self.data_dir = data_dir.strip("/")
        self.cache_dir = Path(cache_dir or Path.home() / ".cache" / "distil" / "prompts")
        self.local = os.path.isdir(name)
        self._resolved: str | None = None

    # -- where the files are -------------------------------------------------------
    def resolved_revision(self) -> str:
        """The dataset's commit sha (hub), or "local" for a local folder."""
        if self._resolved is None:
            if self.local:
                self._resolved = "local"
            else:
                from huggingface_hub import HfApi

                self._resolved = HfApi().dataset_info(self.name, revision=self.revision).sha
                logger.info(f"dataset {self.name}@{self.revision} resolves to {self._resolved}")
        return self._resolved

    def list_files(self) -> list[str]:
        """Sorted data files (paths relative to the dataset root) under `data_dir`."""
        if self.local:
            root = Path(self.name)
            files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        else:
            from huggingface_hub import HfApi

            files = HfApi().list_repo_files(self.name, repo_type="dataset", revision=self.resolved_revision())
        prefix = f"{self.data_dir}/" if self.data_dir else ""
        files = sorted(f for f in files if f.startswith(prefix) and f.endswith(DATA_EXTENSIONS))
        if not files:
            raise ValueError(f"dataset {self.name!r} has no data files ({', '.join(DATA_EXTENSIONS)}) under {prefix or '/'}")
        return files

    def _url(self, file: str) -> str:
        if self.local:
            return str(Path(self.name) / file)
        return f"hf://datasets/{self.name}@{self.resolved_revision()}/{file}"

    def _cache_path(self, file: str) -> Path:
        safe = lambda s: re.sub(r"[^A-Za-z0-9._-]", "__", s)  # noqa: E731
        name = safe(os.path.abspath(self.name) if self.local else self.name)
        return self.cache_dir / name / safe(self.resolved_revision()) / f"{safe(file)}.{self.rows_per_shard}.jsonl"

    # -- reading -------------------------------------------------------------------
    def read_shard(self, file: str) -> list[str | None]:
        """The first `rows_per_shard` texts of `file` (None for a row without text), cached."""
        cache = self._cache_path(file)
        if cache.exists():
            with open(cache, encoding="utf-8") as f:
                return [json.loads(line) for line in f]
        from datasets import load_dataset

        builder = "parquet" if file.endswith(".parquet") else "json"
        logger.info(f"streaming {self.rows_per_shard} rows of {self.name}/{file}")
        stream = load_dataset(builder, data_files=[self._url(file)], split="train", streaming=True)
        texts = []
        for row in stream:
            text = row.get(self.text_column)
            texts.append(text if isinstance(text, str) else None)
            if len(texts) >= self.rows_per_shard:
                break
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(t) + "\n" for t in texts)
        os.replace(tmp, cache)
        return texts

    def sample(self, seed: str, n: int) -> list[Prompt]:
        seed = seed_from_block_hash(seed)
        files = self.list_files()
        chosen = sorted(files, key=lambda f: rank_key(seed, "shard", f))[: self.shards]
        logger.info(f"seed {seed[:16]}… chose {len(chosen)} of {len(files)} files of {self.name}: {chosen}")
        rows = []
        for file in chosen:
            for i, text in enumerate(self.read_shard(file)):
                if text is not None and text.strip():
                    rows.append((file, i, Prompt(f"{file}:{i}", text=text)))
        return _pick(seed, rows, n, f"dataset {self.name!r} ({len(chosen)} files × {self.rows_per_shard} rows)")

    def describe(self) -> dict:
        return {"kind": "dataset", "name": self.name, "revision": self.resolved_revision(),
                "data_dir": self.data_dir, "text_column": self.text_column,
                "shards": self.shards, "rows_per_shard": self.rows_per_shard}


def tokenize_prompts(prompts: list[Prompt], tokenizer, max_chars: int, max_tokens: int, vocab_size: int) -> list[list[int]]:
    """Token ids of each prompt: text[:max_chars] → ids (no chat template, no special token added) → ids[:max_tokens].

    Prompts given as `input_ids` are only cut to `max_tokens`. Every id must be in
    [0, vocab_size); an empty result is an error naming the prompt.
    """
    out = []
    for p in prompts:
        if p.input_ids is not None:
            ids = list(p.input_ids)
        else:
            ids = tokenizer(p.text[:max_chars], add_special_tokens=False)["input_ids"]
        ids = ids[:max_tokens]
        if not ids:
            raise ValueError(f"prompt {p.source_id} has no tokens")
        bad = [i for i in ids if not 0 <= i < vocab_size]
        if bad:
            raise ValueError(f"prompt {p.source_id} has token ids outside [0, {vocab_size}): {bad[:5]}")
        out.append([int(i) for i in ids])
    return out
