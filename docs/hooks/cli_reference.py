"""MkDocs hook: the CLI and flag reference, generated at build time from the programs' own parsers.

A page that holds a line `<!-- cli-reference: NAME -->` gets, in its place, the flags of
the program NAME (see `PROGRAMS`) read from the very argparse parser that program uses:
flag, aliases, default and help text. Nothing is copied by hand, so the reference cannot
drift from the code; a flag added, renamed or removed shows up at the next build.

`tests/test_docs.py` imports this module too: `PROGRAMS` is also how the test finds the
parser that must accept every command shown in the docs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import re
import sys
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- cli-reference: ([a-z-]+) -->[ \t]*$", re.M)


@contextlib.contextmanager
def _logging_kept():
    """Undo what importing bittensor does to logging.

    bittensor's logging machine sets every existing logger to CRITICAL and removes its
    handlers when it is imported. MkDocs counts warnings with a handler on its `mkdocs`
    logger, so without this `mkdocs build --strict` would silently pass with warnings.
    """
    manager = logging.root.manager
    saved = {
        name: (logger.level, list(logger.handlers), logger.disabled, logger.propagate)
        for name, logger in [("", logging.root), *manager.loggerDict.items()]
        if isinstance(logger, logging.Logger)
    }
    try:
        yield
    finally:
        for name, (level, handlers, disabled, propagate) in saved.items():
            logger = logging.getLogger(name) if name else logging.root
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.disabled = disabled
            logger.propagate = propagate


def _neuron_module(name: str):
    """`neurons/<name>.py` as a module (it is a script, not a package member)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    key = f"_distil_docs_neuron_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "neurons" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        with _logging_kept():
            spec.loader.exec_module(module)
    return sys.modules[key]


def _module(name: str):
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    with _logging_kept():
        return importlib.import_module(name)


def _miner_parser() -> argparse.ArgumentParser:
    module = _neuron_module("miner")
    parser = module.Miner.build_parser(module.__doc__.split("\n\n")[0])
    parser.prog = "python neurons/miner.py"
    return parser


def _validator_parser() -> argparse.ArgumentParser:
    module = _neuron_module("validator")
    parser = module.Validator.build_parser(module.__doc__.split("\n\n")[0])
    parser.prog = "python neurons/validator.py"
    return parser


class Program(NamedTuple):
    """A documented program: how it is invoked and where its parser comes from."""

    name: str  # the marker name and the heading anchor
    command: str  # how the docs invoke it
    parser: Callable[[], argparse.ArgumentParser]
    source: str  # where the parser is defined, for readers


PROGRAMS: dict[str, Program] = {
    p.name: p
    for p in (
        Program("miner", "python neurons/miner.py", _miner_parser, "neurons/miner.py, template/config.py"),
        Program("validator", "python neurons/validator.py", _validator_parser,
                "neurons/validator.py, template/base/validator.py, distil/validator/args.py, distil/checks/args.py"),
        Program("distil-check", "distil-check", lambda: _module("distil.checks.cli").build_parser(), "distil/checks/cli.py"),
        Program("distil-eval", "distil-eval", lambda: _module("distil.eval.cli").build_parser(), "distil/eval/cli.py"),
        Program("distil-state", "distil-state", lambda: _module("distil.state_cli").build_parser(), "distil/state_cli.py"),
        Program("mock-chain", "python -m template.mock_chain", lambda: _module("template.mock_chain").build_parser(),
                "template/mock_chain.py"),
        Program("distil-train", "distil-train", lambda: _module("distil.train.cli").build_parser(), "distil/train/cli.py"),
        Program("upgrade", "python -m distil.upgrade", lambda: _module("distil.upgrade").build_parser(), "distil/upgrade.py"),
    )
}

# Titles of the flag families of the neurons (`--wallet.name` belongs to `wallet`).
FAMILIES = {
    "": "General",
    "wallet": "Wallet (bittensor)",
    "subtensor": "Chain connection (bittensor)",
    "logging": "Logging (bittensor)",
    "axon": "Axon (bittensor)",
    "neuron": "Neuron",
    "mock": "Mock mode",
    "status": "Status",
    "wandb": "Weights & Biases",
    "checks": "Pre-checks",
    "eval": "Evaluation (the scoring spec's settings)",
}


# -- rendering ------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell (no HTML tags, no column breaks)."""
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("*", "\\*")


