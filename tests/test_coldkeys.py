"""The per-coldkey challenger cap: one operator's hotkeys cannot fill a round."""

from __future__ import annotations

import pytest

from distil.scoring.coldkeys import cap_per_coldkey


def rounds_until_empty(queue: list[str], coldkeys: dict[str, str], max_per_coldkey: int = 2,
                       max_challengers: int = 8) -> list[list[str]]:
    """Feed the deferred back, round after round, as the validator's queue does (earliest commit first)."""
    rounds = []
    while queue:
        admitted, deferred = cap_per_coldkey(queue, coldkeys, max_per_coldkey)
        entered = admitted[:max_challengers]  # the round's own size limit applies after the cap
        rounds.append(entered)
        queue = [hk for hk in queue if hk not in entered]
    return rounds


def test_five_of_one_coldkey_and_two_of_others_enter_two_plus_two_and_the_rest_later():
    # commit order: the operator's hotkeys first, then two independent miners
    order = ["op1", "op2", "op3", "op4", "op5", "alice", "bob"]
    coldkeys = {f"op{i}": "5Operator" for i in range(1, 6)} | {"alice": "5Alice", "bob": "5Bob"}
    admitted, deferred = cap_per_coldkey(order, coldkeys)
    assert admitted == ["op1", "op2", "alice", "bob"]
    assert deferred == ["op3", "op4", "op5"]  # waiting, earliest commit first
    assert rounds_until_empty(order, coldkeys) == [["op1", "op2", "alice", "bob"], ["op3", "op4"], ["op5"]]


def test_order_is_kept_and_the_cap_counts_per_coldkey():
    order = ["a1", "b1", "a2", "b2", "a3", "c1", "b3"]
    coldkeys = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "b3": "B", "c1": "C"}
    assert cap_per_coldkey(order, coldkeys, 1) == (["a1", "b1", "c1"], ["a2", "b2", "a3", "b3"])
    assert cap_per_coldkey(order, coldkeys, 3) == (order, [])
    assert cap_per_coldkey([], coldkeys) == ([], [])


def test_unknown_coldkeys_are_their_own_owner_and_a_function_may_answer():
    order = ["x", "y", "z", "w"]
    assert cap_per_coldkey(order, {"x": None, "y": ""}, 1) == (order, [])  # z, w missing: own owners too
    assert cap_per_coldkey(order, lambda hk: "same", 1) == (["x"], ["y", "z", "w"])


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="positive integer"):
        cap_per_coldkey(["a"], {}, 0)
    with pytest.raises(ValueError, match="listed twice"):
        cap_per_coldkey(["a", "a"], {})
