"""The in-memory chain behaves like the chain the neurons talk to."""

import json

import pytest

from template.chain import (
    ChainError,
    CommitmentRecord,
    ExtrinsicRejected,
    TransientChainError,
    _decode_commitment_fields,
    earliest_commitments,
)
from template.mock_chain import InMemoryChain, mock_block_hash
from template.wallet import MockWallet, mock_hotkey

SHA = "ab" * 20


@pytest.fixture
def chain():
    c = InMemoryChain(netuid=97, start_block=100, weights_rate_limit=10)
    return c


def wallet(name):
    return MockWallet(name, "h")


def test_blocks_advance_and_hashes_are_deterministic(chain):
    assert chain.block() == 100
    assert chain.advance(5) == 105
    h = chain.block_hash(103)
    assert h.startswith("0x") and len(h) == 66 and int(h, 16) >= 0
    assert h == InMemoryChain(start_block=200).block_hash(103) == mock_block_hash(103)
    assert chain.block_hash(104) != h
    with pytest.raises(ChainError, match="does not exist yet"):
        chain.block_hash(106)
    assert chain.wait_for_block(150) == 150 and chain.block() == 150
    assert chain.wait_for_block(120) == 150  # never goes back


def test_registration_metagraph_and_uid_replacement(chain):
    a, b, c = wallet("a"), wallet("b"), wallet("c")
    assert chain.register(a.hotkey.ss58_address, validator_permit=True, stake=5.0) == 0
    assert chain.register(b.hotkey.ss58_address) == 1
    assert chain.register(a.hotkey.ss58_address) == 0  # idempotent
    mg = chain.metagraph()
    assert mg.hotkeys == [a.hotkey.ss58_address, b.hotkey.ss58_address]
    assert [n.hotkey for n in mg.validators()] == [a.hotkey.ss58_address]
    chain.set_commitment(b, f"ns/m@{SHA}")
    # a new hotkey takes uid 1: the old hotkey's commitment goes with it
    assert chain.register(c.hotkey.ss58_address, uid=1) == 1
    assert chain.metagraph().uid_of(b.hotkey.ss58_address) is None
    assert chain.metagraph().uid_of(c.hotkey.ss58_address) == 1
    assert chain.commitments() == {}
    assert not chain.is_registered(b.hotkey.ss58_address)


def test_commitments_carry_their_block_and_the_size_limit(chain):
    a = wallet("a")
    chain.register(a.hotkey.ss58_address)
    chain.advance(3)
    chain.set_commitment(a, f"ns/m@{SHA}")
    record = chain.commitment_of(a.hotkey.ss58_address)
    assert record == CommitmentRecord(a.hotkey.ss58_address, f"ns/m@{SHA}", 103)
    with pytest.raises(ExtrinsicRejected, match="at most 128"):
        chain.set_commitment(a, "x" * 129)
    assert chain.commitment_of(a.hotkey.ss58_address).data == f"ns/m@{SHA}"
    # 128 bytes exactly fits, counted in bytes not characters
    chain.set_commitment(a, "é" * 64)
    with pytest.raises(ExtrinsicRejected):
        chain.set_commitment(a, "é" * 65)


def test_unregistered_hotkey_cannot_commit_or_set_weights(chain):
    stranger = wallet("stranger")
    with pytest.raises(ExtrinsicRejected, match="not registered"):
        chain.set_commitment(stranger, f"ns/m@{SHA}")
    with pytest.raises(ExtrinsicRejected, match="not registered"):
        chain.set_weights(stranger, [0], [1.0], version_key=1)


def test_revealed_commitments_and_earliest_wins(chain):
    a = wallet("a")
    chain.register(a.hotkey.ss58_address)
    chain.add_revealed_commitment(a.hotkey.ss58_address, "first@x", block=50)
    chain.add_revealed_commitment(a.hotkey.ss58_address, "second@x", block=70)
    chain.put_commitment(a.hotkey.ss58_address, "plain@x", block=60)
    records = chain.commitment_records()
    assert [(r.data, r.block, r.revealed) for r in records] == [
        ("first@x", 50, True),
        ("plain@x", 60, False),
        ("second@x", 70, True),
    ]
    assert chain.commitments()[a.hotkey.ss58_address].data == "first@x"
    assert earliest_commitments([]) == {}


