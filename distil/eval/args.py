"""`distil-eval`'s usage errors and the flag values its steps share (the CLI, its preflight).

A small module at the bottom of the room, so the CLI and the preflight both import it and
neither imports the other.
"""

from __future__ import annotations

import dataclasses

from distil.eval.spec import EvalSpec
from template.args import default_device


class UsageError(Exception):
    """A bad argument: one line on stderr, exit status 2."""


def flag(name: str) -> str:
    """The command-line flag of an EvalSpec field: `chunk_size` -> `--chunk-size`."""
    return "--" + name.replace("_", "-")


def spec_error(e: ValueError, to_flag=flag) -> str:
    """An EvalSpec refusal ("EvalSpec.n_prompts must be ...") with the program's flag in place of
    the field (`to_flag`: `flag` for distil-eval, `--eval.<field>` for the validator)."""
    import re

    return re.sub(r"EvalSpec\.(\w+)", lambda m: to_flag(m.group(1)), " ".join(str(e).split()))


def spec_values(args) -> dict:
    """The EvalSpec fields given on the command line (with `--devices`, the teacher's device;
    without `--device`, the validator's default: cuda when there is one, else cpu)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EvalSpec) if getattr(args, f.name) is not None}
    if args.devices:
        values["device"] = devices_of(args)[0]  # where the teacher runs
    values.setdefault("device", default_device())
    return values


def devices_of(args) -> list[str] | None:
    """`--devices` as a list (None without it); runtime only, never part of the spec."""
    from distil.eval.workers import parse_devices

    if not args.devices:
        return None
    try:
        return parse_devices(args.devices, "--devices")
    except ValueError as e:
        raise UsageError(str(e)) from None
