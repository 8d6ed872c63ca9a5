"""The documentation: the site builds with `mkdocs build --strict`, the CLI reference lists
every flag, and every command shown in the docs and the README parses with the real
parser of the program it runs.

Commands are read from fenced code blocks (`bash`/`sh`/`shell`/`console`, the `ExecStart=`
of `ini` blocks, the `script`/`args` of `js` blocks). Placeholders such as `<40-hex sha>`
are replaced by valid values. Each command is parsed in-process by the parser the program
itself builds (see `PROGRAMS` in docs/hooks/cli_reference.py), with abbreviations turned
off, so a documented flag that is misspelled, or that the code no longer has, fails here.
Where the documented form is `--dry-run` with a pinned revision, the miner is run.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_FILES = sorted(
    [ROOT / "README.md", *(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts), *(ROOT / "contrib").glob("*.md")]
)

SHA = "0123456789abcdef0123456789abcdef01234567"
BLOCK_HASH = "0x" + "9f6add2d6f16c847" * 4
SS58 = "5GZEJAWby6mZqNgpfDeHJdvgjdYnQBtYnTHdWqMWyJdSr3vP"


def load_hook():
    name = "distil_docs_cli_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / "cli_reference.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# -- extraction ----------------------------------------------------------------------------

FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^[ \t]*\2[ \t]*$", re.M | re.S)
SHELL_LANGS = {"bash", "sh", "shell", "console"}
PLACEHOLDER = re.compile(r"<([^<>\n]+)>")


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str  # as written (continuations joined), placeholders not yet replaced


def placeholder_value(name: str) -> str:
    key = name.lower()
    if "block hash" in key:
        return BLOCK_HASH
    if "hex" in key or "sha" in key or "revision" in key:
        return SHA
    if "hotkey" in key:
        return SS58
    if "url" in key:
        return "https://example.invalid/distil.git"
    if "netuid" in key:
        return "1"
    raise ValueError(f"unknown placeholder <{name}>: use one test_docs.placeholder_value knows")


def substitute(text: str) -> str:
    return PLACEHOLDER.sub(lambda m: placeholder_value(m.group(1)), text)


def _logical_lines(body: str):
    """(line offset, text) of each line, backslash continuations joined."""
    pending, start = "", 0
    for i, line in enumerate(body.splitlines()):
        if not pending:
            start = i
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def commands_in(text: str, where: str) -> list[Command]:
    out = []
    for match in FENCE.finditer(text):
        lang, body = match.group(3).lower(), match.group(4)
        first = text[: match.start()].count("\n") + 2  # line number of the block's first body line
        if lang in SHELL_LANGS:
            for offset, line in _logical_lines(body):
                line = line.strip().removeprefix("$ ")
                if line and not line.startswith("#"):
                    out.append(Command(f"{where}:{first + offset}", line))
        elif lang == "ini":
            for offset, line in _logical_lines(body):
                if line.startswith("ExecStart="):
                    out.append(Command(f"{where}:{first + offset}", line.removeprefix("ExecStart=")))
        elif lang in ("js", "javascript"):
            script = re.search(r'script:\s*"([^"]+)"', body)
            interpreter = re.search(r'interpreter:\s*"([^"]+)"', body)
            args = re.search(r'args:\s*"([^"]*)"', body)
            if script:
                command = f"{interpreter.group(1) if interpreter else 'python'} {script.group(1)} {args.group(1) if args else ''}"
                out.append(Command(f"{where}:{first + body[: script.start()].count(chr(10))}", command.strip()))
    return out


def all_commands() -> list[Command]:
    commands = []
    for path in DOC_FILES:
        commands += commands_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return commands


def split_pipeline(line: str) -> list[list[str]]:
    """Simple commands of a shell line: split on &&, ||, ;, |; comments dropped."""
    line = re.sub(r"(?<=\s)\d*>&\d+", " ", substitute(line))  # `2>&1`: & here is no separator
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current, redirect = [], [], False
    for token in lexer:
        if token in ("&&", "||", ";", "|", "&"):
            if current:
                commands.append(current)
            current, redirect = [], False
        elif redirect:  # the file of a `> FILE` redirection
            redirect = False
        elif re.fullmatch(r"\d*(>>?|<)(&\d+)?", token):
            redirect = "&" not in token
        elif not re.fullmatch(r"\d*(>>?|<)\S+", token):  # `2>/dev/null`
            current.append(token)
    if current:
        commands.append(current)
    return commands


# -- which program, and its parser --------------------------------------------------------

MODULES = {
    "distil.eval.cli": "distil-eval",
    "distil.checks.cli": "distil-check",
    "distil.state_cli": "distil-state",
    "distil.demo": "distil.demo",
    "distil.bench": "distil.bench",
    "distil.sim": "distil.sim",
    "template.mock_chain": "mock-chain",
    "distil.train": "distil-train",
    "distil.upgrade": "upgrade",
}
CONSOLE_SCRIPTS = {"distil-eval", "distil-check", "distil-state", "distil-train"}


def program_of(argv: list[str]) -> tuple[str | None, list[str]]:
    """(program name, its arguments), or (None, argv) for a command these tests do not own."""
    while argv and (re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]) or argv[0] == "sudo"):
        argv = argv[1:]
    if not argv:
        return None, argv
    head = argv[0]
    if head == "accelerate" and argv[1:2] == ["launch"] and "-m" in argv:  # accelerate launch [its flags] -m MODULE ...
        at = argv.index("-m")
        return program_of(["python", *argv[at:]])
    if head in CONSOLE_SCRIPTS:
        return head, argv[1:]
    if head == "make":
        return "make", argv[1:]
    if re.search(r"(^|/)python3?$", head) and len(argv) > 1:
        if argv[1] == "-m" and len(argv) > 2:
            module = argv[2]
            if module in MODULES:
                return MODULES[module], argv[3:]
            if module.split(".")[0] == "distil":
                return f"unknown distil module {module}", argv[3:]
            return None, argv
        for name in ("miner", "validator"):
            if argv[1].endswith(f"neurons/{name}.py"):
                return name, argv[2:]
    return None, argv


def strict(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """No abbreviations (argparse would take `--dry` for `--dry-run`), in subcommands too."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                strict(sub)
    return parser


