"""DistilStatus through a real bittensor Axon and Dendrite on 127.0.0.1, bounded as validators serve it."""

import json
import time
from typing import Tuple

import bittensor as bt
import pytest

from conftest import free_port, raw_request, signed_status_headers, wait_for_port
from distil.protocol import DistilStatus
from template.axon import RateLimiter, RequestLimits, limit_requests, registered_only_blacklist
from template.chain import AxonEndpoint
from template.mock_chain import InMemoryChain
from template.wallet import MockWallet


class Served(tuple):
    """(chain, validator wallet, miner wallet, hotkeys the handler saw), and the axon's `gate` and `port`."""


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
    gate = limit_requests(axon, RequestLimits(max_body_bytes=4096, max_in_flight=4, max_in_flight_per_caller=2))
    axon.attach(forward_fn=forward, blacklist_fn=blacklist_fn)
    axon.start()
    wait_for_port(port)
    chain.serve_axon(validator, axon)
    world = Served((chain, validator, miner, seen))
    world.gate, world.port = gate, port
    yield world
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


# -- bounds (issue 25 §1): nothing is read past a few KiB, nothing out of bounds is answered ------


def test_an_oversized_request_is_refused_before_it_is_read(served):
    chain, validator, miner, seen = served
    # a registered miner's real dendrite, with a 1 MiB hotkey (its own pydantic checks bypassed)
    hostile = DistilStatus.model_construct(hotkey="A" * (1 << 20))
    response = query(miner, chain, hostile)
    assert response.dendrite.status_code == 413, response.dendrite.status_message
    assert "at most 4096" in response.dendrite.status_message
    # a body declared at 1 GiB: refused on its headers alone (not one body byte was sent)
    headers = signed_status_headers(bt.Dendrite(wallet=miner.hotkey), chain.validator_axons()[0].to_axon_info())
    status, answer = raw_request(served.port, headers, declared=1 << 30)
    assert status == 413 and b"1073741824 bytes (at most 4096)" in answer
    # a body that declares no size (chunked) is cut off once it passes the bound
    status, answer = raw_request(served.port, headers, body_bytes=8 << 20, chunked=True)
    assert status in (413, None), answer[:300]  # None: the connection was reset under the sender, unanswered
    assert seen == []  # the handler never ran
    assert served.gate.refused[413] == 3 and served.gate.total == 0
    # and the endpoint still answers normal queries
    assert query(miner, chain, DistilStatus()).dendrite.status_code == 200


@pytest.mark.parametrize("hotkey", ["A" * 49, "5F\x1b[2K\r2026-12-05 | INFO | forged", "5F\n"])
def test_a_hotkey_out_of_bounds_is_refused_and_never_echoed(served, hotkey):
    chain, validator, miner, seen = served
    response = query(miner, chain, DistilStatus.model_construct(hotkey=hotkey))
    assert response.dendrite.status_code == 400
    message = response.dendrite.status_message
    assert message.startswith("request out of bounds (hotkey: String should") and "forged" not in message
    assert seen == [] and response.hotkey == hotkey  # the caller's own copy; nothing came back from the axon


def test_requests_in_flight_are_bounded_per_caller_and_in_total(served):
    chain, validator, miner, seen = served
    headers = signed_status_headers(bt.Dendrite(wallet=miner.hotkey), chain.validator_axons()[0].to_axon_info())
    held = []

    def hold(caller_headers):
        held.append(raw_request(served.port, caller_headers, body_bytes=100, hold=True))
        deadline = time.monotonic() + 10
        while served.gate.total < len(held) and time.monotonic() < deadline:  # the server counted it in
            time.sleep(0.01)
        assert served.gate.total == len(held)

    try:
        hold(headers)
        hold(headers)  # two requests from the miner, each waiting for the rest of its body
        status, answer = raw_request(served.port, headers, body_bytes=100)
        assert status == 429 and b"in flight from this caller (at most 2)" in answer
        for name in ("5Other1", "5Other2"):  # a caller is the hotkey a request names: two more names
            hold({**headers, "bt_header_dendrite_hotkey": name})
        status, answer = raw_request(served.port, {**headers, "bt_header_dendrite_hotkey": "5Other3"}, body_bytes=100)
        assert status == 503 and b"4 requests in flight (at most 4)" in answer
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while served.gate.total and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.gate.total == 0 and seen == []
    response = query(miner, chain, DistilStatus())
    assert response.dendrite.status_code == 200 and response.deserialize()["status"] == "king"


def test_an_answer_is_escaped_and_cut_to_the_bounds_of_its_fields():
    hostile = "\x1b[2K\r2026-12-05 00:00:00 | INFO | weights set: {6: 1.0}\n" + "x" * 5000
    synapse = DistilStatus().fill({"commitment": hostile, "detail": hostile, "status": "king", "kl": 0.5})
    assert len(synapse.commitment) <= 128 and len(synapse.detail) <= 1000
    for text in (synapse.commitment, synapse.detail):
        assert text.startswith("\\x1b[2K\\r2026") and not any(c in text for c in "\x1b\r\n")
    assert synapse.status == "king" and synapse.kl == 0.5
    # what a miner's dendrite makes of an answer over the bounds: it refuses it whole
    with pytest.raises(ValueError, match="at most 1000 characters"):
        DistilStatus(**{**json.loads(synapse.model_dump_json()), "detail": "x" * 1001})
