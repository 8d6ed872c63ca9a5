"""Logging through loguru, with bittensor's own logs still visible and secrets masked.

Every log line goes to stderr (stdout is for a command's data and the validator's epoch
summaries), coloured only when stderr is a terminal, and to the log file when there is
one. bittensor's own `bt.logging` writes to stdout through a queue listener, with colour
codes; its records are routed here instead (`route_bittensor_logs`).

Secrets that could reach a log line (Hugging Face and W&B tokens, mostly through an
exception message or a URL) are replaced by `***` in every record. Wallet paths are not
secrets and stay visible.

Every record is one line: its message goes through `template.text.printable` (control
characters escaped, at most `LOG_LIMIT` characters), so a miner's commitment, file or
tensor name, or a peer's answer, cannot forge, erase or hide a line. A traceback keeps its
lines, but the exception's message in it is escaped the same way.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback

from loguru import logger

from template.text import LOG_LIMIT, printable

_SECRET_PATTERNS = [
    re.compile(r"hf_[A-Za-z0-9]{20,}"),  # Hugging Face user access tokens
    re.compile(r"(?i)(authorization:\s*bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)((?:api[_-]?key|token|password|secret)\s*[=:]\s*)[^\s,'\"]+"),
]
_SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "BT_COLDKEY_PASSWORD")


def redact(text: str) -> str:
    """Mask tokens and credentials in `text`."""
    for name in _SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, "***")
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + "***", text)
        else:
            text = pattern.sub("***", text)
    return text


def _safe_traceback(exc: BaseException, seen: set[int] | None = None) -> str:
    """The traceback of `exc` (and of its cause or context), each exception's message escaped.

    Frames are our code's file names and source lines; the message is where a repo's or a
    peer's text lands, so it is the part made one line."""
    seen = set() if seen is None else seen
    seen.add(id(exc))
    parts = []
    if exc.__cause__ is not None and id(exc.__cause__) not in seen:
        parts += [_safe_traceback(exc.__cause__, seen),
                  "\nThe above exception was the direct cause of the following exception:\n\n"]
    elif exc.__context__ is not None and not exc.__suppress_context__ and id(exc.__context__) not in seen:
        parts += [_safe_traceback(exc.__context__, seen),
                  "\nDuring handling of the above exception, another exception occurred:\n\n"]
    if exc.__traceback__ is not None:
        parts += ["Traceback (most recent call last):\n", *traceback.format_tb(exc.__traceback__)]
    message = "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
    parts.append(printable(message, LOG_LIMIT) + "\n")
    return "".join(parts)


def _patch(record) -> None:
    record["message"] = printable(redact(record["message"]), LOG_LIMIT)
    exc = record["exception"]
    if exc is not None and exc.value is not None:
        # our sinks print this one (`_format`), never loguru's rendering of the raw exception
        record["extra"]["traceback"] = redact(_safe_traceback(exc.value))


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# bittensor's axon logs every refused request at ERROR ("BlacklistedException#<uuid>: ...").
# Refusing unregistered or over-eager callers is the blacklist doing its job, not an error.
_ROUTINE_BITTENSOR_ERRORS = ("BlacklistedException#",)


class _ToLoguru(logging.Handler):
    """A `logging` handler that hands each record to loguru (level, logger name, message)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = _ANSI.sub("", record.getMessage())
            level: str | int = record.levelname
            if message.startswith(_ROUTINE_BITTENSOR_ERRORS):
                level = "DEBUG"
            try:
                logger.level(level)
            except (ValueError, TypeError):
                level = record.levelno
            logger.patch(lambda r: r.update(name=record.name)).log(level, message)
        except Exception:  # a log line must never raise into bittensor's listener thread
            self.handleError(record)


def route_bittensor_logs(bt) -> None:
    """Send `bt.logging`'s records to loguru instead of its coloured stdout stream.

    bittensor 10.5 funnels its loggers through a `QueueListener` whose handlers are a
    `StreamHandler(sys.stdout)` (and a file handler with `--logging.record_log`); both are
    replaced by one handler into loguru, which writes stderr and our log file.
    """
    machine = bt.logging
    handler = _ToLoguru()
    machine._handlers = [handler]  # what bittensor's own reconfiguration appends to
    machine._listener.handlers = (handler,)


_FORMAT = "<green>{time:YYYY-MM-DD HH:mm:ss}</green> | <level>{level: <7}</level> | <cyan>{name}</cyan> | {message}"


def _format(record) -> str:
    """The line, then the escaped traceback when the record carries one (see `_patch`). A format
    function, not a string: loguru appends its own rendering of the exception to string formats only."""
    return _FORMAT + ("\n{extra[traceback]}" if record["extra"].get("traceback") else "\n")


def setup_logging(debug: bool = False, trace: bool = False, logfile: str | None = None, level: str | None = None) -> None:
    """Configure loguru (stderr, optionally a file), secrets masked; and bittensor's level if it is loaded."""
    level = (level or ("TRACE" if trace else "DEBUG" if debug else "INFO")).upper()
    logger.remove()
    logger.configure(patcher=_patch)
    # sys.stderr is looked up at each write, so a replaced stderr (pytest, daemons) is followed
    logger.add(lambda message: sys.stderr.write(message), level=level, format=_format, colorize=sys.stderr.isatty(),
               backtrace=False, diagnose=False)
    if logfile:
        file_level = "TRACE" if level == "TRACE" else "DEBUG"
        logger.add(logfile, level=file_level, format=_format, colorize=False, rotation="50 MB", retention=5,
                   backtrace=False, diagnose=False)
    logger.debug(f"logging at {level} to stderr" + (f" and {os.path.abspath(logfile)}" if logfile else ""))
    bt = sys.modules.get("bittensor")  # never imported just for this (the CLIs do not need it)
    if bt is None:
        return
    try:
        route_bittensor_logs(bt)
        if trace:
            bt.logging.set_trace(True)
        elif debug:
            bt.logging.set_debug(True)
    except Exception as e:  # logging setup must never stop a neuron
        logger.warning(f"could not route bittensor's logs: {type(e).__name__}: {e}")


LOG_FILE_NAME = "distil.log"


def log_file_for(config) -> str | None:
    """Where a neuron's log file goes, if anywhere.

    `--logging.logging_dir DIR` given on the command line: `DIR/distil.log`. Otherwise
    `--logging.record_log`: `<neuron.full_path>/logs/distil.log`. Neither: no file.
    """
    from template.config import is_set  # here: it imports bittensor, which the CLIs never need

    logging_dir = config.logging.get("logging_dir")
    if logging_dir and is_set(config, "logging.logging_dir"):
        return os.path.join(os.path.expanduser(logging_dir), LOG_FILE_NAME)
    if config.logging.record_log and config.get("neuron") and config.neuron.full_path:
        return os.path.join(config.neuron.full_path, "logs", LOG_FILE_NAME)
    return None


def setup_logging_from_config(config, logfile: str | None = None) -> None:
    """Levels from `--logging.debug` / `--logging.trace`; the log file of `log_file_for`
    (DEBUG and up whatever the level on stderr; rotated at 50 MB, 5 kept)."""
    setup_logging(bool(config.logging.debug), bool(config.logging.trace), logfile or log_file_for(config))
