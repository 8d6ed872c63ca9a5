"""King-of-the-hill decisions as pure functions over plain data: no I/O, no chain, no GPU.

`rules` holds the scoring spec's decisions (dethrone rule, KL limit, functional copies), `contender` the
win-twice state of spec v3's dethrone rule; `epoch` applies them to the validator's state (who is a challenger, what
a finished round changes, which weights to set).
"""

from distil.scoring.rules import (
    DethroneDecision,
    RequiredGain,
    WinTwice,
    cosine,
    dethrones,
    functional_copies,
    kl_failure,
    paired_t_pvalue,
    rank_key,
    required_gain,
)

__all__ = [
    "DethroneDecision",
    "RequiredGain",
    "WinTwice",
    "cosine",
    "dethrones",
    "functional_copies",
    "kl_failure",
    "paired_t_pvalue",
    "rank_key",
    "required_gain",
]
