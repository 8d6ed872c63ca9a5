"""distil-check's target argument: a directory, a hub repo, or a clear usage error."""

import pytest

from distil.checks.cli import main as distil_check
from distil.checks.cli import resolve_target
from distil.hub import LocalModelStore


@pytest.mark.parametrize("target", ["./nonexistent", "../nonexistent", "{tmp}/nonexistent", "a/b/c", "~/nonexistent-dir"])
def test_a_path_that_does_not_exist_is_no_such_directory(target, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    target = target.format(tmp=tmp_path)
    assert distil_check([target]) == 2
    out = capsys.readouterr()
    assert f"{target}: no such directory" in out.err and out.out == ""


def test_an_empty_target_is_an_error_not_the_current_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert distil_check([""]) == 2
    assert "empty target" in capsys.readouterr().err


def test_a_file_is_not_a_model_directory(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert distil_check([str(tmp_path / "config.json")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_a_repo_id_still_goes_to_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "somewhere"
    model.mkdir()
    (model / "config.json").write_text("{}")
    hub = LocalModelStore()
    revision = hub.add("ns/model", model)
    store, commitment, _ = resolve_target("ns/model", lambda: hub)
    assert store is hub and (commitment.repo, commitment.revision) == ("ns/model", revision)
    store, commitment, description = resolve_target("./somewhere", lambda: hub)
    assert store is not hub and description == str(model.resolve())
