"""Every program, every kind of bad input: one line that names the input, never a traceback,
and the exit status of the one table (docs/cli.md, distil/exits.py: 1 only for a verdict on
the model being judged, 2 for everything else).

The programs run in-process through their `main(argv)` (log lines, which carry a timestamp,
are allowed around the one line); nothing here loads a model's weights or runs a teacher:
each input must be refused before that. `unreadable` inputs are a symlink loop (ELOOP), which
refuses even root; permission bits are added when the tests do not run as root.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from eval_helpers import model_dir

sys.path.insert(0, str(ROOT / "neurons"))

SHA = "0123456789abcdef0123456789abcdef01234567"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \| ")


def permission_bits_hold() -> bool:
    """Whether a mode-000 file refuses us (not for root, unless it dropped CAP_DAC_OVERRIDE)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        probe = Path(d) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            probe.read_text()
        except PermissionError:
            return True
        return False


def _mains():
    import miner
    import validator

    from distil import demo, upgrade
    from distil.checks import cli as check
    from distil.eval import cli as evaluate
    from distil.sim.__main__ import main as sim
    from distil.state_cli import main as state
    from distil.train.cli import main as train
    from template.mock_chain import main as mock_chain

    return {"distil-check": check.main, "distil-eval": evaluate.main, "distil-train": train,
            "distil-state": state, "miner": miner.main, "validator": validator.main, "distil.demo": demo.main,
            "distil.sim": sim, "mock-chain": mock_chain, "upgrade": upgrade.main}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A directory of bad inputs (and a few good ones to put them beside), by name."""
    root = tmp_path_factory.mktemp("bad-input")
    student, teacher = Path(model_dir("student")), Path(model_dir("teacher"))

    def model_with_config(name: str, config: str) -> str:  # the student's files (hard links), another config.json
        path = root / name
        path.mkdir()
        for f in student.iterdir():
            if f.name != "config.json":
                os.link(f, path / f.name)
        (path / "config.json").write_text(config)
        return str(path)

    (root / "a-file").write_text("not a directory\n")
    (root / "loop").symlink_to(root / "loop")  # reading it fails with ELOOP, whoever we are
    (root / "empty-dir").mkdir()
    (root / "prompts").mkdir()
    files = {
        "empty.jsonl": "",
        "blank.jsonl": "\n  \n",
        "corrupt.jsonl": '{"text": "one"}\n{"text": \n',
        "list.jsonl": '[1, 2]\n',
        "number-text.jsonl": '{"text": 5}\n',
        "not-utf8.jsonl": None,
        "few.jsonl": '{"text": "only one prompt"}\n',
        "good.jsonl": "".join(json.dumps({"text": f"prompt {i}"}) + "\n" for i in range(8)),
        "corrupt.json": '{"format": "distil-eval-round", ',
        "list.json": "[1, 2, 3]",
        "object.json": '{"hello": "world"}',
    }
    for name, text in files.items():
        path = root / "prompts" / name
        path.write_bytes(b"\xff\xfe\x00bad\n") if text is None else path.write_text(text)
    states = {"corrupt": "{", "list": "[]", "typed": json.dumps({"version": 1, "last_epoch_block": "200"})}
    for name, text in states.items():
        (root / f"state-{name}").mkdir()
        (root / f"state-{name}" / "state.json").write_text(text)
    if permission_bits_hold():
        (root / "locked").mkdir()
        (root / "locked" / "x").write_text("x")
        os.chmod(root / "locked", 0)
    return {"root": root, "teacher": str(teacher), "student": str(student),
            "corrupt-config": model_with_config("corrupt-config", "{not json"),
            "list-config": model_with_config("list-config", "[1, 2]"),
            "p": lambda name: str(root / "prompts" / name), "f": lambda name: str(root / name)}


# (program, argv, exit status, what the one line must name); {placeholders} are filled from the `bad` fixture
def cases():
    eval_ok = ["--teacher", "{teacher}", "--student", "{student}", "--seed", "0x01", "--n-prompts", "2"]
    train_ok = ["--teacher", "{teacher}", "--student", "{student}", "--output", "{root}/out", "--max-steps", "2",
                "--prompts-file", "{p:good.jsonl}", "--held-out-prompts", "2", "--train-prompts", "2", "--wandb.off"]
    validator_ok = ["--mock", "--mock.scenario", "{root}/scenario.json", "--neuron.epochs", "1", "--neuron.axon_off",
                    "--wandb.off", "--neuron.full_path", "{root}/v"]
    yield from [
        # -- missing and unreadable paths, a file where a directory is expected
        ("distil-check", ["{root}/nothing", "--teacher", "{teacher}"], 2, "{root}/nothing: no such directory"),
        ("distil-check", ["{f:a-file}", "--teacher", "{teacher}"], 2, "{f:a-file}: not a directory"),
        ("distil-check", ["{student}", "--teacher", "./noteacher"], 2, "--teacher ./noteacher: no such directory"),
        ("distil-check", ["{student}", "--teacher", "{f:a-file}"], 2, "--teacher {f:a-file}: not a directory"),
        ("distil-eval", [*eval_ok, "--student", "{root}/nothing"], 2, "--student {root}/nothing: no such directory"),
        ("distil-eval", ["--teacher", "{f:empty-dir}", *eval_ok[2:]], 2, "--teacher {f:empty-dir}: directory has no config.json"),
        ("distil-eval", ["--teacher", "{f:a-file}", *eval_ok[2:]], 2, "--teacher {f:a-file}: not a directory"),
        ("distil-train", [*train_ok, "--student", "{root}/nothing"], 2, "--student {root}/nothing: no such directory"),
        ("distil-train", [*train_ok, "--output", "{f:a-file}"], 2, "--output {f:a-file}: a file, not a directory"),
        ("distil-train", [*train_ok, "--output", "{f:prompts}"], 2, "--output {f:prompts} is not empty"),
        ("distil-state", ["show", "--state-dir", "{root}/nothing"], 2, "--state-dir {root}/nothing: no such directory"),
        ("distil-state", ["check", "--state-dir", "{f:a-file}"], 2, "--state-dir {f:a-file}: not a directory"),
        ("distil-state", ["show", "--state-dir", "{f:empty-dir}"], 2, "--state-dir {f:empty-dir}: no state.json"),
        ("distil.demo", ["build", "{f:a-file}"], 2, "{f:a-file}: a file, not a directory"),
        ("distil.sim", ["dethrone", "--round", "{root}/nothing.json"], 2, "{root}/nothing.json"),
        ("distil.sim", ["dethrone", "--round", "{f:loop}"], 2, "{f:loop}"),
        ("validator", [*validator_ok, "--mock.scenario", "{root}/nothing.json"], 2, "{root}/nothing.json"),
        ("validator", [*validator_ok, "--neuron.full_path", "{f:a-file}"], 2, "--neuron.full_path {f:a-file}: a file"),
        ("miner", ["--mock", "--mock.models_dir", "{root}/nothing", "--model-repo", "a/b", "--dry-run"], 2,
         "--mock.models_dir {root}/nothing: no such directory"),
        ("miner", ["--dry-run", "--model-repo", "a/b", "--revision", SHA, "--teacher", "./noteacher"], 2,
         "--teacher ./noteacher: no such directory"),
        ("mock-chain", ["register", "--mock.chain_state", "{f:empty-dir}"], 2, "--mock.chain_state {f:empty-dir}"),
        ("upgrade", ["--repo", "{root}/nothing", "--dir", "{root}/releases"], 2, "{root}/nothing"),
        # -- corrupt and wrongly typed JSON
        ("distil-eval", [*eval_ok[:2], "--student", "{corrupt-config}", *eval_ok[4:], "--prompts-file", "{p:good.jsonl}"], 1,
         "{corrupt-config}: INVALID (precheck): MALFORMED_JSON: config.json"),  # a verdict on the student: 1
        ("distil-eval", [*eval_ok[:2], "--student", "{list-config}", *eval_ok[4:], "--prompts-file", "{p:good.jsonl}"], 1,
         "{list-config}: INVALID (precheck): CONFIG_INVALID: config.json must be a JSON object"),
        ("distil-eval", ["--teacher", "{corrupt-config}", *eval_ok[2:], "--prompts-file", "{p:good.jsonl}"], 2,
         "--teacher {corrupt-config}: MALFORMED_JSON: config.json"),  # the teacher is an argument: 2
        ("distil-eval", [*eval_ok[:4], "--round", "{p:corrupt.json}"], 2, "--round {p:corrupt.json}: "),
        ("distil-eval", [*eval_ok[:4], "--round", "{p:list.json}"], 2, "--round {p:list.json}: not a distil-eval-round"),
        ("distil-eval", [*eval_ok[:4], "--round", "{f:prompts}"], 2, "--round {f:prompts}: a directory"),
        ("distil-train", [*train_ok, "--student", "{corrupt-config}"], 2, "--student {corrupt-config}: MALFORMED_JSON"),
        ("distil-train", [*train_ok, "--teacher", "{list-config}"], 2, "--teacher {list-config}: CONFIG_INVALID"),
        ("distil-state", ["show", "--state-dir", "{f:state-corrupt}"], 2, "{f:state-corrupt}/state.json"),
        ("distil-state", ["show", "--state-dir", "{f:state-list}"], 2, "{f:state-list}/state.json"),
        ("distil-state", ["show", "--state-dir", "{f:state-typed}"], 2, "{f:state-typed}/state.json"),
        ("distil.sim", ["dethrone", "--round", "{p:corrupt.json}"], 2, "{p:corrupt.json}"),
        ("distil.sim", ["dethrone", "--round", "{p:object.json}"], 2, "--round {p:object.json}: not a distil-eval-round"),
        ("validator", [*validator_ok, "--mock.scenario", "{p:corrupt.json}"], 2, "{p:corrupt.json}"),
        ("validator", [*validator_ok, "--mock.scenario", "{p:list.json}"], 2, "scenario {p:list.json}: not a JSON object"),
        ("validator", [*validator_ok, "--neuron.full_path", "{f:state-typed}"], 2, "{f:state-typed}/state.json"),
        ("mock-chain", ["register", "--mock.chain_state", "{p:list.json}"], 2,
         "{p:list.json}: ValueError: a JSON list, not a mock chain's object"),
        # -- empty and malformed prompts files
        *[(program, [*argv, flag, "{p:" + name + "}"], 2, f"{flag} {{p:{name}}}: {why}")
          for program, argv, flag in (("distil-eval", eval_ok, "--prompts-file"), ("distil-train", train_ok, "--prompts-file"),
                                      ("validator", validator_ok, "--eval.prompts_file"))
          for name, why in (("empty.jsonl", "has only 0 usable prompts"), ("blank.jsonl", "has only 0 usable prompts"),
                            ("corrupt.jsonl", "line 2: not JSON"), ("list.jsonl", "line 1: expected a JSON object"),
                            ("number-text.jsonl", "line 1: 'text' must be a string"), ("not-utf8.jsonl", "not UTF-8"),
                            ("missing.jsonl", "no such file"))],
        ("distil-eval", [*eval_ok, "--prompts-file", "{f:prompts}"], 2, "--prompts-file {f:prompts}: a directory"),
        ("distil-eval", [*eval_ok, "--prompts-file", "{f:loop}"], 2, "--prompts-file {f:loop}: cannot read it"),
        ("distil-eval", [*eval_ok, "--n-prompts", "4", "--prompts-file", "{p:few.jsonl}"], 2, "has only 1 usable prompts, 4"),
        ("distil-train", [*train_ok, "--prompts-file", "{f:loop}"], 2, "--prompts-file {f:loop}: cannot read it"),
        ("validator", [*validator_ok, "--eval.prompts_file", "{f:prompts}"], 2, "--eval.prompts_file {f:prompts}: a directory"),
        # -- bad repo ids and revisions
        ("distil-check", ["bad repo!", "--teacher", "{teacher}"], 2, "'bad repo!' is neither a model directory"),
        ("distil-check", ["you/x@zz", "--teacher", "{teacher}"], 2, "revision 'zz' is not a commit sha"),
        ("distil-eval", [*eval_ok[:2], "--student", "bad repo!", *eval_ok[4:]], 2, "--student bad repo!: neither"),
        ("distil-eval", [*eval_ok[:2], "--student", "you/x@zz", *eval_ok[4:], "--prompts-file", "{p:good.jsonl}"], 2,
         "--student you/x@zz: revision 'zz' is not a commit sha"),
        ("distil-eval", [*eval_ok[:2], "--student", "you/x@", *eval_ok[4:]], 2, "--student you/x@: malformed revision"),
        ("distil-train", [*train_ok, "--teacher", "bad repo!"], 2, "--teacher bad repo!: neither"),
        ("miner", ["--dry-run", "--model-repo", "bad repo!", "--revision", SHA], 2, "'bad repo!'"),
        ("miner", ["--dry-run", "--model-repo", "you/x", "--revision", "zz"], 2, "'zz' is not a commit sha"),
        ("miner", ["--dry-run", "--model-repo", f"you/x@{SHA}"], 2, f"--model-repo you/x --revision {SHA}"),
        # -- bad numbers
        ("distil-check", ["{student}", "--max-params", "abc"], 2, "--max-params: 'abc' is not a number"),
        ("distil-check", ["{student}", "--vocab-size", "-3"], 2, "--vocab-size: '-3' must be a positive"),
        ("distil-eval", [*eval_ok, "--n-prompts", "abc"], 2, "--n-prompts: invalid int value: 'abc'"),
        ("distil-eval", [*eval_ok, "--n-prompts", "0", "--prompts-file", "{p:good.jsonl}"], 2,
         "distil-eval: error: --n-prompts must be a positive integer, got 0"),
        ("distil-eval", [*eval_ok[:4], "--seed", "block 12"], 2, "--seed block 12: not a hex block hash"),
        ("distil-eval", [*eval_ok, "--devices", "cpu,cuda:0"], 2, "--devices must all be of one kind"),
        ("distil-train", [*train_ok, "--max-steps", "abc"], 2, "--max-steps: invalid int value: 'abc'"),
        ("distil-train", [*train_ok, "--max-steps", "0"], 2, "--max-steps must be >= 1"),
        ("distil-train", [*train_ok, "--lr", "-1"], 2, "--lr must be > 0"),
        ("distil-train", [*train_ok, "--on-policy", "2"], 2, "--on-policy: 2 is not in [0, 1]"),
        ("distil-state", ["show", "--netuid", "x"], 2, "--netuid: invalid int value: 'x'"),
        ("validator", [*validator_ok, "--neuron.epochs", "abc"], 2,
         "validator.py: error: argument --neuron.epochs: invalid int value: 'abc'"),
        ("validator", [*validator_ok, "--eval.n_prompts", "0", "--eval.prompts_file", "{p:good.jsonl}"], 2,
         "error: --eval.n_prompts must be a positive integer, got 0"),
        ("validator", [*validator_ok, "--eval.dtype", "int4", "--eval.prompts_file", "{p:good.jsonl}"], 2,
         "error: --eval.dtype must be 'auto' or one of"),
        ("validator", [*validator_ok, "--eval.max_challengers", "0", "--eval.prompts_file", "{p:good.jsonl}"], 2,
         "--eval.max_challengers must be at least 1"),
        ("validator", [*validator_ok, "--neuron.epoch_length", "0", "--eval.prompts_file", "{p:good.jsonl}"], 2,
         "--neuron.epoch_length must be positive"),
        ("miner", ["--status", "--status.timeout", "soon"], 2,
         "miner.py: error: argument --status.timeout: invalid float value: 'soon'"),
        ("distil.demo", ["build", "{root}/demo", "--seed", "x"], 2, "--seed: invalid int value: 'x'"),
        ("distil.sim", ["dethrone", "--round", "{p:list.json}", "--resamples", "many"], 2, "--resamples: invalid int"),
        ("mock-chain", ["register", "--mock.chain_state", "{root}/c.json", "--netuid", "x"], 2, "--netuid: invalid int"),
        ("upgrade", ["--repo", "r", "--dir", "d", "--interval", "often"], 2, "--interval: invalid float value"),
    ]


def fill(text: str, bad: dict) -> str:
    def one(match):
        key = match.group(1)
        if ":" in key:
            kind, name = key.split(":", 1)
            return bad[kind](name)
        return str(bad[key])

    return re.sub(r"\{([a-z-]+(?::[\w.-]+)?)\}", one, text)


CASES = list(cases())


@pytest.mark.parametrize("program,argv,status,names", CASES,
                         ids=[f"{c[0]}:{' '.join(c[1][-2:])}:{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_naming_it_and_the_documented_status(bad, program, argv, status, names, capfd,
                                                                  monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)  # relative paths (./noteacher) resolve to nothing
    scenario = bad["root"] / "scenario.json"
    if not scenario.exists():
        scenario.write_text(json.dumps({"teacher": bad["teacher"], "miners": []}))
    argv = [fill(a, bad) for a in argv]
    try:
        code = _mains()[program](argv)
    except SystemExit as e:  # argparse
        code = e.code
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err, err[-3000:]
    assert out == "", f"{program} {argv}: printed a result for bad input:\n{out[-2000:]}"  # no teacher pass, no table
    lines = [line for line in err.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1, f"{program} {argv}: expected one line, got:\n" + "\n".join(lines)
    assert fill(names, bad) in lines[0], lines[0]
    assert code == status, f"{program} {argv}: exit status {code}, documented {status}: {lines[0]}"


@pytest.mark.skipif(not permission_bits_hold(), reason="this user reads through permission bits (root)")
@pytest.mark.parametrize("program,argv,names", [
    ("distil-check", ["{f:locked}", "--teacher", "{teacher}"], "{f:locked}: cannot read"),
    ("distil-state", ["show", "--state-dir", "{f:locked}"], "--state-dir {f:locked}: cannot read the directory"),
    ("distil-eval", ["--teacher", "{teacher}", "--student", "{f:locked}", "--seed", "01"], "--student {f:locked}: cannot read"),
])
def test_an_unreadable_directory_is_named(bad, program, argv, names, capfd):
    try:
        code = _mains()[program]([fill(a, bad) for a in argv])
    except SystemExit as e:
        code = e.code
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert code == 2 and len(lines) == 1 and fill(names, bad) in lines[0], err


def test_a_mock_start_logs_no_debug_line_without_logging_debug(bad, capfd, tmp_path):
    """The mock world is built before the first epoch (its chain logs each registration at
    DEBUG): without --logging.debug none of it reaches stderr."""
    import validator

    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"teacher": bad["teacher"], "miners": [
        {"hotkey": "5FakeMinerHotkey", "model": bad["student"], "commit_block": 1}]}))
    argv = ["--mock", "--mock.scenario", str(scenario), "--neuron.epochs", "1", "--neuron.axon_off", "--wandb.off",
            "--neuron.full_path", str(tmp_path / "v"), "--eval.prompts_file", str(tmp_path / "missing.jsonl")]
    assert validator.main(argv) == 2  # refused after the mock world was built
    err = capfd.readouterr().err
    assert "--eval.prompts_file" in err and "DEBUG" not in err and "mock chain: registered" not in err, err
    assert validator.main([*argv, "--logging.debug"]) == 2
    assert "mock chain: registered 5FakeMinerHotkey" in capfd.readouterr().err  # the line exists, at DEBUG


def test_a_start_without_network_names_the_endpoint(bad, capfd, monkeypatch, tmp_path):
    """The hub and the chain out of reach: exit 2 (nothing is wrong with the model), and the
    line says which host was tried (a closed local port: refused at once, no DNS)."""
    import miner

    from distil.checks import cli as check

    dead = "http://127.0.0.1:9"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert miner.main(["--dry-run", "--model-repo", "you/model"]) == 2  # resolving the current commit
    err = capfd.readouterr().err
    assert f"hub at {dead} unreachable for you/model" in err and "Traceback" not in err, err
    assert check.main([f"you/model@{SHA}", "--teacher", bad["teacher"], "--endpoint", dead]) == 2
    out = capfd.readouterr().out
    assert f"result: TRANSIENT (HUB_TRANSIENT): hub at {dead} unreachable for you/model" in out, out

    import bittensor as bt

    wallet = bt.Wallet(name="w", hotkey="h", path=str(tmp_path / "wallets"))
    wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    capfd.readouterr()
    import validator

    code = validator.main(["--wallet.name", "w", "--wallet.hotkey", "h", "--wallet.path", str(tmp_path / "wallets"),
                           "--subtensor.network", "ws://127.0.0.1:9", "--neuron.full_path", str(tmp_path / "v"),
                           "--neuron.axon_off", "--wandb.off"])
    err = capfd.readouterr().err
    assert code == 2 and "cannot connect to subtensor network 'local' at ws://127.0.0.1:9" in err, err[-2000:]
