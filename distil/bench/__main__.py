"""`python -m distil.bench WHICH ...`: one JSON line per run (see the package docstring)."""

from __future__ import annotations

import importlib
import json

from template.args import ArgumentParser

# One module of this package per subcommand, each with `register(subparsers)`.
SUBCOMMANDS = ("kl", "round", "gpu", "prefetch", "train", "deadlines", "probe", "fingerprint")


def main(argv=None) -> int:
    import distil.bench as pkg

    parser = ArgumentParser(prog="python -m distil.bench", description=pkg.__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="which", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"distil.bench.{name}").register(sub)
    args = parser.parse_args(argv)
    from loguru import logger

    logger.remove()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(json.dumps(args.run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
