"""Faults injected where no real model can reach once the checks hold: in front of the scoring
worker's function (`distil.eval.workers.score_child`), in the child itself.

A student path whose last component names a fault fails that way inside its worker, after the
teacher cache is loaded, exactly as a model that passed every check but fails when scored:

* `...-raises`: scoring raises IndexError (as a GPT-2 whose positions end too soon did);
* `...-dies`: the worker kills itself with SIGKILL (the kernel's OOM killer, a CUDA abort);
* `...-sigbus`: the worker dies of SIGBUS (a read of a memory-mapped file on our disk failed);
* `...-hangs`: the worker sleeps past any deadline;
* `...-spied`: scored by the real function, with every `from_pretrained` call it makes (the
  file loaded, `device_map`, the calling frames) written beside the model as `calls.json`.

Anything else is scored by the real function.
"""

from __future__ import annotations

import os
import signal
import time

from distil.eval.engine import score_child

TARGET = "faulty_workers:score_or_fail"


def score_or_fail(cache_dir: str, key: str, path: str, spec: dict) -> dict:
    fault = os.path.basename(os.path.normpath(path)).rsplit("-", 1)[-1]
    if fault == "dies":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault == "sigbus":
        os.kill(os.getpid(), signal.SIGBUS)
    if fault == "hangs":
        time.sleep(3600)
    if fault == "raises":
        from distil.eval.results import ModelFailure, result_to_wire

        failure = ModelFailure(key, "transient", "score", "IndexError: index out of range in self")
        return {"result": result_to_wire(failure), "cache_s": 0.0, "run_s": 0.0}
    if fault == "spied":
        return _spied(cache_dir, key, path, spec)
    return score_child(cache_dir, key, path, spec)


def _spied(cache_dir: str, key: str, path: str, spec: dict) -> dict:
    import inspect
    import json
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    calls = []
    original = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, model_path, *args, **kwargs):
        callers = [[Path(f.filename).name, f.function] for f in inspect.stack()[1:4]]
        calls.append([Path(model_path).name, kwargs.get("device_map"), callers])
        return original(cls, model_path, *args, **kwargs)

    AutoModelForCausalLM.from_pretrained = classmethod(spy)
    try:
        return score_child(cache_dir, key, path, spec)
    finally:
        AutoModelForCausalLM.from_pretrained = classmethod(original)
        (Path(path) / "calls.json").write_text(json.dumps(calls))
