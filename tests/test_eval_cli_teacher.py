"""distil-eval: the dataset default the help promises, and `--round` refusing another teacher."""

import json
import shutil

import pytest

from distil.eval import cli
from distil.eval.args import spec_values
from distil.eval.spec import CLIMBMIX, EvalSpec
from distil.hub import directory_revision
from eval_helpers import model_dir, new_dir

SEED = "0x" + "7a" * 32
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_without_a_prompt_source_the_validators_dataset_is_used(capsys):
    parser = cli.build_parser()
    args = parser.parse_args(["--teacher", "t", "--student", "s", "--seed", SEED])
    assert EvalSpec(**spec_values(args)).dataset == CLIMBMIX
    assert f"{CLIMBMIX} (default)" in parser.format_help().replace("\n", " ").replace("  ", " ")


@pytest.fixture(scope="module")
def scored_round():
    """A round scored in process with the tiny teacher; returns (path of its JSON, the document)."""
    prompts = new_dir("teacher-identity") / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"text": f"Prompt {i} about distillation."}) + "\n" for i in range(3)))
    argv = ["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--prompts-file", str(prompts),
            "--seed", SEED, "--n-prompts", "2", "--max-new-tokens", "3", "--json"]
    out = new_dir("teacher-identity") / "round.json"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert cli.main(argv) == 0
    out.write_text(buffer.getvalue())
    return str(out), json.loads(buffer.getvalue())


def rescore(round_file, teacher, *extra):
    return cli.main(["--teacher", teacher, "--student", model_dir("near"), "--round", round_file, "--json", *extra])


def test_the_round_records_the_teachers_content_revision(scored_round):
    _, doc = scored_round
    assert doc["teacher_identity"] == f"local@{directory_revision(model_dir('teacher'))}"


def test_another_teacher_is_refused_unless_forced(scored_round, capsys):
    path, doc = scored_round
    assert rescore(path, model_dir("student")) == 2
    out = capsys.readouterr()
    assert out.out == "" and "is not the round's teacher" in out.err and "--force" in out.err
    assert rescore(path, model_dir("student"), "--force") == 0
    forced = json.loads(capsys.readouterr().out)
    assert forced["teacher_mismatch"]["recorded"] == doc["teacher_identity"]
    assert forced["teacher_mismatch"]["used"] == f"local@{directory_revision(model_dir('student'))}"


def test_a_copy_of_the_teacher_is_the_same_teacher(scored_round, tmp_path, capsys):
    path, doc = scored_round
    copy = shutil.copytree(model_dir("teacher"), tmp_path / "my-copy-of-the-teacher")
    assert rescore(path, str(copy)) == 0
    again = json.loads(capsys.readouterr().out)
    assert "teacher_mismatch" not in again and again["teacher"] == str(copy)
    assert again["models"] == doc["models"]


def test_a_hub_teacher_is_judged_by_repo_at_revision(scored_round, tmp_path, capsys):
    path, doc = scored_round
    hub_round = tmp_path / "hub-round.json"
    hub_round.write_text(json.dumps({**{k: v for k, v in doc.items() if k != "teacher_identity"},
                                     "teacher": f"Qwen/Teacher@{SHA}"}))
    assert cli.recorded_teacher_identity(json.loads(hub_round.read_text())) == f"Qwen/Teacher@{SHA}"
    assert rescore(str(hub_round), model_dir("teacher")) == 2  # refused before any download or scoring
    assert "is not the round's teacher 'Qwen/Teacher@" in capsys.readouterr().err
    assert rescore(str(hub_round), f"Qwen/Teacher@{'f' * 40}") == 2
    capsys.readouterr()
    unknown = tmp_path / "unknown-round.json"
    unknown.write_text(json.dumps({**doc, "teacher": "/nowhere/teacher", "teacher_identity": None}))
    assert rescore(str(unknown), model_dir("teacher")) == 2
    assert "does not say which content" in capsys.readouterr().err


def test_no_prompt_source_samples_the_default_dataset(monkeypatch, capsys):
    """Leaving out --dataset goes to the validators' dataset (here: a hub that is not there)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    assert cli.main(["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--seed", SEED]) == 2
    err = capsys.readouterr().err  # not the students' fault: exit 2, naming the dataset and the hub
    assert f"cannot get the prompts from the dataset {CLIMBMIX} (hub http://127.0.0.1:9)" in err and "Traceback" not in err
