"""Run the validator and move it to each new release tag, unattended (opt-in; never on by default).

    python -m distil.upgrade --repo <repository URL> --dir ~/distil-releases \\
        -- --wallet.name validator --wallet.hotkey default --netuid 97 --neuron.device cuda

Run this under pm2 or systemd in place of `neurons/validator.py`; everything after `--` is
the validator's own command line. Every `--interval` seconds it asks the upstream repo for
its release tags (`git ls-remote --tags`, tags `vMAJOR.MINOR.PATCH`). When a newer one
appears it checks it out into a fresh directory, `DIR/releases/<tag>`, and runs `--install`
there (`make install`: the release's own `.venv`), while the running validator goes on.
Only then is the validator stopped (SIGTERM: it finishes its W&B run; its state is only
ever replaced whole, and a round cut short is scored again) and the new release started
with the same arguments. A release that exits within `--health-s` seconds of its start is
rolled back: the previous release starts again and the tag is never tried again
(`DIR/failed`). With `--state-dir`, `state.json` is copied before the switch and put back
on a rollback, so an older release never meets a state a newer one migrated.

The validator's state must live outside `DIR` (its default `--neuron.full_path` does), so
every release reads the same state. The runner does not upgrade itself: it runs from the
checkout that started it. If the validator exits on its own, the runner exits with its
status and pm2 or systemd restarts it, on the current release (`DIR/current`).
Exit status: 0 after SIGTERM or SIGINT, the validator's status when it exits on its own,
2 when no release can be prepared or started (distil/exits.py).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from loguru import logger

from distil.exits import EXIT_ERROR, EXIT_OK
from template.args import ArgumentParser, one_line

RELEASE_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")  # release tags only: no pre-releases (v1.2.0-rc1)


class UpgradeError(Exception):
    """A release could not be listed, checked out or installed; the message says which and why."""


def version_of(tag: str) -> tuple[int, int, int] | None:
    match = RELEASE_TAG.match(tag)
    return tuple(int(x) for x in match.groups()) if match else None


def newest_release(tags: Sequence[str], skip: Sequence[str] = ()) -> str | None:
    """The highest release tag not in `skip` (pure)."""
    releases = [t for t in tags if version_of(t) is not None and t not in skip]
    return max(releases, key=version_of, default=None)


def _git(*args: str, cwd: str | Path | None = None, timeout: float = 600) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UpgradeError(f"git {args[0]}: {type(e).__name__}: {one_line(e)}") from None
    if done.returncode != 0:
        raise UpgradeError(f"git {args[0]} failed: {one_line(done.stderr or done.stdout)}")
    return done.stdout


def remote_tags(repo: str) -> list[str]:
    """The tag names of `repo` (a URL or a path), asked of the remote itself."""
    lines = _git("ls-remote", "--tags", "--refs", repo, timeout=120).splitlines()
    return [line.split("refs/tags/", 1)[1] for line in lines if "refs/tags/" in line]


class Releases:
    """`DIR/releases/<tag>` checkouts, `DIR/current` (the tag that runs) and `DIR/failed`."""

    def __init__(self, root: str | Path, repo: str, install: str):
        self.root = Path(root).expanduser().absolute()
        self.repo = repo
        self.install = install
        (self.root / "releases").mkdir(parents=True, exist_ok=True)

    def path(self, tag: str) -> Path:
        return self.root / "releases" / tag

    @property
    def current(self) -> str | None:
        file = self.root / "current"
        tag = file.read_text().strip() if file.is_file() else ""
        return tag if tag and self.path(tag).is_dir() else None

    def set_current(self, tag: str) -> None:
        tmp = self.root / "current.tmp"
        tmp.write_text(tag + "\n")
        os.replace(tmp, self.root / "current")

    @property
    def failed(self) -> list[str]:
        file = self.root / "failed"
        return file.read_text().split() if file.is_file() else []

    def mark_failed(self, tag: str) -> None:
        with open(self.root / "failed", "a") as f:
            f.write(tag + "\n")

    def prepare(self, tag: str) -> Path:
        """Check `tag` out into a fresh directory and run the install command there; the
        directory appears under its final name only once both succeeded."""
        final = self.path(tag)
        if final.is_dir():
            return final
        work = final.with_name(f".{tag}.tmp")
        shutil.rmtree(work, ignore_errors=True)
        logger.info(f"upgrade: checking out {tag} of {self.repo} into {final}")
        try:
            _git("clone", "--quiet", "--depth", "1", "--branch", tag, self.repo, str(work))
            logger.info(f"upgrade: installing {tag}: {self.install}")
            done = subprocess.run(self.install, shell=True, cwd=work, capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
                raise UpgradeError(f"installing {tag} failed ({self.install}): {one_line(tail[0])}")
        except (UpgradeError, OSError, subprocess.TimeoutExpired) as e:
            shutil.rmtree(work, ignore_errors=True)
            raise e if isinstance(e, UpgradeError) else UpgradeError(f"installing {tag}: {one_line(e)}") from None
        os.replace(work, final)
        return final

    def prune(self, keep: Sequence[str]) -> None:
        """Delete release checkouts other than `keep` (the current one and the one before it)."""
        for path in (self.root / "releases").iterdir():
            if path.name not in keep and not path.name.startswith("."):
                shutil.rmtree(path, ignore_errors=True)


class Runner:
    """One validator process at a time, on the current release; `check()` moves it to a newer one."""

    def __init__(self, releases: Releases, validator_args: Sequence[str], python: str = ".venv/bin/python",
                 health_s: float = 120.0, stop_timeout_s: float = 120.0, state_dir: str | None = None):
        self.releases = releases
        self.validator_args = list(validator_args)
        self.python = python
        self.health_s = health_s
        self.stop_timeout_s = stop_timeout_s
        self.state_dir = Path(state_dir).expanduser() if state_dir else None
        self.process: subprocess.Popen | None = None
        self.tag: str | None = None
        self.stopping = threading.Event()

    # -- one validator process ------------------------------------------------------------

    def start(self, tag: str) -> subprocess.Popen:
        where = self.releases.path(tag)
        command = [str(where / self.python), "neurons/validator.py", *self.validator_args]
        logger.info(f"upgrade: starting the validator of {tag}: {shlex.join(command)}")
        self.process, self.tag = subprocess.Popen(command, cwd=where), tag
        return self.process

    def stop_validator(self) -> int | None:
        """SIGTERM (the validator finishes its W&B run and exits), SIGKILL after `stop_timeout_s`."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning(f"upgrade: the validator did not stop within {self.stop_timeout_s:g}s; killing it")
            process.kill()
            return process.wait()

    def healthy(self, process: subprocess.Popen) -> bool:
        """Whether `process` is still running `health_s` seconds after its start."""
        deadline = time.monotonic() + self.health_s
        while time.monotonic() < deadline and not self.stopping.is_set():
            if process.poll() is not None:
                return False
            time.sleep(0.2)
        return process.poll() is None

    # -- releases -----------------------------------------------------------------------------

    def start_current(self) -> None:
        """Start the current release, or the newest one when there is none yet. UpgradeError when
        there is nothing to start."""
        tag = self.releases.current
        if tag is None:
            tag = newest_release(remote_tags(self.releases.repo), self.releases.failed)
            if tag is None:
                raise UpgradeError(f"{self.releases.repo} has no release tag (vMAJOR.MINOR.PATCH)")
            self.releases.prepare(tag)
            self.releases.set_current(tag)
        self.start(tag)

    def check(self) -> str | None:
        """Ask upstream for a newer release and move to it; returns the tag now running when it
        changed, else None. Never raises for upstream trouble: it is logged and tried next time."""
        try:
            tag = newest_release(remote_tags(self.releases.repo), self.releases.failed)
        except UpgradeError as e:
            logger.warning(f"upgrade: cannot list the releases of {self.releases.repo} ({e}); trying again later")
            return None
        current = self.releases.current
        if tag is None or (current is not None and version_of(tag) <= version_of(current)):
            return None
        try:
            self.releases.prepare(tag)
        except UpgradeError as e:  # the running validator was never touched
            logger.error(f"upgrade: {e}; staying on {current}, {tag} will not be tried again")
            self.releases.mark_failed(tag)
            return None
        return self.switch(tag, current)

    def switch(self, tag: str, previous: str | None) -> str | None:
        snapshot = self._snapshot_state(tag)
        logger.info(f"upgrade: {previous} -> {tag}: stopping the validator")
        self.stop_validator()
        process = self.start(tag)
        if self.healthy(process):
            self.releases.set_current(tag)
            self.releases.prune(keep=[tag, previous] if previous else [tag])
            logger.info(f"upgrade: {tag} is running (the previous release {previous} is kept for a manual rollback)")
            return tag
        status = process.poll()
        logger.error(f"upgrade: {tag} exited within {self.health_s:g}s of its start (status {status}); rolling back "
                     f"to {previous}; {tag} will not be tried again")
        self.releases.mark_failed(tag)
        self.stop_validator()
        self._restore_state(snapshot)
        if previous is not None:
            self.start(previous)
        return None

    def _snapshot_state(self, tag: str) -> Path | None:
        if self.state_dir is None or not (self.state_dir / "state.json").is_file():
            return None
        copy = self.state_dir / f"state.json.before-{tag}"
        shutil.copy2(self.state_dir / "state.json", copy)
        return copy

    def _restore_state(self, snapshot: Path | None) -> None:
        if snapshot is not None and snapshot.is_file():
            os.replace(snapshot, self.state_dir / "state.json")
            logger.info(f"upgrade: {self.state_dir / 'state.json'} restored from before the upgrade")

    # -- the loop -------------------------------------------------------------------------------

    def run(self, interval_s: float) -> int:
        """Start, then check every `interval_s` until a stop signal (0) or the validator exits on
        its own (its status, for pm2 or systemd to restart the runner)."""
        self.start_current()
        next_check = time.monotonic() + interval_s
        while not self.stopping.is_set():
            if self.process is not None and (status := self.process.poll()) is not None:
                logger.error(f"upgrade: the validator of {self.tag} exited with status {status}")
                return status or EXIT_ERROR
            if time.monotonic() >= next_check:
                self.check()
                next_check = time.monotonic() + interval_s
            time.sleep(0.5)
        logger.info("upgrade: stopping the validator")
        self.stop_validator()
        return EXIT_OK


