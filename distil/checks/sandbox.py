"""Untrusted work in a child process with a deadline: the one helper for every step that runs a
repo's files (the tokenizer and its battery, the meta build, the load and its short forward,
each student's scoring, the degeneration probe).

    report = run_step("distil.checks.loading:load_step", {"path": p, ...}, step="load", deadline_s=120)
    report.value        # what the function returned (JSON data)
    report.peak_bytes   # the child's peak RSS above its RSS at start (VmHWM - VmRSS at start)

Why a child. Code that cannot be interrupted (a Rust tokenizer's backtracking regex, a
forward that takes hours, a CUDA kernel that faults) stops when its process is killed, and
an asynchronous device error dies with the process that caused it instead of poisoning every
later model. A step over its deadline is killed (SIGKILL) and raises `StepTimeout`; a child
that dies raises `ChildDied` with its signal; an exception the function did not turn into
data raises `ChildError` with its type and message. Functions run here catch their model's
faults themselves and return plain data: nothing but JSON comes back (no pickle from a
process that touched a repo's files; the arguments go down by pickle, from us).

Why a fork server. A fresh interpreter importing torch and transformers costs seconds; the
children fork from a server (`multiprocessing`'s forkserver) that has them, and the Qwen
model classes, imported already (`distil.checks._preload`), so a child starts in about 15 ms.
The server never initialises CUDA (it only imports); a child on a GPU does, itself. The
server is started by the first step, and again if it dies; a child is killed with the
validator (PR_SET_PDEATHSIG) or with `terminate_children()`, the stop path's call, and
then its death is ours (`ChildDied.ours`), never held against its model.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

PRELOAD_MODULE = "distil.checks._preload"
_LOCK = threading.Lock()
_CONTEXT = None
_LIVE: dict[int, Any] = {}  # pid -> Process, for terminate_children()
_STOPPED: set[int] = set()  # pids terminate_children() killed: their deaths are ours
# Signals that end a child for a reason of ours: a read of a memory-mapped file failed
# (SIGBUS: our disk), or we were told to stop (SIGTERM, SIGINT).
OUR_SIGNALS = frozenset({signal.SIGBUS, signal.SIGTERM, signal.SIGINT})


class StepTimeout(TimeoutError):
    """A step ran past its deadline and its child was killed."""

    def __init__(self, step: str, deadline_s: float):
        super().__init__(f"{step}: past its deadline of {deadline_s:.0f}s, stopped")
        self.step, self.deadline_s = step, deadline_s


class ChildDied(RuntimeError):
    """The child ended without an answer: killed by a signal, or exited."""

    def __init__(self, step: str, exitcode: int | None, stopped: bool = False):
        self.step, self.exitcode, self.stopped = step, exitcode, stopped
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None
        if self.signal is not None:
            try:
                how = f"killed by {signal.Signals(self.signal).name}"
            except ValueError:
                how = f"killed by signal {self.signal}"
        else:
            how = f"exited with status {exitcode} without an answer"
        super().__init__(f"{step}: its process was {how}")

    @property
    def ours(self) -> bool:
        """Whether our side ended it (SIGBUS from our disk, SIGTERM/SIGINT, or our stop path)."""
        return self.signal in OUR_SIGNALS or self.stopped


class ChildError(RuntimeError):
    """The step's function raised an exception it did not turn into data (a bug of ours)."""

    def __init__(self, step: str, type_name: str, message: str):
        super().__init__(f"{step}: raised {type_name}: {message}")
        self.step, self.type_name, self.message = step, type_name, message


@dataclass(frozen=True)
class ChildReport:
    """A finished step: its value, wall seconds (fork to answer), the child's RSS at start and
    peak (bytes), and their difference: what the step itself added."""

    value: Any
    seconds: float
    start_rss: int
    peak_rss: int

    @property
    def peak_bytes(self) -> int:
        return max(0, self.peak_rss - self.start_rss)


def terminate_children() -> None:
    """The stop path (SIGTERM, SIGINT): end every running child; their deaths are ours, never a
    model's failure."""
    for pid, process in list(_LIVE.items()):
        _STOPPED.add(pid)
        try:
            process.kill()
        except (OSError, AttributeError, ValueError):
            pass


