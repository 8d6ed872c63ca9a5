"""Validator state: versioned JSON, atomic writes, backups, refusing what it cannot read."""

import json
import os

import pytest

from distil import SCORING_VERSION
from distil.state import (
    EVALUATED,
    KING,
    MinerRecord,
    StateError,
    ValidatorState,
    load_state,
    save_state,
    state_path,
)

SHA = "cd" * 20


def example_state():
    state = ValidatorState(king="hk1", last_epoch_block=100)
    state.miners["hk1"] = MinerRecord(uid=3, commitment=f"a/b@{SHA}", commit_block=10, status=KING,
                                      kl={"mean": 0.12, "se": 0.01, "median": 0.1, "p99": 0.9, "top1": 0.8, "seed_block": 100},
                                      content_hash="sha256:" + "0" * 64, checked=True, seen_public=True)
    state.miners["hk2"] = MinerRecord(uid=4, commitment=f"c/d@{SHA}", commit_block=11, status=EVALUATED, checked=True)
    state.hash_owners["sha256:" + "0" * 64] = {"hotkey": "hk1", "commit_block": 10, "commitment": f"a/b@{SHA}"}
    state.last_round = {"seed_block": 100, "seed": "0x" + "1" * 64, "models": ["hk1", "hk2"]}
    return state


def test_round_trip_and_shape(tmp_path):
    state = example_state()
    save_state(state, tmp_path)
    data = json.loads(state_path(tmp_path).read_text())
    assert data["version"] == 1 and data["scoring_version"] == SCORING_VERSION and data["king"] == "hk1"
    assert data["miners"]["hk1"]["status"] == "king" and data["miners"]["hk1"]["uid"] == 3
    assert data["miners"]["hk1"]["reason"] is None and data["last_round"]["seed_block"] == 100
    loaded = load_state(tmp_path)
    assert loaded.to_json() == state.to_json()


def test_spec_v3_fields_survive_a_restart_and_a_state_from_before_them_loads(tmp_path):
    state = example_state()
    state.miners["hk1"].commit_block_hash = "0x" + "ab" * 32
    state.hash_owners["sha256:" + "0" * 64]["block_hash"] = "0x" + "ab" * 32
    state.owner_rule_block = 1234
    save_state(state, tmp_path)
    loaded = load_state(tmp_path)
    assert loaded.to_json() == state.to_json() and loaded.owner_rule_block == 1234
    assert loaded.miners["hk1"].commit_block_hash == "0x" + "ab" * 32
    # written before spec v3: no owner_rule_block (None: adopted at the first epoch), no block hashes
    data = json.loads(state_path(tmp_path).read_text())
    del data["owner_rule_block"], data["miners"]["hk1"]["commit_block_hash"]
    del data["hash_owners"]["sha256:" + "0" * 64]["block_hash"]
    state_path(tmp_path).write_text(json.dumps(data))
    old = load_state(tmp_path)
    assert old.owner_rule_block is None and old.miners["hk1"].commit_block_hash is None
    assert ValidatorState().owner_rule_block == 0  # a state begun under the rule


def test_fresh_state_when_none_exists(tmp_path):
    state = load_state(tmp_path / "nothing-here")
    assert state.king is None and state.miners == {}


def test_backups_rotate_and_the_newest_is_current(tmp_path):
    for epoch in range(7):
        state = example_state()
        state.last_epoch_block = epoch
        save_state(state, tmp_path, backups=3)
    assert load_state(tmp_path).last_epoch_block == 6
    backups = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("state.json."))
    assert backups == ["state.json.1", "state.json.2", "state.json.3"]
    assert json.loads((tmp_path / "state.json.1").read_text())["last_epoch_block"] == 5
    assert json.loads((tmp_path / "state.json.3").read_text())["last_epoch_block"] == 3
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "cannot read"),
        ("[]", "not a JSON object"),
        ('{"miners": {}}', "integer 'version'"),
        ('{"version": 99, "miners": {}}', "newer than this validator"),
        ('{"version": 1, "miners": {"x": {"uid": 1}}}', r"miners\.x\.commitment: Field required"),
        ('{"version": 1, "miners": {"x": {"uid": 1, "commitment": "a/b@' + SHA + '", "commit_block": 1, "status": "royal"}}}',
         r"miners\.x\.status: Input should be 'king', 'evaluated'"),
        ('{"version": 1, "miners": {"x": {"uid": 1, "commitment": "a/b@' + SHA + '", "commit_block": 1, "bogus": 2}}}',
         r"miners\.x\.bogus: Extra inputs are not permitted"),
        ('{"version": 1, "king": "ghost", "miners": {}}', "king ghost has no miner record"),
        ('{"version": 1, "miners": null}', r"miners: Input should be a valid dictionary"),
    ],
)
def test_unreadable_state_is_an_error_and_is_kept(tmp_path, content, message):
    path = state_path(tmp_path)
    path.write_text(content)
    with pytest.raises(StateError, match=message):
        load_state(tmp_path)
    assert path.read_text() == content  # never silently overwritten


