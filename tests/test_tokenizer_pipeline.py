"""The tokenizer is the teacher's file (issue 22 §3): tokenizer.json's normalizer,
pre_tokenizer, decoder and post_processor are compared with the teacher's file as parsed
JSON, in the config step, before anything loads or runs them.

A pre-tokenizer made of many backtracking `Split` regexes leaves every encoding as it was
and costs seconds per string to run (200 of them, 28 KB, held a validator's pre-check for
about an hour): it now fails at once, before any download. Honest tokenizers pass: the
teacher's own file under another model type, whose loader builds another backend.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from distil import tiny
from distil.checks import check_commitment, load_reference
from distil.checks.cli import main as distil_check
from distil.checks.result import CheckFailure
from distil.checks.tokenizer import check_pipeline, first_difference, load_tokenizer, read_tokenizer_json
from distil.commitment import Commitment
from distil.hub import LocalModelStore
from model_builders import clone, replace_file

SLOW_SPLIT = {"type": "Split", "pattern": {"Regex": r"(?:[\s\S]|[\s\S]){0,20}\b\B"}, "behavior": "Isolated",
              "invert": False}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def slow_pre_tokenizer(v: Path, d: Path, steps: int = 200) -> Path:
    """The valid model with 200 never-matching, backtracking Split steps before the teacher's
    pre-tokenizer: the same encodings, seconds of regex work per string and step."""
    clone(v, d)
    data = json.loads((v / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [SLOW_SPLIT] * steps + [data["pre_tokenizer"]]}
    replace_file(d / "tokenizer.json", json.dumps(data))
    return d


def test_a_slow_pre_tokenizer_is_refused_from_the_file_before_download(valid_model, teacher_dir, teacher_reference,
                                                                       tmp_path, capsys):
    path = slow_pre_tokenizer(valid_model, tmp_path / "slow")
    assert (path / "tokenizer.json").stat().st_size > 28_000

    store = LocalModelStore()
    result = check_commitment(store, Commitment("mallory/slow", store.add("mallory/slow", path)),
                              teacher=teacher_reference)
    assert (result.reason, result.code) == ("INVALID", "TOKENIZER_PIPELINE"), result.detail
    assert 'pre_tokenizer.type is "Sequence"' in result.detail and str(teacher_dir) in result.detail
    steps = {s.name: s.status for s in result.steps}
    assert steps["config"] == "fail" and steps["download"] == steps["tokenizer"] == "skip"

    assert distil_check([str(path), "--teacher", str(teacher_dir), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["code"] == "TOKENIZER_PIPELINE"


def _edit(data: dict, change) -> dict:
    data = json.loads(json.dumps(data))
    change(data)
    return data


EDITS = [
    ("normalizer", lambda d: d.update(normalizer={"type": "NFD"})),
    ("normalizer", lambda d: d.update(normalizer=None)),
    ("pre_tokenizer", lambda d: d["pre_tokenizer"].update(add_prefix_space=True)),
    ("pre_tokenizer", lambda d: d["pre_tokenizer"].update(add_prefix_space=1)),  # true is not 1
    ("decoder", lambda d: d.update(decoder={"type": "Fuse"})),
    ("post_processor", lambda d: d["post_processor"]["single"].append({"SpecialToken": {"id": "<|im_end|>",
                                                                                        "type_id": 0}})),
]


@pytest.mark.parametrize("section, change", EDITS, ids=[f"{s}-{i}" for i, (s, _) in enumerate(EDITS)])
def test_each_section_must_be_the_teachers(teacher_dir, teacher_reference, section, change):
    teacher = read_tokenizer_json(teacher_dir)
    check_pipeline(teacher, teacher_reference)  # the teacher's own file passes
    with pytest.raises(CheckFailure) as e:
        check_pipeline(_edit(teacher, change), teacher_reference)
    assert e.value.code == "TOKENIZER_PIPELINE" and e.value.detail.startswith(f"tokenizer.json: {section}")


def test_vocabulary_merges_and_added_tokens_are_left_to_the_inventory(teacher_dir, teacher_reference):
    """What an honest re-save changes (merges notation, added-token flags, the model's
    defaults) is not part of the pipeline; the inventory compares the vocabulary and merges
    after normalising them, the battery the rest."""
    teacher = read_tokenizer_json(teacher_dir)
    resaved = _edit(teacher, lambda d: (d["model"].update(merges=[["Ġ", "t"]], vocab={"a": 0}, dropout=None),
                                                 d["added_tokens"][0].update(normalized=True)))
    check_pipeline(resaved, teacher_reference)


def test_first_difference_names_the_path():
    assert first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}, "x") == "x.a[1].b is 2; the teacher's is 3"
    assert first_difference([1, 2, 3], [1, 2], "x") == "x is a list of 3; the teacher's is a list of 2"
    assert "is true; the teacher's is 1" in first_difference(True, 1, "x")
    assert first_difference({"type": "A", "z": 1}, {"type": "B"}, "x") == 'x.type is "A"; the teacher\'s is "B"'
    assert first_difference({"k": None}, {"k": None}, "x") is None


def test_a_qwen3_student_carrying_the_teachers_exact_files_passes(valid_model, tmp_path):
    """With no tokenizer_class in tokenizer_config.json, transformers picks the loader by model
    type and some loaders rebuild the pre-tokenizer: the teacher (qwen3_5_moe_text) and a qwen3
    student with byte-identical tokenizer files load different backends. Files are compared,
    so the honest student passes every check."""
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(valid_model / name, teacher / name)
    config = json.loads((teacher / "tokenizer_config.json").read_text())
    config.pop("tokenizer_class", None)
    (teacher / "tokenizer_config.json").write_text(json.dumps(config))
    (teacher / "config.json").write_text(json.dumps({"model_type": "qwen3_5_moe_text"}))

    student = tmp_path / "student"
    tiny.save_model(student, tiny.student_config("qwen3"), seed=2, tokenizer=False)
    for name in TOKENIZER_FILES:
        shutil.copyfile(teacher / name, student / name)
    shutil.copyfile(valid_model / "distil.json", student / "distil.json")  # spec v3: names its committer

    def backend_pre_tokenizer(path):
        return json.loads(load_tokenizer(path).backend_tokenizer.to_str())["pre_tokenizer"]

    assert backend_pre_tokenizer(teacher) != backend_pre_tokenizer(student)
    assert distil_check([str(student), "--teacher", str(teacher)]) == 0


def test_the_reference_needs_the_teachers_tokenizer_json(valid_model, tmp_path):
    teacher = clone(valid_model, tmp_path / "teacher", skip=("tokenizer.json",))
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        load_reference(teacher)
    assert load_reference(valid_model).pipeline["pre_tokenizer"]["type"] == "ByteLevel"
