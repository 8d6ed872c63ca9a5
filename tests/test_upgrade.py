"""The opt-in upgrade runner (`python -m distil.upgrade`) against a real local git repository
with release tags (no network): it starts the newest release, moves to a newer tag once that
tag's install passed, rolls back a release that dies at start (state.json put back), never
tries a failed tag again, and stops its validator on the way out.

Each release's `neurons/validator.py` is a stand-in that records its start and its stop; its
install step writes the `.venv/bin/python` the runner starts it with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distil import upgrade

VALIDATOR = """\
import json, pathlib, signal, sys, time
log = pathlib.Path(sys.argv[sys.argv.index("--log") + 1])
state = pathlib.Path(sys.argv[sys.argv.index("--state") + 1])
def record(event):
    with open(log, "a") as f:
        f.write(json.dumps({{"tag": "{tag}", "event": event, "args": sys.argv[1:]}}) + "\\n")
record("start")
if {broken}:
    state.write_text('{{"version": 99}}')  # a newer release migrates the state, then dies
    sys.exit(3)
def stop(signum, frame):
    record("stop")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.1)
"""
INSTALL = f"""\
mkdir -p .venv/bin && ln -s {sys.executable} .venv/bin/python
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


def release(repo: Path, tag: str, broken: bool = False, install: str = INSTALL) -> None:
    (repo / "neurons").mkdir(parents=True, exist_ok=True)
    (repo / "neurons" / "validator.py").write_text(VALIDATOR.format(tag=tag, broken=broken))
    (repo / "install.sh").write_text(install)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", tag)
    git(repo, "tag", tag)


def events(log: Path) -> list[tuple[str, str]]:
    return [(e["tag"], e["event"]) for e in map(json.loads, log.read_text().splitlines())] if log.exists() else []


def wait_for(log: Path, expected: list[tuple[str, str]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while events(log) != expected:
        assert time.monotonic() < deadline, events(log)
        time.sleep(0.1)


@pytest.fixture
def world(tmp_path):
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"version": 1, "king": "hk"}')
    log = tmp_path / "validator.log"
    releases = upgrade.Releases(tmp_path / "releases", str(repo), "sh install.sh")
    runner = upgrade.Runner(releases, ["--log", str(log), "--state", str(state / "state.json")], health_s=1.5,
                            stop_timeout_s=10, state_dir=str(state))
    yield repo, releases, runner, log, state
    runner.stop_validator()


def test_release_tags_are_ordered_by_version_and_failed_ones_skipped():
    tags = ["v0.9.0", "v0.10.0", "v0.10.1-rc1", "latest", "0.2.0"]
    assert upgrade.newest_release(tags) == "v0.10.0"  # 10 > 9, not string order; no pre-releases
    assert upgrade.newest_release(tags, skip=["v0.10.0"]) == "v0.9.0"
    assert upgrade.newest_release(["latest"]) is None


def test_upgrade_to_a_new_tag_then_roll_back_a_release_that_dies(world):
    repo, releases, runner, log, state = world
    release(repo, "v0.1.0")
    runner.start_current()  # nothing installed yet: the newest release
    wait_for(log, [("v0.1.0", "start")])
    assert releases.current == "v0.1.0" and runner.check() is None  # nothing newer

    release(repo, "v0.2.0")
    assert runner.check() == "v0.2.0"
    assert events(log) == [("v0.1.0", "start"), ("v0.1.0", "stop"), ("v0.2.0", "start")]
    assert releases.current == "v0.2.0" and (releases.path("v0.2.0") / ".venv" / "bin" / "python").exists()
    assert json.loads(log.read_text().splitlines()[-1])["args"] == runner.validator_args  # the same command line

    release(repo, "v0.3.0", broken=True)  # starts, migrates the state, dies
    assert runner.check() is None
    wait_for(log, [("v0.1.0", "start"), ("v0.1.0", "stop"), ("v0.2.0", "start"), ("v0.2.0", "stop"), ("v0.3.0", "start"),
                   ("v0.2.0", "start")])  # rolled back
    assert releases.current == "v0.2.0" and releases.failed == ["v0.3.0"]
    assert json.loads((state / "state.json").read_text()) == {"version": 1, "king": "hk"}  # put back
    assert runner.check() is None and len(events(log)) == 6  # a failed tag is never tried again

    release(repo, "v0.4.0", install="exit 7")  # cannot even be installed: the running validator is untouched
    assert runner.check() is None and len(events(log)) == 6
    assert releases.failed == ["v0.3.0", "v0.4.0"] and not releases.path("v0.4.0").exists()
    assert runner.process.poll() is None and runner.tag == "v0.2.0"
    runner.stop_validator()
    assert events(log)[-1] == ("v0.2.0", "stop")


def test_the_runner_stops_its_validator_on_sigterm_and_names_a_repo_without_releases(tmp_path):
    repo = tmp_path / "upstream"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("no release yet")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    done = subprocess.run([sys.executable, "-m", "distil.upgrade", "--repo", str(repo), "--dir", str(tmp_path / "r"),
                           "--", "--wallet.name", "v"], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        f"python -m distil.upgrade: error: {repo} has no release tag (vMAJOR.MINOR.PATCH)")
    log = tmp_path / "validator.log"
    release(repo, "v1.0.0")
    runner = subprocess.Popen([sys.executable, "-m", "distil.upgrade", "--repo", str(repo), "--dir", str(tmp_path / "r"),
                               "--install", "sh install.sh", "--interval", "3600", "--",
                               "--log", str(log), "--state", str(tmp_path / "state.json")],
                              cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(log, [("v1.0.0", "start")])
        runner.send_signal(15)
        assert runner.wait(timeout=60) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
    assert events(log) == [("v1.0.0", "start"), ("v1.0.0", "stop")]
    assert "received SIGTERM; stopping" in runner.stderr.read()
