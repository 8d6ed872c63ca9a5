"""DistilStatus through a real bittensor Axon and Dendrite on 127.0.0.1."""

from typing import Tuple

import bittensor as bt
import pytest

from conftest import free_port, wait_for_port
from distil.protocol import DistilStatus
from template.axon import RateLimiter, registered_only_blacklist
from template.chain import AxonEndpoint
from template.mock_chain import InMemoryChain
from template.wallet import MockWallet


@pytest.fixture
def served(no_external_ip):
    chain = InMemoryChain()
    validator = MockWallet("validator", "v")
    miner = MockWallet("miner", "m")
    chain.register(validator.hotkey.ss58_address, validator_permit=True, stake=1000.0)
    chain.register(miner.hotkey.ss58_address)
    answers = {
        miner.hotkey.ss58_address: {
            "commitment": "alice/student@" + "a" * 40,
            "commit_block": 12,
            "status": "king",
            "kl": 0.1234,
            "rank": 1,
            "king_hotkey": miner.hotkey.ss58_address,
        }
    }
    seen = []

    def forward(synapse: DistilStatus) -> DistilStatus:
        asked = synapse.hotkey or synapse.dendrite.hotkey
        seen.append(asked)
        synapse.hotkey = asked
        return synapse.fill(answers.get(asked, {"status": "unknown"}))

    limiter = RateLimiter(max_requests=3, window_s=3600)
    blacklist = registered_only_blacklist(chain.is_registered, limiter)

    def blacklist_fn(synapse: DistilStatus) -> Tuple[bool, str]:  # typing.Tuple: Axon.attach compares signatures
        return blacklist(synapse)

    port = free_port()
    axon = bt.Axon(wallet=validator, port=port, ip="127.0.0.1", external_ip="127.0.0.1")
    axon.attach(forward_fn=forward, blacklist_fn=blacklist_fn)
    axon.start()
    wait_for_port(port)
    chain.serve_axon(validator, axon)
    yield chain, validator, miner, seen
    axon.stop()


def query(wallet, chain, synapse):
    dendrite = bt.Dendrite(wallet=wallet.hotkey)
    infos = [a.to_axon_info() for a in chain.validator_axons()]
    assert len(infos) == 1
    responses = dendrite.query(infos, synapse, timeout=10, deserialize=False)
    assert isinstance(responses, list) and len(responses) == 1
    return responses[0]


def test_registered_miner_gets_its_status(served):
    chain, validator, miner, seen = served
    response = query(miner, chain, DistilStatus())
    assert response.dendrite.status_code == 200, response.dendrite.status_message
    answer = response.deserialize()
    assert answer["hotkey"] == miner.hotkey.ss58_address
    assert answer["status"] == "king"
    assert answer["commitment"] == "alice/student@" + "a" * 40
    assert answer["commit_block"] == 12
    assert answer["kl"] == pytest.approx(0.1234)
    assert seen == [miner.hotkey.ss58_address]


def test_asking_about_another_hotkey(served):
    chain, validator, miner, seen = served
    response = query(miner, chain, DistilStatus(hotkey="5SomeoneElse"))
    assert response.dendrite.status_code == 200
    assert response.deserialize()["status"] == "unknown"


def test_unregistered_caller_is_blacklisted(served):
    chain, validator, miner, seen = served
    stranger = MockWallet("stranger", "s")
    response = query(stranger, chain, DistilStatus())
    assert response.dendrite.status_code == 403
    assert "not registered" in (response.dendrite.status_message or "")
    assert seen == []  # the handler never ran


def test_rate_limit_per_caller(served):
    chain, validator, miner, seen = served
    codes = [query(miner, chain, DistilStatus()).dendrite.status_code for _ in range(4)]
    assert codes == [200, 200, 200, 403]


def test_rate_limiter_window():
    now = [0.0]
    limiter = RateLimiter(max_requests=2, window_s=10, clock=lambda: now[0])
    assert limiter.allow("a") and limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")
    now[0] = 10.0
    assert limiter.allow("a")


def test_axon_endpoint_conversion():
    endpoint = AxonEndpoint("hk", "ck", "127.0.0.1", 8091)
    info = endpoint.to_axon_info()
    assert (info.ip, info.port, info.hotkey, info.coldkey) == ("127.0.0.1", 8091, "hk", "ck")
    assert endpoint.is_serving and not AxonEndpoint("hk", "ck", "0.0.0.0", 8091).is_serving