class Rejected(Exception):
    """The program's parser (or its own first validation) refuses the command."""


def _parse(parser: argparse.ArgumentParser, args: list[str], parse=None):
    """parse(args) with SystemExit turned into Rejected (exit 0 of --help is fine)."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            return (parse or parser.parse_args)(args)
    except SystemExit as e:
        if e.code in (0, None):
            return None
        raise Rejected(err.getvalue().strip() or f"exit {e.code}") from None


def check_neuron(name: str, args: list[str]):
    from distil.commitment import CommitmentError, Commitment, validate_repo, validate_revision
    from template.config import parse_config

    hook = load_hook()
    parser = strict(hook.PROGRAMS[name].parser())
    config = _parse(parser, args, lambda a: parse_config(parser, a))
    if config is None:  # --help
        return
    if name == "miner":
        if not config.status and not config.write_owner:  # --write-owner DIR needs no repo
            if not config.model_repo:
                raise Rejected("--model-repo is required")
            try:
                repo = validate_repo(config.model_repo)
                revision = validate_revision(config.revision) if config.revision else None
            except CommitmentError as e:
                raise Rejected(f"invalid commitment: {e}") from None
            if config.dry_run and revision:  # the documented form: run it
                module = hook._neuron_module("miner")
                out, err = io.StringIO(), io.StringIO()
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                    # offline: the dry run's pre-checks need the hub (tests/test_miner.py runs them)
                    rc = module.main([*args, "--skip-checks"])
                if rc != 0 or out.getvalue().strip().splitlines()[-1] != str(Commitment(repo, revision)):
                    raise Rejected(f"--dry-run exited {rc}: {out.getvalue()} {err.getvalue()}")
    else:
        from distil.eval.spec import EvalSpec

        module = hook._neuron_module("validator")
        try:
            EvalSpec(**{f: getattr(config.eval, f) for f in module.EVAL_SPEC_FLAGS}, device=config.neuron.device or "cpu")
        except ValueError as e:
            raise Rejected(str(e)) from None
        if config.mock and not config.neuron.epochs:
            raise Rejected("--mock without --neuron.epochs runs empty epochs forever (the docs say to give it)")


def check_cli(name: str, args: list[str]):
    hook = load_hook()
    parser = strict(hook.PROGRAMS[name].parser())
    parsed = _parse(parser, args)
    if parsed is None:
        return
    if name == "distil-check" and "@" in parsed.target:
        from distil.commitment import Commitment, CommitmentError

        try:
            Commitment.parse(parsed.target)
        except CommitmentError as e:
            raise Rejected(f"target: {e}") from None
    if name == "upgrade":  # what comes after `--` is the validator's command line
        check_neuron("validator", parsed.validator_args)
    if name == "distil-eval":
        from distil.eval import cli
        from distil.eval.args import spec_values
        from distil.eval.prompts import seed_from_block_hash
        from distil.eval.spec import EvalSpec

        values = spec_values(parsed)
        if parsed.round:
            fixed = sorted(set(values) - cli.RUNTIME_FIELDS)
            if fixed:
                raise Rejected(f"--round fixes the scoring spec; cannot change {fixed}")
        else:
            if not parsed.seed:
                raise Rejected("--seed is required unless --round")
            try:
                seed_from_block_hash(parsed.seed)
                EvalSpec(**values)
            except ValueError as e:
                raise Rejected(str(e)) from None


def check_demo(args: list[str], monkeypatch):
    from distil import demo

    monkeypatch.setattr(demo, "build", lambda directory, seed=0: Path(directory) / "scenario.json")
    parser_exit = _parse(argparse.ArgumentParser(), args, lambda a: demo.main(a))
    if parser_exit not in (None, 0):
        raise Rejected(f"python -m distil.demo exited {parser_exit}")


def check_subcommands(package: str, args: list[str]):
    """The real `python -m distil.bench` / `python -m distil.sim` parser (its subcommands' `register`), parsed only."""
    import importlib

    subcommands = importlib.import_module(f"{package}.__main__").SUBCOMMANDS
    parser = argparse.ArgumentParser(prog=f"python -m {package}")
    sub = parser.add_subparsers(dest="which", required=True)
    for name in subcommands:
        importlib.import_module(f"{package}.{name}").register(sub)
    _parse(strict(parser), args)


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def check(command: str, monkeypatch=None) -> str | None:
    """Check every simple command of a documented line; returns the programs it ran, or raises Rejected."""
    seen = []
    for argv in split_pipeline(command):
        program, args = program_of(argv)
        if program is None:
            continue
        seen.append(program)
        if program.startswith("unknown"):
            raise Rejected(f"{program}: the docs test does not know its parser; add it to MODULES")
        if program == "make":
            missing = [t for t in args if not t.startswith("-") and "=" not in t and t not in make_targets()]
            if missing:
                raise Rejected(f"no make target {missing}")
        elif program in ("miner", "validator"):
            check_neuron(program, args)
        elif program == "distil.demo":
            check_demo(args, monkeypatch)
        elif program in ("distil.bench", "distil.sim"):
            check_subcommands(program, args)
        else:
            check_cli(program, args)
    return " ".join(seen) or None


COMMANDS = all_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.where} {c.text[:50]}")
def test_documented_command_parses(command, monkeypatch):
    try:
        check(command.text, monkeypatch)
    except Rejected as e:
        pytest.fail(f"{command.where}: `{command.text}` is refused:\n{e}")


