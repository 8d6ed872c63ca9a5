"""The pre-check's load step: the model must load through the one load function the validator
scores with (`distil.eval.models.load_causal_lm`): no remote code, no pickle, a config that
describes exactly the weight files (the architecture guard, before any weight exists), no
missing, unexpected or mismatched weights.

The load runs on CPU from the verified local snapshot, at the dtype the weights are stored in
(never the config's). Its memory is bounded by the repo's weights: peak RSS ≤ 2 × the weight
bytes + 256 MiB over an imported process (see `distil.eval.models`). Out of memory is the
checker's problem, not the miner's: it surfaces as MemoryError for the caller to report as
transient.
"""

from __future__ import annotations

from pathlib import Path

from distil import MAX_PARAMS, VOCAB_SIZE
from distil.checks.result import CheckFailure

CHECK_DEVICE = "cpu"


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (MemoryError, torch.OutOfMemoryError))


def check_loads(path: str | Path, max_params: int = MAX_PARAMS, vocab_size: int = VOCAB_SIZE) -> str:
    """Load the model at `path` with `load_causal_lm`; returns the class name. A CheckFailure
    with the load's code (ARCH_*, LOAD_KEYS, ...) or LOAD_FAILED otherwise."""
    from distil.eval.models import InvalidModel, free_memory, load_causal_lm

    try:
        model = load_causal_lm(path, CHECK_DEVICE, None, vocab_size, max_params=max_params)
    except InvalidModel as e:
        raise CheckFailure(e.code or "LOAD_FAILED", str(e)) from None
    except FileNotFoundError:
        raise  # our snapshot is gone: the checker's problem
    except Exception as e:
        if _is_oom(e):
            raise MemoryError(str(e)) from None
        raise CheckFailure(
            "LOAD_FAILED",
            f"AutoModelForCausalLM.from_pretrained fails: {type(e).__name__}: {str(e)[:300]}",
        ) from None
    name = type(model).__name__
    del model
    free_memory()
    return name