def _code(text: str) -> str:
    text = str(text).replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _home(value: str) -> str:
    home = os.path.expanduser("~")
    return value.replace(home, "~") if home not in ("", "/") else value


def _help(action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    text = action.help
    if "%" in text:
        params = {**vars(action), "prog": "", "default": _home(str(action.default))}
        if action.choices is not None:
            params["choices"] = ", ".join(map(str, action.choices))
        try:
            text = text % params
        except (KeyError, TypeError, ValueError):
            pass
    return _home(text)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if action.default is False else "on"
    if isinstance(action, argparse.BooleanOptionalAction):
        return "on" if action.default else "off"
    if action.default in (None, argparse.SUPPRESS):
        return "—"
    if action.default == "":
        return '`""`'
    return _code(_home(str(action.default)))


def _family(action: argparse.Action) -> str:
    flag = action.option_strings[0].lstrip("-")
    return flag.split(".", 1)[0] if "." in flag else ""


def _is_alias(action: argparse.Action) -> bool:
    return action.default is argparse.SUPPRESS and bool(action.option_strings) and (action.help or "").startswith("alias of")


def _rows(actions: list[argparse.Action], aliases: dict[str, list[str]]) -> list[str]:
    rows = ["| Flag | Default | Description |", "|---|---|---|"]
    for action in actions:
        if action.option_strings:
            flags = ", ".join(_code(f) for f in action.option_strings)
            metavar = action.metavar or (None if action.nargs == 0 else action.dest.upper())
            if metavar and action.nargs != 0 and not isinstance(action, argparse.BooleanOptionalAction):
                flags += f" {_code(metavar)}"
        else:
            flags = _code(action.metavar or action.dest)
        description = _escape(_help(action))
        if re.fullmatch(r"default: .*", description):  # the Default column says it already
            description = ""
        also = aliases.get(action.dest, [])
        if description and not description.endswith((".", ")")):
            description += "."
        if also:
            description += (" " if description else "") + "Also spelled " + ", ".join(_code(a) for a in also) + "."
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            description += f" One of {', '.join(_code(c) for c in action.choices)}."
        if isinstance(action, argparse._AppendAction):
            description += " Repeatable."
        rows.append(f"| {flags} | {_default(action)} | {description} |")
    return rows


def render_parser(parser: argparse.ArgumentParser, level: int = 3, split_families: bool = False) -> str:
    """Markdown for one parser: usage, then a table of flags per argument group (or family)."""
    out = []
    if not split_families:  # the neurons' usage lines are pages long: their tables say it all
        usage = parser.format_usage().strip().removeprefix("usage: ")
        out += ["```text", _home(usage), "```", ""]
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    aliases: dict[str, list[str]] = {}
    for action in actions:
        if _is_alias(action):
            aliases.setdefault(action.dest, []).extend(action.option_strings)
    documented = [a for a in actions if not _is_alias(a) and not isinstance(a, argparse._SubParsersAction)]
    sections: dict[str, list[argparse.Action]] = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            if action not in documented:
                continue
            if not action.option_strings:
                title = "Arguments"
            elif split_families:
                title = FAMILIES.get(_family(action), f"--{_family(action)}.*")
            else:
                title = "Options" if group.title in ("options", "optional arguments") else group.title.capitalize()
            sections.setdefault(title, []).append(action)
    order = sorted(sections, key=lambda t: t != FAMILIES[""])  # General first, then as the parser has them
    for title in order:
        members = sections[title]
        out += [f"{'#' * level} {title}", "", *_rows(members, aliases), ""]
    for action in actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                out += [f"{'#' * level} `{name}`", ""]
                if helps.get(name):
                    out += [_escape(helps[name][0].upper() + helps[name][1:]) + ".", ""]
                out.append(render_parser(sub, level + 1))
    return "\n".join(out)


def render(name: str) -> str:
    program = PROGRAMS[name]
    parser = program.parser()
    head = [
        f"*Generated from the parser in `{program.source}` when this site was built.*",
        "",
    ]
    if parser.description:
        head += [_escape(parser.description.strip("`").replace("`", "")), ""]
    return "\n".join(head) + "\n" + render_parser(parser, split_families=name in ("miner", "validator"))


# -- the MkDocs hook ------------------------------------------------------------------


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in PROGRAMS:
            from mkdocs.exceptions import PluginError

            raise PluginError(f"{page.file.src_path}: unknown CLI reference {name!r}; known: {', '.join(PROGRAMS)}")
        return render(name)

    return MARKER.sub(replace, markdown)
