"""Operator requests dropped into the state directory by `distil-state requeue`, applied at
the start of an epoch (docs/rounds.md, step 1) and then removed."""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from distil.scoring import epoch as ep
from distil.state import ValidatorState, pending_requests


def apply_requests(state: ValidatorState, state_dir: str | Path) -> tuple[ValidatorState, list[ep.Event]]:
    events: list[ep.Event] = []
    for path, request in pending_requests(state_dir):
        hotkey = request["hotkey"]
        try:
            state = ep.requeue(state, hotkey)
        except (KeyError, ValueError) as e:  # unknown hotkey, or a commitment that cannot be checked again
            logger.warning(f"requeue of {hotkey} ignored: {str(e).strip(chr(39))}")
        else:
            events.append(ep.Event("requeued", hotkey, "requeued by the operator"))
            logger.info(f"requeued {hotkey} at the operator's request")
        path.unlink(missing_ok=True)
    return state, events
