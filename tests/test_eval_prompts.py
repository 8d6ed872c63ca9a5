"""Block-hash seeds and the prompt sampler: deterministic, seed-driven, bounded."""

import json

import pytest

from distil import VOCAB_SIZE
from distil.eval.prompts import (DatasetPromptSource, JsonlPromptSource, Prompt, rank_key, seed_block,
                                 seed_from_block_hash, tokenize_prompts)
from distil.tiny import EOS_ID, IM_END_ID, build_tokenizer

HASH_A = "0x" + "ab" * 32
HASH_B = "0x" + "cd" * 32


def test_seed_block_is_the_first_block_of_the_epoch_window():
    assert seed_block(12_345, 100) == 12_300
    assert seed_block(12_300, 100) == 12_300
    assert seed_block(99, 100) == 0
    with pytest.raises(ValueError):
        seed_block(5, 0)


def test_seed_is_the_normalised_block_hash():
    assert seed_from_block_hash(HASH_A) == "ab" * 32
    assert seed_from_block_hash(" 0XAB12 ") == "ab12"
    for bad in ("", "0x", "block 12", "12.5", "0xzz"):
        with pytest.raises(ValueError):
            seed_from_block_hash(bad)


def test_rank_key_is_a_pinned_sha256():
    # Pinned value: changing the sampler must bump SAMPLER_VERSION (and this test).
    assert rank_key("ab", "row", "f", "3").hex()[:16] == __import__("hashlib").sha256(
        b"distil-sampler|1|ab|row|f|3").hexdigest()[:16]


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "prompts.jsonl"
    rows = [{"text": f"prompt number {i} " + "x" * i} for i in range(30)]
    rows[4] = {"text": "   "}  # empty: never chosen
    rows[5] = {"input_ids": [1, 2, 3]}
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_jsonl_source_same_seed_same_prompts_other_seed_others(jsonl):
    source = JsonlPromptSource(jsonl)
    a1, a2, b = source.sample(HASH_A, 10), source.sample(HASH_A.upper().replace("0X", "0x"), 10), source.sample(HASH_B, 10)
    assert a1 == a2
    assert a1 != b
    assert all(p.source_id != "prompts.jsonl:4" for p in source.sample(HASH_A, 29))
    assert len({p.source_id for p in source.sample(HASH_A, 29)}) == 29
    with pytest.raises(ValueError, match="only 29 usable prompts"):
        source.sample(HASH_A, 30)
    assert source.describe()["sha256"]


def test_jsonl_source_rejects_malformed_lines(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        JsonlPromptSource(path).sample(HASH_A, 1)
    path.write_text('{"input_ids": [1, "2"]}\n')
    with pytest.raises(ValueError, match="list of integers"):
        JsonlPromptSource(path).sample(HASH_A, 1)


def test_tokenize_cuts_text_then_tokens_without_special_tokens():
    tok = build_tokenizer()
    prompts = [Prompt("a", text="hello world " * 50), Prompt("b", input_ids=tuple(range(10)))]
    ids = tokenize_prompts(prompts, tok, max_chars=20, max_tokens=8, vocab_size=VOCAB_SIZE)
    assert ids[0] == tok("hello world " * 50)["input_ids"][:8]
    assert ids[1] == list(range(8))
    assert len(tokenize_prompts(prompts, tok, max_chars=5, max_tokens=100, vocab_size=VOCAB_SIZE)[0]) == 5  # bytes
    with pytest.raises(ValueError, match="outside"):
        tokenize_prompts([Prompt("c", input_ids=(VOCAB_SIZE,))], tok, 10, 10, VOCAB_SIZE)


def test_special_token_text_in_a_prompt_becomes_its_special_id():
    """What docs/scoring.md says (issue 25 §5): `add_special_tokens=False` adds no special token, but the
    text of one inside a prompt is matched as the tokenizer matches it and becomes its special id, for the
    teacher and every student alike (the round's ids are computed once)."""
    tok = build_tokenizer()
    (ids,) = tokenize_prompts([Prompt("a", text="end<|endoftext|>go<|im_end|>")], tok, 100, 100, VOCAB_SIZE)
    plain = [tok.encode(t, add_special_tokens=False) for t in ("end", "go")]
    assert ids == plain[0] + [EOS_ID] + plain[1] + [IM_END_ID]
    # the literal text, split as ordinary bytes (split_special_tokens=True), would be other ids: not the spec
    literal = tok("<|endoftext|>", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert EOS_ID not in literal and len(literal) > 1


@pytest.fixture
def corpus(tmp_path):
    """A local dataset folder: 3 parquet shards + 1 JSONL shard, read through `datasets`."""
    from datasets import Dataset

    root = tmp_path / "corpus"
    (root / "data").mkdir(parents=True)
    for s in range(3):
        texts = [f"shard {s} row {i}: " + "lorem ipsum " * (i % 5) for i in range(50)]
        texts[7] = ""
        Dataset.from_dict({"text": texts, "id": list(range(50))}).to_parquet(str(root / "data" / f"train-{s:05d}.parquet"))
    (root / "data" / "extra.jsonl").write_text("".join(json.dumps({"text": f"jsonl row {i}"}) + "\n" for i in range(50)))
    (root / "README.md").write_text("not data")
    return root


def test_dataset_source_samples_deterministically_through_datasets_and_caches(corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    source = DatasetPromptSource(str(corpus), shards=2, rows_per_shard=20, cache_dir=cache)
    assert source.list_files() == ["data/extra.jsonl", "data/train-00000.parquet", "data/train-00001.parquet",
                                   "data/train-00002.parquet"]
    first = source.sample(HASH_A, 12)
    assert len(first) == 12 and all(p.text for p in first)
    shards = {p.source_id.rsplit(":", 1)[0] for p in first}
    assert len(shards) == 2  # rows come from the 2 chosen files
    assert all(int(p.source_id.rsplit(":", 1)[1]) < 20 for p in first)  # only leading rows are read
    assert all(p.source_id != "data/train-00000.parquet:7" for p in first)
    # The same seed gives the same prompts, now from the local cache: `datasets` is not called again.
    import datasets

    def no_streaming(*args, **kwargs):
        raise AssertionError("a cached shard was streamed again")

    monkeypatch.setattr(datasets, "load_dataset", no_streaming)
    assert DatasetPromptSource(str(corpus), shards=2, rows_per_shard=20, cache_dir=cache).sample(HASH_A, 12) == first
    # ... and a fresh cache streams again, with the same result.
    monkeypatch.undo()
    assert DatasetPromptSource(str(corpus), shards=2, rows_per_shard=20, cache_dir=tmp_path / "c2").sample(HASH_A, 12) == first


def test_dataset_source_other_seed_other_prompts_and_data_dir(corpus, tmp_path):
    a = DatasetPromptSource(str(corpus), shards=4, rows_per_shard=50, cache_dir=tmp_path / "c").sample(HASH_A, 20)
    b = DatasetPromptSource(str(corpus), shards=4, rows_per_shard=50, cache_dir=tmp_path / "c").sample(HASH_B, 20)
    assert a != b
    source = DatasetPromptSource(str(corpus), data_dir="nope", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="no data files"):
        source.sample(HASH_A, 1)
    desc = DatasetPromptSource(str(corpus), cache_dir=tmp_path / "c").describe()
    assert desc["kind"] == "dataset" and desc["revision"] == "local"
