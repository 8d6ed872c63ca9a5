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


def test_without_state_dir_it_reads_where_the_validator_keeps_its_state(tmp_path, monkeypatch, capsys):
    """The validator's default --neuron.full_path for the same --wallet.name, --wallet.hotkey
    and --netuid (template.config.check_config builds it with the same function)."""
    from template.base import BaseValidatorNeuron
    from template.config import check_config, parse_config

    root = tmp_path / "miners"  # bittensor's default root for neurons, as its environment variable sets it
    monkeypatch.setenv("BT_LOGGING_LOGGING_DIR", str(root))
    config = check_config(parse_config(BaseValidatorNeuron.build_parser(),
                                       ["--wallet.name", "w", "--wallet.hotkey", "h", "--logging.logging_dir", str(root)]))
    assert config.neuron.full_path == str(root / "w" / "h" / "netuid97" / "validator")
    save_state(ValidatorState(last_epoch_block=350), config.neuron.full_path)
    assert main(["show", "--wallet.name", "w", "--wallet.hotkey", "h"]) == 0
    out = capsys.readouterr().out
    assert f"state: {config.neuron.full_path}/state.json" in out and "last epoch block: 350" in out
    assert main(["show"]) == 2  # wallet default/default has no state here: named, with how to point elsewhere
    err = capsys.readouterr().err
    assert "default/default/netuid97/validator: no such directory" in err and "pass --state-dir DIR" in err
