"""The per-coldkey challenger cap (scoring spec v2): one operator cannot fill a round.

Every hotkey has an owner coldkey on chain. One operator with many hotkeys could
otherwise take every challenger slot of a round with their own checkpoints and push
everyone else's commitments to later rounds. So at most `max_per_coldkey` challengers of
one coldkey enter a round; the others wait (they are not disqualified) and, since the
queue is ordered by commit, enter the following rounds in their turn.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

MAX_PER_COLDKEY = 2


def cap_per_coldkey(
    challengers_in_commit_order: Sequence[str],
    coldkey_of: Mapping[str, str | None] | Callable[[str], str | None],
    max_per_coldkey: int = MAX_PER_COLDKEY,
) -> tuple[list[str], list[str]]:
    """(admitted, deferred): the first `max_per_coldkey` challengers of each coldkey, in order.

    `challengers_in_commit_order` are new challengers only (the king and rematch models
    are not passed: they do not count against anyone's cap), earliest commit first; the
    order of both lists is kept. A hotkey whose coldkey is unknown (None or missing) is
    its own owner: it is never capped by another hotkey's coldkey.
    """
    if not isinstance(max_per_coldkey, int) or isinstance(max_per_coldkey, bool) or max_per_coldkey < 1:
        raise ValueError(f"max_per_coldkey must be a positive integer, got {max_per_coldkey!r}")
    if len(set(challengers_in_commit_order)) != len(challengers_in_commit_order):
        raise ValueError("a challenger is listed twice")
    lookup = coldkey_of if callable(coldkey_of) else coldkey_of.get
    admitted: list[str] = []
    deferred: list[str] = []
    taken: dict[tuple[str, str], int] = {}
    for hotkey in challengers_in_commit_order:
        owner = lookup(hotkey)
        owner_key = ("coldkey", owner) if owner else ("hotkey", hotkey)
        if taken.get(owner_key, 0) < max_per_coldkey:
            taken[owner_key] = taken.get(owner_key, 0) + 1
            admitted.append(hotkey)
        else:
            deferred.append(hotkey)
    return admitted, deferred
