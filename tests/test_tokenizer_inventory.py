"""The tokenizer check compares the vocabulary, the merges and the added/special tokens with
the teacher's directly (TOKENIZER_VOCAB), normalised so that an honest re-save passes, and
keeps the string battery as a second check (issue 9 §6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distil import tiny
from distil.checks.result import CheckFailure
from distil.checks.tokenizer import BATTERY, compare_to_reference, load_reference, load_tokenizer

# Merges whose results never occur in the battery ("qz"), and some that do ("Ġthe").
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("q", "z")]


def save_teacher_tokenizer(path: Path) -> Path:
    """The tiny byte-level tokenizer plus real BPE merges (the tiny one has none)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    vocab.update(tiny.SPECIAL_TOKENS)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tiny.SPECIAL_TOKENS])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = save_teacher_tokenizer(tmp_path_factory.mktemp("tok") / "teacher")
    return path, load_reference(path)


def _edited(src: Path, dst: Path, edit) -> Path:
    tok = load_tokenizer(src)
    tok.save_pretrained(str(dst))  # an honest re-save by transformers, then the edit
    data = json.loads((dst / "tokenizer.json").read_text())
    edit(data)
    (dst / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False))
    return dst


def _check(path: Path, reference) -> None:
    compare_to_reference(load_tokenizer(path), reference)


def test_the_battery_never_meets_the_renamed_entry():
    assert not any("qz" in text or "zq" in text for text in BATTERY)


def test_renamed_entry_and_changed_merge_is_refused_though_the_battery_passes(teacher, tmp_path):
    path, reference = teacher

    def rename(data):
        vocab = data["model"]["vocab"]
        vocab["zq"] = vocab.pop("qz")
        data["model"]["merges"] = [m for m in data["model"]["merges"] if m not in (["q", "z"], "q z")] + [["z", "q"]]

    student = load_tokenizer(_edited(path, tmp_path / "s", rename))
    assert len(student) == reference.vocab_length
    assert [student.encode(t, add_special_tokens=s) for t in BATTERY for s in (False, True)] == \
        [list(e) for e in reference.encodings]  # the battery alone would pass it
    with pytest.raises(CheckFailure) as e:
        compare_to_reference(student, reference)
    assert e.value.code == "TOKENIZER_VOCAB" and "'qz'" in e.value.detail


def test_extra_merge_alone_is_refused(teacher, tmp_path):
    """A merge whose result is not in the vocabulary does not load at all; one that repeats
    an existing merge does, and changes nothing the battery sees."""
    path, reference = teacher
    with pytest.raises(CheckFailure) as e:
        _check(_edited(path, tmp_path / "s", lambda d: d["model"]["merges"].append(["h", "e"])), reference)
    assert e.value.code == "TOKENIZER_VOCAB" and "merge" in e.value.detail


def test_merges_in_another_order_are_refused(teacher, tmp_path):
    path, reference = teacher
    with pytest.raises(CheckFailure) as e:
        _check(_edited(path, tmp_path / "s", lambda d: d["model"]["merges"].reverse()), reference)
    assert e.value.code == "TOKENIZER_VOCAB" and "merge #0" in e.value.detail


def test_other_special_tokens_are_refused(teacher, tmp_path):
    """eos_token named <|im_end|> instead of <|endoftext|>: no battery string shows it."""
    path, reference = teacher
    student = _edited(path, tmp_path / "s", lambda d: None)
    config = json.loads((student / "tokenizer_config.json").read_text())
    config["eos_token"] = "<|im_end|>"
    (student / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckFailure) as e:
        _check(student, reference)
    assert e.value.code == "TOKENIZER_VOCAB" and "special tokens" in e.value.detail


def test_honest_resave_in_the_other_merges_notation_passes(teacher, tmp_path):
    """Merges as "a b" strings instead of pairs, added-token flags changed where they do not
    change encodings (`normalized` under NFC for ASCII tokens): the same tokenizer."""
    path, reference = teacher
    assert all(isinstance(m, list) for m in json.loads((path / "tokenizer.json").read_text())["model"]["merges"])

    def resave(data):
        data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
        for t in data["added_tokens"]:
            t["normalized"] = not t["normalized"]

    resaved = _edited(path, tmp_path / "s", resave)
    assert all(isinstance(m, str) for m in json.loads((resaved / "tokenizer.json").read_text())["model"]["merges"])
    _check(resaved, reference)


def test_the_battery_still_catches_what_the_inventory_does_not(teacher, tmp_path):
    path, reference = teacher
    with pytest.raises(CheckFailure) as e:
        _check(_edited(path, tmp_path / "s", lambda d: d.update(normalizer={"type": "NFD"})), reference)
    assert e.value.code == "TOKENIZER_MISMATCH"
