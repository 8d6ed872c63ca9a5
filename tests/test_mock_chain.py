"""The mock chain file shared between processes, coldkeys, and its `register` command."""

import os
import subprocess
import sys
import time

from conftest import ROOT
from template.mock_chain import InMemoryChain, mock_coldkey
from template.wallet import MockWallet, mock_hotkey

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# A validator's chain traffic in another process: advance a block, set weights, repeat until
# told to stop (then once more, so its last write comes after everything the test did).
VALIDATOR_LIKE = """
import pathlib, sys, time
from template.mock_chain import InMemoryChain
from template.wallet import MockWallet
chain, stop = InMemoryChain(path=sys.argv[1]), pathlib.Path(sys.argv[2])
validator, rounds = MockWallet("validator", "v"), 0
while True:
    done = stop.exists()
    chain.advance(1)
    chain.set_weights(validator, [0], [1.0], version_key=1)
    rounds += 1
    if done:
        break
    time.sleep(0.02)
print(rounds)
"""


def repo_naming(models, repo: str, hotkey: str) -> str:
    """A mock repo holding only the distil.json that names `hotkey` (what --skip-checks still
    checks, spec v3); returns its revision."""
    from distil.checks.owner import write_owner_file
    from distil.hub import directory_revision

    path = models / repo
    path.mkdir(parents=True)
    write_owner_file(path, hotkey)
    return directory_revision(path)


def wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the other process never got going"
        time.sleep(0.05)


def test_a_miner_commits_while_another_process_advances_the_chain(tmp_path):
    path, stop = tmp_path / "chain.json", tmp_path / "stop"
    chain = InMemoryChain(start_block=500, path=path)
    chain.register(mock_hotkey("validator", "v"), validator_permit=True)
    other = subprocess.Popen(
        [sys.executable, "-c", VALIDATOR_LIKE, str(path), str(stop)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_until(lambda: InMemoryChain(path=path).block() > 500)
        miner = mock_hotkey("miner", "m1")
        chain.register(miner)
        revision = repo_naming(tmp_path / "models", "ns/model", miner)
        commit = subprocess.run(
            [sys.executable, str(ROOT / "neurons" / "miner.py"), "--mock", "--mock.chain_state", str(path),
             "--wallet.name", "miner", "--wallet.hotkey", "m1", "--neuron.full_path", str(tmp_path / "miner"),
             "--mock.models_dir", str(tmp_path / "models"), "--model-repo", "ns/model", "--revision", revision,
             "--skip-checks", "--yes"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert commit.returncode == 0, commit.stderr
    finally:
        stop.touch()
        out, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    rounds = int(out.strip())
    after = InMemoryChain(path=path)
    # nobody's writes were lost: the registration, the commitment, every block and weight set
    assert after.is_registered(miner)
    record = after.commitment_of(miner)
    assert record is not None and record.data == f"ns/model@{revision}"
    assert 500 < record.block <= 500 + rounds
    assert after.block() == 500 + rounds
    assert len(after.weight_sets) == rounds


def test_an_instance_sees_what_another_wrote_after_it_was_opened(tmp_path):
    path = tmp_path / "chain.json"
    validator_view = InMemoryChain(start_block=10, path=path)
    validator_view.register(mock_hotkey("validator", "v"))
    miner_view = InMemoryChain(path=path)
    miner_view.register(mock_hotkey("miner", "m1"))
    validator_view.advance(5)  # must not undo the registration it did not make
    assert validator_view.metagraph().hotkeys == [mock_hotkey("validator", "v"), mock_hotkey("miner", "m1")]
    assert miner_view.block() == 15


def test_each_hotkey_has_a_coldkey_like_the_real_metagraph():
    chain = InMemoryChain()
    wallet = MockWallet("owner", "h1")
    chain.register(wallet.hotkey.ss58_address, coldkey=wallet.coldkey.ss58_address)
    chain.register(mock_hotkey("other", "h2"))
    coldkeys = chain.metagraph().coldkeys
    assert coldkeys[0] == wallet.coldkey.ss58_address
    # without one, a coldkey of its own: not the hotkey, the same in every process
    assert coldkeys[1] == mock_coldkey(mock_hotkey("other", "h2")) != mock_hotkey("other", "h2")
    assert coldkeys[1].startswith("5") and len(coldkeys[1]) == 48


def test_register_command_then_the_miner_commits(tmp_path):
    path = tmp_path / "chain.json"
    register = [sys.executable, "-m", "template.mock_chain", "register", "--mock.chain_state", str(path),
                "--wallet.name", "me", "--wallet.hotkey", "m1", "--start-block", "500"]
    first = subprocess.run(register, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    said = f"registered me/m1 ({mock_hotkey('me', 'm1')}) as uid 0 on netuid 97 of {path}"
    assert first.stdout.strip() == said and first.stderr == ""  # one sentence, not a bare "0"
    again = subprocess.run(register, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.stdout.strip() == said  # registering twice keeps the uid
    chain = InMemoryChain(path=path)
    assert chain.block() == 500 and chain.metagraph().coldkeys == [MockWallet("me", "m1").coldkey.ss58_address]
    revision = repo_naming(tmp_path / "models", "ns/model", mock_hotkey("me", "m1"))
    commit = subprocess.run(
        [sys.executable, str(ROOT / "neurons" / "miner.py"), "--mock", "--mock.chain_state", str(path),
         "--wallet.name", "me", "--wallet.hotkey", "m1", "--neuron.full_path", str(tmp_path / "miner"),
         "--mock.models_dir", str(tmp_path / "models"), "--model-repo", "ns/model", "--skip-checks", "--yes"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert commit.returncode == 0, commit.stderr
    assert chain.commitment_of(mock_hotkey("me", "m1")).data == f"ns/model@{revision}"