def build_parser():
    parser = ArgumentParser(prog="python -m distil.upgrade", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", required=True, help="the upstream git repository (URL or path) whose tags are releases")
    parser.add_argument("--dir", required=True, help="where releases are checked out (DIR/releases/<tag>)")
    parser.add_argument("--interval", type=float, default=1800.0, help="seconds between checks (default: %(default)s)")
    parser.add_argument("--install", default="make install",
                        help="command run in a new release's directory to build its environment (default: %(default)s)")
    parser.add_argument("--python", default=".venv/bin/python",
                        help="the release's interpreter, relative to its directory (default: %(default)s)")
    parser.add_argument("--health-s", type=float, default=120.0,
                        help="a new release that exits within this many seconds is rolled back (default: %(default)s)")
    parser.add_argument("--stop-timeout-s", type=float, default=120.0,
                        help="seconds the validator has to stop after SIGTERM (default: %(default)s)")
    parser.add_argument("--state-dir", default=None,
                        help="the validator's --neuron.full_path: state.json is copied before a switch and put back "
                             "on a rollback")
    parser.add_argument("validator_args", nargs="*", metavar="-- VALIDATOR ARGS",
                        help="the validator's own arguments, after --")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from template.log import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()
    runner = Runner(Releases(args.dir, args.repo, args.install), args.validator_args, args.python, args.health_s,
                    args.stop_timeout_s, args.state_dir)

    def on_signal(signum, frame):  # the loop sees it within half a second and stops the validator
        logger.warning(f"upgrade: received {signal.Signals(signum).name}; stopping")
        runner.stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        return runner.run(args.interval)
    except UpgradeError as e:
        print(f"python -m distil.upgrade: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        runner.stop_validator()


if __name__ == "__main__":
    sys.exit(main())