def _context():
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([PRELOAD_MODULE])
            _CONTEXT = ctx
        return _CONTEXT


def _rss_kib(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child when its parent (the fork server) ends, which it
    does when the validator ends: no orphan keeps a GPU busy."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child(conn, target: str, kwargs: dict, sys_path: list[str], threads: int | None, log_level: str,
           step: str) -> None:
    """The child's entry: run `target(**kwargs)` and send back one JSON document."""
    _die_with_parent()
    start = _rss_kib("VmRSS")
    sys.path[:] = sys_path  # the fork server keeps the path it started with; use the caller's
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=log_level,
               format="{time:YYYY-MM-DD HH:mm:ss} | {level: <7} | " + f"{step} (pid {os.getpid()})" + " | {message}")
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        module, _, name = target.partition(":")
        value = getattr(importlib.import_module(module), name)(**kwargs)
        message = {"ok": value}
    except (KeyboardInterrupt, SystemExit):  # told to stop (Ctrl-C reaches the whole process group)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # die of the signal, so the parent sees whose stop it was
        os._exit(128 + int(signal.SIGINT))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as data
        message = {"error": {"type": type(e).__name__, "message": " ".join(str(e).split())[:2000]}}
    message["rss"] = [start * 1024, _rss_kib("VmHWM") * 1024]
    try:
        conn.send_bytes(json.dumps(message).encode())
    except (TypeError, ValueError) as e:  # a function returned something JSON cannot carry
        conn.send_bytes(json.dumps({"error": {"type": "TypeError", "message": f"unserialisable result: {e}"},
                                    "rss": message["rss"]}).encode())
    conn.close()


def run_step(target: str, kwargs: dict, *, step: str, deadline_s: float, threads: int | None = None,
             log_level: str | None = None) -> ChildReport:
    """Run `target` ("module:function", importable from this process's sys.path) with `kwargs`
    in a fresh child; its JSON-able return value comes back in a `ChildReport`.

    Raises StepTimeout (past `deadline_s`, the child is killed), ChildDied (a signal or an exit
    without an answer) or ChildError (an exception the function let escape). `threads`: torch's
    thread count in the child (default: this process's). Blocking; call it from one thread per
    concurrent step.
    """
    if threads is None:
        threads = _torch_threads()
    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, name=f"distil-{step}", daemon=False,
                          args=(send, target, kwargs, list(sys.path), threads, log_level or _log_level(), step))
    started = time.monotonic()
    process.start()
    send.close()
    _LIVE[process.pid] = process
    try:
        answer = None
        remaining = deadline_s
        while answer is None:
            ready = wait([receive, process.sentinel], timeout=max(0.0, remaining))
            if receive in ready:
                try:
                    answer = json.loads(receive.recv_bytes())
                except (EOFError, OSError):
                    answer = None
                    process.join(5)
                    break
                except ValueError:  # not JSON: treat as a crash of the child
                    answer = {"error": {"type": "ValueError", "message": "the child's answer is not JSON"}}
            elif process.sentinel in ready:
                if receive.poll():
                    continue  # it answered just before exiting
                break
            remaining = deadline_s - (time.monotonic() - started)
            if answer is None and remaining <= 0:
                process.kill()
                process.join()
                if process.pid in _STOPPED:
                    raise ChildDied(step, process.exitcode, stopped=True)
                raise StepTimeout(step, deadline_s)
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join()
        if answer is None:
            raise ChildDied(step, process.exitcode, stopped=process.pid in _STOPPED)
        seconds = time.monotonic() - started
        start_rss, peak_rss = answer.get("rss", [0, 0])
        if "error" in answer:
            raise ChildError(step, answer["error"]["type"], answer["error"]["message"])
        return ChildReport(answer["ok"], seconds, int(start_rss), int(peak_rss))
    finally:
        _LIVE.pop(process.pid, None)
        _STOPPED.discard(process.pid)
        receive.close()
        if process.is_alive():
            process.kill()
            process.join()
        try:
            process.close()
        except ValueError:
            pass


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _log_level() -> str:
    return os.environ.get("DISTIL_LOG_LEVEL", "INFO")