def test_the_docs_show_every_program_and_both_make_targets():
    ran = [program_of(argv) for c in COMMANDS for argv in split_pipeline(c.text)]
    programs = {name for name, _ in ran if name}
    for program in ("miner", "validator", "distil-check", "distil-eval", "distil-state", "distil-train", "distil.demo",
                    "make"):
        assert program in programs, f"no documented command runs {program}"
    assert sum(1 for name, _ in ran if name) >= 30, "suspiciously few commands found: is the extraction broken?"
    readme = [c.text for c in COMMANDS if c.where.startswith("README.md")]
    assert any(t.startswith("make demo") for t in readme) and any(t.startswith("make test") for t in readme)


@pytest.mark.parametrize(
    "command",
    [
        "python neurons/miner.py --dry-run --model-repo you/model --revision <40-hex sha> --dry-runn",
        "python neurons/miner.py --dry --model-repo you/model --revision <40-hex sha>",  # an abbreviation
        "python neurons/miner.py --dry-run --model-repo you/model --revision main",
        "python neurons/validator.py --wallet.name v --eval.n_prompt 8",
        "python neurons/validator.py --mock --mock.scenario s.json --neuron.full_path d",
        "distil-check you/model@<40-hex sha> --jsn",
        "distil-check you/model@main",
        "distil-eval --teacher t --student s --prompts-file p.jsonl",  # no --seed
        "distil-eval --teacher t --student s --round r.json --n-prompts 8",
        "distil-state show --state-dir",  # no value
        "python -m distil.upgrade --repo r --dir d -- --wallet.name v --eval.n_prompt 8",  # the validator's flags too
        "distil-train --teacher t --student s --output o --prompts-file p.jsonl",  # no --max-steps
        "accelerate launch --num_processes 2 -m distil.train --teacher t --student s --output o --dataset d --max-step 5",
        "make deploy",
        "python -m distil.nothing here",
    ],
)
def test_the_check_refuses_what_the_programs_refuse(command, monkeypatch):
    with pytest.raises(Rejected):
        check(command, monkeypatch)


