"""A fan-out scoring worker: `python -m distil.eval.worker --device D --cache DIR --threads N`.

Started by `distil.eval.fanout`, one per device; not meant to be run by hand. Reads the
spec and then one student per line from stdin (JSON), loads the saved teacher cache onto
its device once, and scores each student with `engine.score_one` — the function the
single-device loop calls — writing one JSON line per result to its stdout. Logs go to
stderr, tagged with the device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m distil.eval.worker", allow_abbrev=False)
    parser.add_argument("--device", required=True)
    parser.add_argument("--cache", required=True, help="directory of a saved TeacherCache")
    parser.add_argument("--threads", type=int, required=True, help="torch threads (the parent's count)")
    parser.add_argument("--log-level", default=os.environ.get("DISTIL_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    # The protocol owns the real stdout; anything else printed goes to stderr.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    import torch
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=args.log_level,
               format="{time:HH:mm:ss.SSS} | {level: <7} | worker " + args.device + " | {message}")
    torch.set_num_threads(args.threads)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - cosmetics only
        pass
    from distil.eval.engine import score_one
    from distil.eval.fanout import READY, RESULT
    from distil.eval.results import result_to_wire
    from distil.eval.spec import EvalSpec
    from distil.eval.teacher import TeacherCache

    spec = EvalSpec(**json.loads(sys.stdin.readline())["spec"])
    cache = TeacherCache.load(args.cache, device=args.device)
    logger.info(f"teacher cache loaded ({len(cache.prompt_ids)} prompts), {args.threads} torch threads")
    protocol.write(json.dumps({"event": READY}) + "\n")
    for line in sys.stdin:
        task = json.loads(line)
        result = score_one(cache, task["key"], task["path"], spec)
        protocol.write(json.dumps({"event": RESULT, "key": task["key"], "result": result_to_wire(result)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
