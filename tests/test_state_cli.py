"""distil-state refuses a --state-dir that holds no validator state (exit 2), as docs/cli.md says."""

import pytest

from distil.state import ValidatorState, save_state
from distil.state_cli import main


@pytest.mark.parametrize("command", [["show"], ["show", "--json"], ["requeue", "hk"]])
def test_missing_file_or_empty_state_dir_is_exit_2(command, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "empty").mkdir()
    for state_dir, message in (
        (tmp_path / "nonexistent", "no such directory"),
        (tmp_path / "a-file", "not a directory"),
        (tmp_path / "empty", "no state.json there"),
    ):
        assert main([*command, "--state-dir", str(state_dir)]) == 2
        out = capsys.readouterr()
        assert message in out.err and str(state_dir) in out.err and out.out == ""


def test_a_saved_state_is_shown(tmp_path, capsys):
    save_state(ValidatorState(), tmp_path)
    assert main(["show", "--state-dir", str(tmp_path)]) == 0
    assert "king: -" in capsys.readouterr().out


def test_requeue_of_a_malformed_commitment_is_refused_and_requests_nothing(tmp_path, capsys):
    from distil.scoring.epoch import reconcile

    state, _ = reconcile(ValidatorState(), {"bad": 1}, {"bad": ("not a commitment", 5)}, 10)
    save_state(state, tmp_path)
    assert main(["requeue", "bad", "--state-dir", str(tmp_path)]) == 2
    assert "does not parse" in capsys.readouterr().err
    assert not (tmp_path / "requests").exists()