def _set(path, value):
    def edit(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        data[last] = value
    return edit


def _delete(path):
    def edit(data):
        *parents, last = path
        for key in parents:
            data = data[key]
        del data[last]
    return edit


def _disqualify_king(data):
    data["miners"]["hk1"].update(status="disqualified", reason="INVALID", code="LOAD_KEYS")


# The hostile review's reproductions (issue 9 §5): each used to load and then loop, fail every
# epoch, or send the weights to the wrong miner.
@pytest.mark.parametrize(
    "edit, message",
    [
        (_set(["last_epoch_block"], "200"), r"^[^\n]*state\.json: invalid field last_epoch_block: Input should be a valid integer \(got '200'\)"),
        (_set(["last_epoch_block"], -5), r"last_epoch_block: Input should be greater than or equal to 0"),
        (_delete(["miners", "hk1", "kl", "mean"]), r"miners\.hk1\.kl\.mean: Field required"),
        (_set(["miners", "hk1", "kl", "mean"], float("nan")), r"miners\.hk1\.kl\.mean: Input should be a finite number"),
        (_set(["miners", "hk1", "kl", "mean"], "0.12"), r"miners\.hk1\.kl\.mean: Input should be a valid number \(got '0\.12'\)"),
        (_set(["miners", "hk1", "kl"], "low"), r"miners\.hk1\.kl: Input should be a valid dictionary"),
        (_set(["miners", "hk1", "commitment"], "\x00garbage"), r"miners\.hk1: commitment '\\x00garbage' does not parse"),
        (_set(["miners", "hk2", "uid"], True), r"miners\.hk2\.uid: Input should be a valid integer"),
        (_set(["miners"], None), r"miners: Input should be a valid dictionary"),
        (_set(["hash_owners", "sha256:" + "0" * 64, "commit_block"], "10"), r"hash_owners\.sha256:0+\.commit_block"),
        (_disqualify_king, r"king hk1 has status 'disqualified', not 'king'"),
        (_set(["king"], None), r"king is null but miner\(s\) \['hk1'\] have status 'king'"),
        (_set(["miners", "hk2", "status"], "king"), r"king is hk1 but miners \['hk1', 'hk2'\] have status 'king'"),
        (_set(["miners", "hk2", "reason"], "COPY"), r"miners\.hk2: status 'evaluated' with reason 'COPY'"),
        (_set(["miners", "hk2", "strikes"], -1), r"miners\.hk2\.strikes: Input should be greater than or equal to 0"),
        (_set(["surprise"], 1), r"surprise: Extra inputs are not permitted"),
        (_set(["miners", "hk1", "commit_block_hash"], "0x1234"), r"miners\.hk1\.commit_block_hash: String should match"),
        (_set(["hash_owners", "sha256:" + "0" * 64, "block_hash"], 5), r"hash_owners\.sha256:0+\.block_hash"),
        (_set(["owner_rule_block"], -1), r"owner_rule_block: Input should be greater than or equal to 0"),
    ],
)
def test_every_field_is_validated_and_the_error_names_it(tmp_path, edit, message):
    save_state(example_state(), tmp_path)
    data = json.loads(state_path(tmp_path).read_text())
    edit(data)
    text = json.dumps(data)  # NaN is written as the JSON extension NaN, which json.loads accepts
    state_path(tmp_path).write_text(text)
    with pytest.raises(StateError, match=message) as caught:
        load_state(tmp_path)
    assert "\n" not in str(caught.value)  # one line
    assert state_path(tmp_path).read_text() == text  # repaired nothing


def test_a_state_the_next_start_would_refuse_is_never_written(tmp_path):
    state = example_state()
    state.miners["hk2"].status = KING  # two kings
    with pytest.raises(StateError, match="refusing to save an invalid state"):
        save_state(state, tmp_path)
    assert not state_path(tmp_path).exists()


def test_schema_statuses_and_reasons_match_the_state_constants():
    from typing import get_args

    from distil.state import REASONS, STATUSES
    from distil.state_schema import MinerSchema

    assert set(get_args(MinerSchema.model_fields["status"].annotation)) == set(STATUSES)
    assert set(get_args(get_args(MinerSchema.model_fields["reason"].annotation)[0])) == set(REASONS)


def test_a_crash_while_writing_leaves_the_previous_state(tmp_path, monkeypatch):
    save_state(example_state(), tmp_path)
    before = state_path(tmp_path).read_text()
    newer = example_state()
    newer.last_epoch_block = 999

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        save_state(newer, tmp_path)
    monkeypatch.undo()
    assert state_path(tmp_path).read_text() == before
    assert load_state(tmp_path).last_epoch_block == 100


def test_non_finite_numbers_are_refused_at_write_time(tmp_path):
    state = example_state()
    state.miners["hk2"].kl = {"mean": float("nan")}
    with pytest.raises(StateError, match=r"miners\.hk2\.kl\.mean: Input should be a finite number"):
        save_state(state, tmp_path)
    assert not state_path(tmp_path).exists()


def test_distil_state_show_and_requeue(tmp_path, capsys):
    from distil.state import DISQUALIFIED, INVALID, pending_requests
    from distil.state_cli import main

    state = example_state()
    state.miners["hk2"].status = DISQUALIFIED
    state.miners["hk2"].reason = INVALID
    state.miners["hk2"].code = "LOAD_KEYS"
    state.miners["hk2"].detail = "missing keys: lm_head.weight"
    save_state(state, tmp_path)
    assert main(["show", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "king: hk1" in out and "LOAD_KEYS missing keys: lm_head.weight" in out and "0.120000" in out
    assert main(["show", "--state-dir", str(tmp_path), "--json", "--hotkey", "hk2"]) == 0
    assert json.loads(capsys.readouterr().out)["miners"]["hk2"]["reason"] == "INVALID"
    before = state_path(tmp_path).read_text()
    assert main(["requeue", "hk2", "--state-dir", str(tmp_path)]) == 0
    assert state_path(tmp_path).read_text() == before  # the running validator applies it, not the CLI
    assert [d["hotkey"] for _, d in pending_requests(tmp_path)] == ["hk2"]
    assert main(["requeue", "nobody", "--state-dir", str(tmp_path)]) == 2
    state_path(tmp_path).write_text("{broken")
    assert main(["show", "--state-dir", str(tmp_path)]) == 2
    assert "kept as it is" in capsys.readouterr().err


def test_distil_state_check_lists_every_problem(tmp_path, capsys):
    from distil.state_cli import main

    save_state(example_state(), tmp_path)
    assert main(["check", "--state-dir", str(tmp_path)]) == 0
    assert "valid (2 miners, king hk1)" in capsys.readouterr().out
    data = json.loads(state_path(tmp_path).read_text())
    data["last_epoch_block"] = "200"
    data["miners"]["hk1"]["kl"]["mean"] = "x"
    state_path(tmp_path).write_text(json.dumps(data))
    before = state_path(tmp_path).read_text()
    assert main(["check", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "last_epoch_block: Input should be a valid integer (got '200')" in err
    assert "miners.hk1.kl.mean: Input should be a valid number (got 'x')" in err and "2 problem(s)" in err
    assert state_path(tmp_path).read_text() == before


_FULL_DISK_SCRIPT = """
import resource, signal, sys
from distil.state import MinerRecord, ValidatorState, save_state
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, as a full disk does
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
try:
    save_state(ValidatorState(last_epoch_block=7), sys.argv[1])
    print("saved")
except OSError as e:
    print("refused", e.errno)
"""


def test_a_disk_that_refuses_the_write_leaves_every_file_whole(tmp_path):
    """The disk takes the new (small) state but not the backup copy of the current (large)
    one: the kernel refuses the write half-way (RLIMIT_FSIZE in a child process: EFBIG, a
    refusal of every write path, as ENOSPC is). state.json and every backup stay as they
    were, whole; nothing is left behind; the next save rotates normally."""
    import subprocess
    import sys

    from conftest import ROOT

    big = example_state()
    for i in range(200):  # the current state: larger than the disk lets us write
        big.miners[f"hk{i + 10}"] = MinerRecord(uid=i + 10, commitment=f"e/f{i}@{SHA}", commit_block=12 + i)
    save_state(example_state(), tmp_path)
    save_state(big, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["state.json", "state.json.1"]
    limit = (len(before["state.json"]) + 2_000) // 2  # above the new state, below the current one
    assert limit > 2_000
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_SCRIPT, str(tmp_path), str(limit)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert done.stdout.split() == ["refused", "27"], done.stdout + done.stderr  # EFBIG
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    save_state(ValidatorState(last_epoch_block=7), tmp_path)
    assert load_state(tmp_path).last_epoch_block == 7
    assert (tmp_path / "state.json.1").read_bytes() == before["state.json"]
    assert (tmp_path / "state.json.2").read_bytes() == before["state.json.1"]