def test_a_commitment_at_a_future_block_appears_when_the_chain_gets_there(chain):
    a = wallet("a")
    chain.register(a.hotkey.ss58_address)
    chain.put_commitment(a.hotkey.ss58_address, "later@x", block=130)
    assert chain.commitments() == {}
    chain.advance(30)
    assert chain.commitments()[a.hotkey.ss58_address].block == 130


def test_weights_rate_limit_and_record(chain):
    v = wallet("v")
    chain.register(v.hotkey.ss58_address, validator_permit=True)
    chain.register(mock_hotkey("m"))
    chain.set_weights(v, [1], [1.0], version_key=7)
    with pytest.raises(ExtrinsicRejected, match="rate limit"):
        chain.set_weights(v, [1], [1.0], version_key=7)
    chain.advance(10)
    chain.set_weights(v, [0, 1], [0.0, 1.0], version_key=7)
    assert [(w.block, w.uids, w.weights, w.version_key) for w in chain.weight_sets] == [
        (100, (1,), (1.0,), 7),
        (110, (0, 1), (0.0, 1.0), 7),
    ]
    with pytest.raises(ExtrinsicRejected, match="do not exist"):
        chain.advance(10)
        chain.set_weights(v, [5], [1.0], version_key=7)
    with pytest.raises(ValueError, match="finite"):
        chain.set_weights(v, [1], [float("nan")], version_key=7)


def test_injected_failures(chain):
    v = wallet("v")
    chain.register(v.hotkey.ss58_address)
    chain.fail_next("set_weights", "timeout")
    chain.fail_next("set_weights", "reject", message="bad extrinsic")
    with pytest.raises(TransientChainError):
        chain.set_weights(v, [0], [1.0], version_key=1)
    with pytest.raises(ExtrinsicRejected, match="bad extrinsic"):
        chain.set_weights(v, [0], [1.0], version_key=1)
    chain.set_weights(v, [0], [1.0], version_key=1)
    assert len(chain.weight_sets) == 1
    assert chain.calls["set_weights"] == 3
    chain.fail_next("metagraph", "timeout", times=2)
    for _ in range(2):
        with pytest.raises(TransientChainError):
            chain.metagraph()
    assert chain.metagraph().n == 1
    with pytest.raises(ValueError):
        chain.fail_next("block", "explode")


def test_persistence_between_processes(tmp_path):
    path = tmp_path / "chain.json"
    a = wallet("a")
    first = InMemoryChain(start_block=10, path=path)
    first.register(a.hotkey.ss58_address, validator_permit=True)
    first.set_commitment(a, f"ns/m@{SHA}")
    first.advance(2)
    first.set_weights(a, [0], [1.0], version_key=3)
    second = InMemoryChain(path=path)
    assert second.block() == 12
    assert second.commitment_of(a.hotkey.ss58_address).block == 10
    assert second.weight_sets[0].version_key == 3
    assert json.loads(path.read_text())["neurons"][0]["hotkey"] == a.hotkey.ss58_address
    path.write_text("{broken")
    with pytest.raises(ChainError, match="cannot read mock chain state"):
        InMemoryChain(path=path)


def test_decode_commitment_fields_keeps_bad_bytes_visible():
    good = {"info": {"fields": [{"Raw12": "0x" + b"ns/m@abc".hex()}]}}
    assert _decode_commitment_fields(good) == "ns/m@abc"
    bad = {"info": {"fields": [{"Raw5": "0x" + (b"ns/m\xff").hex()}]}}
    assert "\ufffd" in _decode_commitment_fields(bad)
    as_list = {"info": {"fields": [[{"Raw3": [[97, 98, 99]]}]]}}
    assert _decode_commitment_fields(as_list) == "abc"
    assert _decode_commitment_fields({"info": {"fields": []}}) == ""
