"""neurons/miner.py: dry run, validation, the one-commitment rule, --mock, --status."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import bittensor as bt
import pytest

from conftest import ROOT, free_port, wait_for_port
from model_builders import VALID_OWNER, clone, owned_by
from distil.hub import directory_revision
from distil.protocol import DistilStatus
from template.mock_chain import InMemoryChain
from template.wallet import MockWallet, mock_hotkey

sys.path.insert(0, str(ROOT / "neurons"))
import miner as miner_script  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
MINER = str(ROOT / "neurons" / "miner.py")


def run_cli(*args):
    return subprocess.run([sys.executable, MINER, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_dry_run_prints_the_exact_commitment_as_last_line():
    result = run_cli("--dry-run", "--model-repo", "ns/model", "--revision", SHA, "--skip-checks")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"ns/model@{SHA}"
    assert "the pre-checks would not run" in result.stderr


def test_repo_at_revision_gets_a_hint_to_use_revision():
    result = run_cli("--dry-run", "--model-repo", f"ns/model@{SHA}")
    assert result.returncode == 2 and result.stdout == ""
    assert f"to pin a revision, pass --model-repo ns/model --revision {SHA}" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model-repo", "ns/mo@del", "--revision", SHA], "not a valid Hugging Face repo id"),
        (["--model-repo", "nsmodel", "--revision", SHA], "one '/'"),
        (["--model-repo", "ns/model", "--revision", "main"], "not a commit sha"),
        (["--model-repo", "ns/model", "--revision", SHA.upper()], "upper-case"),
        (["--model-repo", "ns/model", "--revision", SHA[:12]], "12 hex characters"),
    ],
)
def test_malformed_input_exits_non_zero_with_a_reason(args, message):
    result = run_cli("--dry-run", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_missing_repo_is_a_usage_error():
    result = run_cli("--dry-run")
    assert result.returncode == 2 and "--model-repo is required" in result.stderr


@pytest.fixture
def mock_world(tmp_path, valid_model, teacher_dir):
    """A mock chain file with the miner's hotkey registered, and a local models directory
    holding a valid tiny model whose distil.json names the miner's hotkey (alice/tiny), a
    second repo (alice/other) and one that fails the pre-checks (alice/bad: remote code)."""
    models = tmp_path / "models"
    model_dir = owned_by(valid_model, models / "alice" / "tiny", mock_hotkey("miner", "m1"))
    (models / "alice" / "other").mkdir()
    (models / "alice" / "other" / "config.json").write_text("{}")
    bad = owned_by(valid_model, models / "alice" / "bad", mock_hotkey("miner", "m1"))
    (bad / "modeling_evil.py").write_text("import os\n")
    chain_file = tmp_path / "chain.json"
    chain = InMemoryChain(start_block=500, path=chain_file)
    chain.register(mock_hotkey("miner", "m1"))
    return {
        "chain": chain_file,
        "models": models,
        "args": [
            "--mock",
            "--mock.chain_state", str(chain_file),
            "--mock.models_dir", str(models),
            "--wallet.name", "miner",
            "--wallet.hotkey", "m1",
            "--neuron.full_path", str(tmp_path / "state"),
            "--teacher", str(teacher_dir),
        ],
        "revision": directory_revision(model_dir),
    }


def test_mock_commit_pins_the_current_revision_and_reads_it_back(mock_world, capsys):
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny", "--yes"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    expected = f"alice/tiny@{mock_world['revision']}"
    assert out.out.splitlines()[-1] == expected
    record = InMemoryChain(path=mock_world["chain"]).commitment_of(mock_hotkey("miner", "m1"))
    assert (record.data, record.block) == (expected, 500)
    state = mock_world["args"][mock_world["args"].index("--neuron.full_path") + 1]
    assert not Path(state).exists()  # a one-shot commit leaves no (empty) neuron folder behind


def test_status_on_a_missing_chain_file_names_it_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "chain.json"
    rc = miner_script.main(["--mock", "--mock.chain_state", str(missing), "--wallet.name", "me", "--wallet.hotkey", "m1",
                            "--neuron.full_path", str(tmp_path / "state"), "--status"])
    err = capsys.readouterr().err
    assert rc == 2 and f"--mock.chain_state {missing}: no such chain file" in err
    assert "python -m template.mock_chain register" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no chain file, no .lock, no state folder


def test_one_commitment_per_hotkey_forever(mock_world, capsys):
    assert miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny", "--yes"]) == 0
    capsys.readouterr()
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/other", "--yes"])
    err = capsys.readouterr().err
    assert rc == 2  # a refusal of the hotkey, not a verdict on the model
    assert "already committed" in err and "register a new hotkey" in err
    record = InMemoryChain(path=mock_world["chain"]).commitment_of(mock_hotkey("miner", "m1"))
    assert record.data.startswith("alice/tiny@")


def test_unregistered_hotkey_is_refused_with_instructions(mock_world, capsys):
    args = [a if a != "m1" else "unregistered" for a in mock_world["args"]]
    rc = miner_script.main([*args, "--model-repo", "alice/tiny", "--revision", SHA, "--yes"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not registered" in err and "python -m template.mock_chain register" in err and "btcli" not in err


def test_unknown_repo_in_mock_store(mock_world, capsys):
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/nope", "--yes"])
    assert rc == 1 and "not found" in capsys.readouterr().err


def test_confirmation_is_required_without_yes(mock_world, tmp_path):
    config = miner_script.parse_config(miner_script.Miner.build_parser(), [*mock_world["args"], "--model-repo", "alice/tiny"])
    miner = miner_script.Miner(config, setup_logs=False)
    commitment = miner_script.build_commitment(config)
    with pytest.raises(miner_script.NotConfirmed):
        miner.commit(commitment, confirm=lambda prompt: "n")
    assert miner.current_commitment() is None
    prompts = []
    stored = miner.commit(commitment, confirm=lambda prompt: prompts.append(prompt) or "yes")
    assert stored == str(commitment) and "cannot be changed" in prompts[0]


def test_not_a_terminal_and_no_yes_refuses(mock_world, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny"])
    assert rc == 2 and "--yes" in capsys.readouterr().err


def test_not_a_terminal_and_no_yes_refuses_before_the_prechecks(mock_world, capsys, monkeypatch):
    """The pre-checks download the model: no point when the commit will be refused anyway."""
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/bad"])
    err = capsys.readouterr().err
    assert rc == 2 and "--yes" in err and "nothing checked" in err
    assert "pre-checks" not in err and "REMOTE_CODE" not in err


def test_dry_run_runs_the_prechecks_the_commit_would(mock_world, capsys):
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/bad", "--dry-run"])
    out = capsys.readouterr()
    assert rc == 1 and out.out == ""
    assert "the commit would be refused" in out.err and "REMOTE_CODE" in out.err
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny", "--dry-run"])
    out = capsys.readouterr()
    assert rc == 0 and "pre-checks passed" in out.err and "the commit would write" in out.err
    assert InMemoryChain(path=mock_world["chain"]).commitment_of(mock_hotkey("miner", "m1")) is None


def test_dry_run_in_mock_resolves_revision_from_the_local_store(mock_world, capsys):
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny", "--dry-run"])
    assert rc == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"alice/tiny@{mock_world['revision']}"


def test_status_asks_each_validator_over_a_real_axon(mock_world, capsys, no_external_ip):
    chain = InMemoryChain(path=mock_world["chain"])
    validator = MockWallet("validator", "v")
    chain.register(validator.hotkey.ss58_address, validator_permit=True)

    def forward(synapse: DistilStatus) -> DistilStatus:
        return synapse.fill({"status": "pending", "detail": "waiting for the next round", "king_hotkey": "5King"})

    def blacklist(synapse: DistilStatus) -> Tuple[bool, str]:
        return (not chain.is_registered(synapse.dendrite.hotkey), "registered only")

    port = free_port()
    axon = bt.Axon(wallet=validator, port=port, ip="127.0.0.1", external_ip="127.0.0.1")
    axon.attach(forward_fn=forward, blacklist_fn=blacklist)
    axon.start()
    try:
        wait_for_port(port)
        chain.serve_axon(validator, axon)
        rc = miner_script.main([*mock_world["args"], "--status"])
    finally:
        axon.stop()
    out = capsys.readouterr().out
    assert rc == 0
    assert validator.hotkey.ss58_address in out
    assert "status=pending" in out and "waiting for the next round" in out and "king=5King" in out
    assert f"hotkey {mock_hotkey('miner', 'm1')}: registered as uid 0 on netuid 97; commitment: none" in out


def test_status_prints_a_hostile_validators_answer_escaped(mock_world, capsys, no_external_ip):
    """Issue 25 §4: a validator is a peer; its answer cannot forge, erase or hide lines on the miner's
    terminal. One answers within the bounds with control characters, one with a 1 MiB detail."""
    chain = InMemoryChain(path=mock_world["chain"])
    forged = "2026-12-05 00:00:00 | INFO | template.base.validator | weights set: {6: 1.0}"
    hostile = f"\x1b[2K\r{forged}\n\x1b[8mhidden\x9b31m\u202e"
    answers = {"sly": dict(status=hostile[:16], detail=hostile, king_hotkey=hostile[:48], commitment=hostile),
               "huge": dict(status="king", detail="d" * (1 << 20) + hostile)}
    axons = []
    try:
        for name, answer in answers.items():
            wallet = MockWallet("validator", name)
            chain.register(wallet.hotkey.ss58_address, validator_permit=True)

            def forward(synapse: DistilStatus, answer=answer) -> DistilStatus:
                synapse.__dict__.update(answer)  # past pydantic's checks: what a modified validator can send
                return synapse

            port = free_port()
            axon = bt.Axon(wallet=wallet, port=port, ip="127.0.0.1", external_ip="127.0.0.1")
            axon.attach(forward_fn=forward)
            axon.start()
            axons.append(axon)
            wait_for_port(port)
            chain.serve_axon(wallet, axon)
        rc = miner_script.main([*mock_world["args"], "--status"])
    finally:
        for axon in axons:
            axon.stop()
    out = capsys.readouterr().out
    assert rc == 0
    assert not any(c in out for c in "\x1b\r\x9b\u202e") and all(len(line) <= 2000 for line in out.splitlines())
    assert not any(line.startswith("2026-12-05") for line in out.splitlines())
    sly = next(line for line in out.splitlines() if line.startswith(MockWallet("validator", "sly").hotkey.ss58_address))
    assert "\\x1b[2K\\r2026-12-05 00:00:00 | INFO | template.base.validator | weights set: {6: 1.0}\\n\\x1b[8mhidden" in sly
    huge = next(line for line in out.splitlines() if line.startswith(MockWallet("validator", "huge").hotkey.ss58_address))
    assert "no answer (422" in huge and "at most 1000 characters" in huge and len(huge) < 1000  # refused whole


def test_status_with_no_validators_shows_the_chain_record_and_fails(mock_world, capsys):
    assert miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny", "--yes"]) == 0
    capsys.readouterr()
    assert miner_script.main([*mock_world["args"], "--status"]) == 2  # nobody answered: try again, no verdict
    out = capsys.readouterr()
    assert "no validator is serving" in out.out and "no validator answered" in out.err
    own = f"hotkey {mock_hotkey('miner', 'm1')}: registered as uid 0 on netuid 97; "
    assert own + f"commitment: alice/tiny@{mock_world['revision']} (block 500)" in out.out
    InMemoryChain(path=mock_world["chain"]).deregister(mock_hotkey("miner", "m1"))
    assert miner_script.main([*mock_world["args"], "--status"]) == 2
    assert "NOT registered on netuid 97" in capsys.readouterr().out


def test_a_model_failing_the_prechecks_is_not_committed(mock_world, capsys):
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/bad", "--yes"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "pre-checks failed: REMOTE_CODE" in err and "modeling_evil.py" in err and "nothing committed" in err
    assert InMemoryChain(path=mock_world["chain"]).commitment_of(mock_hotkey("miner", "m1")) is None


def test_skip_checks_commits_anyway_with_a_loud_warning(mock_world, capsys):
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/bad", "--yes", "--skip-checks"])
    out = capsys.readouterr()
    assert rc == 0 and "WARNING: --skip-checks" in out.err
    assert out.out.splitlines()[-1].startswith("alice/bad@")


def test_prechecks_need_the_teacher_tokenizer(mock_world, capsys):
    args = [a for a in mock_world["args"]]
    i = args.index("--teacher")
    del args[i : i + 2]  # the mock store has no Qwen/Qwen3.5-35B-A3B
    rc = miner_script.main([*args, "--model-repo", "alice/tiny", "--yes"])
    err = capsys.readouterr().err
    assert rc == 2 and "could not load the teacher's tokenizer" in err and "--teacher" in err  # an argument, not a verdict
    assert InMemoryChain(path=mock_world["chain"]).commitment_of(mock_hotkey("miner", "m1")) is None


def test_prechecks_run_on_the_pinned_revision(mock_world, capsys):
    """A --revision that the store does not hold is refused before anything is written."""
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny", "--revision", SHA, "--yes"])
    err = capsys.readouterr().err
    assert rc == 1 and "REVISION_NOT_FOUND" in err


def test_status_without_internet_is_a_clear_error_and_mock_needs_none(monkeypatch):
    from bittensor.utils import networking

    def offline():
        raise networking.ExternalIPNotFound("no route")

    monkeypatch.setattr(networking, "get_external_ip", offline)
    with pytest.raises(miner_script.StatusUnavailable, match="needs internet access"):
        miner_script.make_dendrite(MockWallet("m", "h"))
    dendrite = miner_script.make_dendrite(MockWallet("m", "h"), mock=True)
    assert dendrite.external_ip == "127.0.0.1"
    assert networking.get_external_ip is offline  # the lookup is restored


# -- spec v3: the ownership file (issue 23 §2) -------------------------------------------------


def test_write_owner_names_this_wallets_hotkey(mock_world, tmp_path, capsys):
    target = clone(mock_world["models"] / "alice" / "tiny", tmp_path / "upload", skip=("distil.json",))
    rc = miner_script.main([*mock_world["args"], "--write-owner", str(target)])
    out = capsys.readouterr()
    assert rc == 0 and out.out.strip() == str(target / "distil.json")
    assert json.loads((target / "distil.json").read_text()) == {"hotkey": mock_hotkey("miner", "m1")}
    assert "upload it with the model" in out.err
    assert miner_script.main([*mock_world["args"], "--write-owner", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.parametrize("skip_checks", [False, True])
def test_a_repo_naming_another_hotkey_or_none_is_not_committed(mock_world, tmp_path, capsys, skip_checks):
    """The repo's distil.json must name the wallet's hotkey, even with --skip-checks: a commitment
    that does not is INVALID for validators whatever its weights."""
    models = mock_world["models"]
    clone(valid := models / "alice" / "tiny", models / "alice" / "nofile", skip=("distil.json",))
    owned_by(valid, models / "alice" / "theirs", VALID_OWNER)
    extra = ["--skip-checks"] if skip_checks else []
    for repo, code in (("alice/nofile", "OWNER_MISSING"), ("alice/theirs", "OWNER_MISMATCH")):
        rc = miner_script.main([*mock_world["args"], "--model-repo", repo, "--yes", *extra])
        err = capsys.readouterr().err
        assert rc == 1 and code in err and "nothing committed" in err, err
        assert InMemoryChain(path=mock_world["chain"]).commitment_of(mock_hotkey("miner", "m1")) is None
    # the dry run (no wallet) checks that the file names a hotkey, and says which
    rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/theirs", "--dry-run"])
    assert rc == 0 and "pre-checks passed" in capsys.readouterr().err


def test_the_ownership_check_goes_through_the_hub_client(mock_world, tmp_path, capsys, monkeypatch):
    """Against tests/hub_server.py with huggingface_hub's real client (the mock chain stays): the
    miner reads distil.json at the pinned revision and compares it with the wallet's hotkey."""
    from distil.hub import HuggingFaceStore
    from hub_server import HubServer

    with HubServer() as hub:
        mine = hub.add_repo("alice/tiny", mock_world["models"] / "alice" / "tiny")
        theirs = hub.add_repo("alice/theirs", owned_by(mock_world["models"] / "alice" / "tiny", tmp_path / "theirs",
                                                        VALID_OWNER))
        monkeypatch.setattr(miner_script, "model_store",
                            lambda config: HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache"))
        rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/theirs", "--revision", theirs, "--yes",
                                "--skip-checks"])
        err = capsys.readouterr().err
        assert rc == 1 and "OWNER_MISMATCH" in err and mock_hotkey("miner", "m1") in err, err
        assert any(r.path.endswith(f"/{theirs}/distil.json") for r in hub.log)
        assert not [r for r in hub.log if r.path.endswith(".safetensors")]  # nothing else was read
        rc = miner_script.main([*mock_world["args"], "--model-repo", "alice/tiny", "--revision", mine, "--yes",
                                "--skip-checks"])
        assert rc == 0, capsys.readouterr().err
    record = InMemoryChain(path=mock_world["chain"]).commitment_of(mock_hotkey("miner", "m1"))
    assert record.data == f"alice/tiny@{mine}"