def test_the_nav_names_the_scoring_version():
    from distil import SCORING_VERSION

    nav = re.search(r"^  - Scoring specification v(\d+): scoring\.md", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert nav and int(nav.group(1)) == SCORING_VERSION, "mkdocs.yml's nav names another scoring spec version"


def test_placeholders_and_extraction():
    text = "\n".join([
        "```bash",
        "distil-check you/m@<40-hex sha> \\",
        "    --json   # a comment",
        "make install && source .venv/bin/activate",
        "```",
        "```text",
        "python neurons/miner.py --not-a-flag",
        "```",
        "```ini",
        "ExecStart=/x/.venv/bin/python neurons/validator.py --wallet.name v",
        "```",
    ])
    commands = commands_in(text, "t.md")
    assert [" ".join(c.text.split()) for c in commands] == [
        "distil-check you/m@<40-hex sha> --json # a comment",
        "make install && source .venv/bin/activate",
        "/x/.venv/bin/python neurons/validator.py --wallet.name v",
    ]
    assert [c.where for c in commands] == ["t.md:2", "t.md:4", "t.md:10"]
    assert split_pipeline(commands[0].text) == [["distil-check", f"you/m@{SHA}", "--json"]]
    assert split_pipeline("distil-eval --json > out.json 2>/dev/null; make demo 2>&1 | tail") == [
        ["distil-eval", "--json"], ["make", "demo"], ["tail"]]
    assert [program_of(a)[0] for a in split_pipeline(commands[1].text)] == ["make", None]
    with pytest.raises(ValueError, match="unknown placeholder"):
        substitute("distil-check <your thing>")


# -- min_compute.yml ------------------------------------------------------------------------


def test_min_compute_matches_the_validator_guide():
    import yaml

    spec = yaml.safe_load((ROOT / "min_compute.yml").read_text())["compute_spec"]
    v = spec["validator"]
    guide = (DOCS / "validators.md").read_text()
    hardware = guide[guide.index("## Hardware"): guide.index("## Install")]
    for figure in (f"{v['gpu']['min_vram']} GiB", f"{v['gpu']['recommended_vram']} GiB",
                   f"{v['cpu']['min_cores']} cores", f"{v['cpu']['recommended_cores']} cores",
                   f"{v['memory']['min_ram']} GiB", f"{v['memory']['recommended_ram']} GiB",
                   f"{v['storage']['min_space']} GiB", f"{v['storage']['recommended_space']} GiB",
                   v["storage"]["flags"]):
        assert figure in hardware, f"min_compute.yml says {figure!r}; docs/validators.md's Hardware table does not"
    check(f"python neurons/validator.py {v['storage']['flags']}")  # the recommended flags exist
    assert f"{spec['miner']['memory']['min_ram']} GiB" in (DOCS / "miners.md").read_text()


# -- the site -------------------------------------------------------------------------------


def _build(config: Path, site: Path) -> subprocess.Popen:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """The real site, and a copy of the docs with one broken link (built side by side)."""
    tmp = tmp_path_factory.mktemp("docs")
    broken = tmp / "broken"
    broken.mkdir()
    hook = DOCS / "hooks" / "cli_reference.py"  # the real one: it finds the code from its own path
    (broken / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text().replace("docs/hooks/cli_reference.py", str(hook)))
    import shutil

    shutil.copytree(DOCS, broken / "docs")
    faq = broken / "docs" / "faq.md"  # after cli.md, whose hook imports bittensor
    faq.write_text(faq.read_text() + "\nSee [nowhere](scoring.md#no-such-section).\n")
    jobs = {"site": _build(ROOT / "mkdocs.yml", tmp / "site"), "broken": _build(broken / "mkdocs.yml", tmp / "broken-site")}
    results = {}
    for name, job in jobs.items():
        output, _ = job.communicate(timeout=300)
        results[name] = (job.returncode, output)
    return tmp / "site", results


def test_mkdocs_build_strict_passes_offline(builds):
    site, results = builds
    rc, output = results["site"]
    assert rc == 0, output
    for page in ("index", "rounds", "miners", "validators", "scoring", "checks", "cli", "performance", "faq", "troubleshooting"):
        assert (site / f"{page}.html").is_file(), page
    assert (site / "assets" / "epoch.svg").is_file()
    assert "fonts.googleapis.com" not in (site / "index.html").read_text()


def test_strict_build_fails_on_a_broken_anchor(builds):
    """A warning after the CLI hook ran (it imports bittensor, whose logging setup silences
    other loggers) must still fail the strict build."""
    _, results = builds
    rc, output = results["broken"]
    assert rc != 0 and "no-such-section" in output, output


def test_cli_reference_lists_every_flag_of_every_program(builds):
    site, results = builds
    assert results["site"][0] == 0
    text = html.unescape(re.sub(r"<[^>]+>", " ", (site / "cli.html").read_text()))
    hook = load_hook()
    missing = {}
    for name, program in hook.PROGRAMS.items():
        parsers = [program.parser()]
        for parser in parsers:
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    parsers += list(action.choices.values())
                for flag in action.option_strings:
                    if flag not in ("-h", "--help") and not re.search(rf"(?<![\w.-]){re.escape(flag)}(?![\w.-])", text):
                        missing.setdefault(name, []).append(flag)
    assert not missing, f"flags missing from the CLI reference: {missing}"
