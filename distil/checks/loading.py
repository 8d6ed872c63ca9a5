"""The model must load through `AutoModelForCausalLM` exactly: no remote code, no pickle, no
missing, unexpected or mismatched weights.

The load runs on CPU from the verified local snapshot (safetensors are memory-mapped, so a
5B bf16 student needs about its own size in RAM). Out of memory is the checker's problem,
not the miner's: it surfaces as MemoryError for the caller to report as transient.
"""

from __future__ import annotations

import gc
from pathlib import Path

from distil.checks.result import CheckFailure


def _listing(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_loads(path: str | Path) -> str:
    """Load the model at `path`; returns the class name. LOAD_FAILED / LOAD_KEYS otherwise."""
    from transformers import AutoModelForCausalLM

    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            str(path),
            trust_remote_code=False,
            use_safetensors=True,
            local_files_only=True,
            output_loading_info=True,
            dtype="auto",
        )
    except MemoryError:
        raise
    except Exception as e:
        raise CheckFailure(
            "LOAD_FAILED",
            f"AutoModelForCausalLM.from_pretrained fails: {type(e).__name__}: {str(e)[:300]}",
        ) from None
    name = type(model).__name__
    del model
    gc.collect()
    problems = []
    for key, label in (("missing_keys", "missing"), ("unexpected_keys", "unexpected"), ("mismatched_keys", "mismatched")):
        keys = info.get(key) or ()
        keys = [k if isinstance(k, str) else str(k[0]) for k in keys]
        if keys:
            problems.append(f"{len(keys)} {label} ({_listing(keys)})")
    errors = info.get("error_msgs") or ()
    if errors:
        problems.append(f"errors: {'; '.join(str(e)[:200] for e in list(errors)[:3])}")
    if problems:
        raise CheckFailure("LOAD_KEYS", f"{name} loads with " + "; ".join(problems))
    return name
