"""`python -m distil.sim WHICH ...` (see the package docstring)."""

from __future__ import annotations

import importlib
import sys

from distil.exits import EXIT_ERROR
from template.args import ArgumentParser

# One module of this package per subcommand, each with `register(subparsers)` setting `run`.
SUBCOMMANDS = ("dethrone",)


def main(argv=None) -> int:
    import distil.sim as pkg

    parser = ArgumentParser(prog="python -m distil.sim", description=pkg.__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="which", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"distil.sim.{name}").register(sub)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ValueError as e:  # a round file that cannot be used, or settings that cannot run
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
