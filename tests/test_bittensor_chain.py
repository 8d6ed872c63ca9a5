"""BittensorChain over a stand-in for bittensor's Subtensor (no chain is reachable here).

The stand-in returns what bittensor 10.5 returns: `ExtrinsicResponse` objects (always
truthy, even on failure), `CommitmentOf` values with a `block` and hex-encoded fields,
revealed commitments as (block, text) pairs, and a metagraph with `AxonInfo`s.
"""

import bittensor as bt
import pytest
from bittensor.core.types import ExtrinsicResponse

from template.chain import BittensorChain, ChainError, ExtrinsicRejected, TransientChainError
from template.wallet import MockWallet

SHA = "cd" * 20


class FakeSubtensor:
    chain_endpoint = "ws://127.0.0.1:9944"

    def __init__(self):
        self.calls = []
        self.responses = {}
        self.raise_on = {}

    def _maybe_raise(self, name):
        if name in self.raise_on:
            raise self.raise_on.pop(name)

    def get_current_block(self):
        self._maybe_raise("get_current_block")
        return 1234

    def get_block_hash(self, block):
        return "0x" + f"{block:064x}"

    def query_map(self, module, name, params, block=None):
        assert (module, name, params) == ("Commitments", "CommitmentOf", [97])
        return [
            ("5Alice", {"block": 90, "deposit": 0, "info": {"fields": [{"Raw44": "0x" + f"alice/m@{SHA}".encode().hex()}]}}),
            ("5Bob", {"block": 95, "deposit": 0, "info": {"fields": [{"Raw5": "0x" + b"ab\xffcd".hex()}]}}),
            ("5Broken", {"deposit": 0}),
        ]

    def get_all_revealed_commitments(self, netuid):
        return {"5Carol": ((80, f"carol/m@{SHA}"), (99, f"carol/other@{SHA}"))}

    def set_commitment(self, wallet, netuid, data):
        self.calls.append(("set_commitment", netuid, data))
        return self.responses.get("set_commitment", ExtrinsicResponse(success=True))

    def set_weights(self, wallet, netuid, uids, weights, version_key):
        self._maybe_raise("set_weights")
        self.calls.append(("set_weights", netuid, list(uids), list(weights), version_key))
        return self.responses.get("set_weights", ExtrinsicResponse(success=True))

    def metagraph(self, netuid, lite=True):
        class MG:
            hotkeys = ["5Val", "5Min"]
            coldkeys = ["5ValC", "5MinC"]
            S = [1000.0, 0.0]
            validator_permit = [True, False]
            block = 1234
            axons = [
                bt.AxonInfo(version=1, ip="10.0.0.1", port=8091, ip_type=4, hotkey="5Val", coldkey="5ValC"),
                bt.AxonInfo(version=0, ip="0.0.0.0", port=0, ip_type=4, hotkey="5Min", coldkey="5MinC"),
            ]

        return MG()

    def is_hotkey_registered(self, hotkey, netuid=None):
        return hotkey == "5Val"

    since_last_update = 500

    def get_uid_for_hotkey_on_subnet(self, hotkey, netuid):
        return 0

    def blocks_since_last_update(self, netuid, uid):
        return self.since_last_update

    def weights_rate_limit(self, netuid):
        return 100


@pytest.fixture
def fake():
    return FakeSubtensor()


@pytest.fixture
def chain(fake):
    return BittensorChain(netuid=97, subtensor=fake)


def test_reads(chain):
    assert chain.block() == 1234
    assert chain.block_hash(7) == "0x" + "0" * 63 + "7"
    mg = chain.metagraph()
    assert mg.hotkeys == ["5Val", "5Min"] and mg.block == 1234
    assert [a.hotkey for a in chain.validator_axons()] == ["5Val"]
    assert chain.is_registered("5Val") and not chain.is_registered("5Min")


def test_commitments_plain_and_revealed_with_blocks(chain):
    records = chain.commitment_records()
    assert [(r.hotkey, r.block, r.revealed) for r in records] == [
        ("5Carol", 80, True),
        ("5Alice", 90, False),
        ("5Bob", 95, False),
        ("5Carol", 99, True),
    ]
    bob = next(r for r in records if r.hotkey == "5Bob")
    assert "\ufffd" in bob.data  # invalid bytes stay visible instead of being dropped
    latest = chain.commitments()
    assert latest["5Carol"].data == f"carol/m@{SHA}"  # the first commitment counts
    assert "5Broken" not in latest


def test_failed_extrinsic_is_an_error_even_though_the_response_is_truthy(chain, fake):
    failed = ExtrinsicResponse(success=False, message="Custom error: 12")
    assert bool(failed)  # the SDK trap this guards against
    fake.responses["set_weights"] = failed
    with pytest.raises(ExtrinsicRejected, match="Custom error: 12"):
        chain.set_weights(MockWallet(), [1], [1.0], version_key=5)
    fake.responses["set_commitment"] = ExtrinsicResponse(success=False, message="too long")
    with pytest.raises(ExtrinsicRejected, match="too long"):
        chain.set_commitment(MockWallet(), f"a/b@{SHA}")
    fake.responses.clear()
    chain.set_weights(MockWallet(), [0, 1], [0.0, 1.0], version_key=5)
    assert fake.calls[-1] == ("set_weights", 97, [0, 1], [0.0, 1.0], 5)


def test_weights_too_soon_are_refused_before_submitting(chain, fake):
    from template.chain import WeightsRateLimited

    fake.since_last_update = 40
    with pytest.raises(WeightsRateLimited, match="40 blocks ago"):
        chain.set_weights(MockWallet(), [0], [1.0], version_key=1)
    assert not any(c[0] == "set_weights" for c in fake.calls)


def test_errors_are_classified(chain, fake):
    fake.raise_on["get_current_block"] = TimeoutError("no answer")
    with pytest.raises(TransientChainError, match="no answer"):
        chain.block()
    fake.raise_on["set_weights"] = ValueError("bad")
    with pytest.raises(ChainError) as info:
        chain.set_weights(MockWallet(), [0], [1.0], version_key=1)
    assert not isinstance(info.value, TransientChainError)
    with pytest.raises(ExtrinsicRejected, match="at most 128"):
        chain.set_commitment(MockWallet(), "x" * 200)
    assert not any(c[0] == "set_commitment" for c in fake.calls)  # refused before submitting
