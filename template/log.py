"""Logging through loguru, with bittensor's own logs still visible and secrets masked.

Secrets that could reach a log line (Hugging Face and W&B tokens, mostly through an
exception message or a URL) are replaced by `***` in every record. Wallet paths are not
secrets and stay visible.
"""

from __future__ import annotations

import os
import re
import sys

from loguru import logger

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


def _patch(record) -> None:
    record["message"] = redact(record["message"])
    if record["exception"] is not None:
        exc = record["exception"]
        if exc.value is not None:
            record["extra"]["redacted_exception"] = redact(str(exc.value))


_FORMAT = "<green>{time:YYYY-MM-DD HH:mm:ss}</green> | <level>{level: <7}</level> | <cyan>{name}</cyan> | {message}"


def setup_logging(debug: bool = False, trace: bool = False, logfile: str | None = None, level: str | None = None) -> None:
    """Configure loguru (stderr, optionally a file), secrets masked; and bittensor's level if it is loaded."""
    level = (level or ("TRACE" if trace else "DEBUG" if debug else "INFO")).upper()
    logger.remove()
    logger.configure(patcher=_patch)
    # sys.stderr is looked up at each write, so a replaced stderr (pytest, daemons) is followed
    logger.add(lambda message: sys.stderr.write(message), level=level, format=_FORMAT, colorize=sys.stderr.isatty(),
               backtrace=False, diagnose=False)
    if logfile:
        logger.add(logfile, level="DEBUG", rotation="50 MB", retention=5, backtrace=False, diagnose=False)
    bt = sys.modules.get("bittensor")  # never imported just for this (the CLIs do not need it)
    if bt is None:
        return
    try:
        # bittensor prints "... enabled." on stdout when its level changes, so it is only
        # touched when asked: stdout stays clean for the commands whose output is data.
        if trace:
            bt.logging.set_trace(True)
        elif debug:
            bt.logging.set_debug(True)
    except Exception:  # logging setup must never stop a neuron
        pass


def setup_logging_from_config(config, logfile: str | None = None) -> None:
    """Levels from `--logging.debug` / `--logging.trace`; `--logging.record_log` also writes
    `<neuron.full_path>/logs/distil.log` (rotated at 50 MB, 5 kept)."""
    if logfile is None and config.logging.record_log and config.get("neuron") and config.neuron.full_path:
        logfile = os.path.join(config.neuron.full_path, "logs", "distil.log")
    setup_logging(bool(config.logging.debug), bool(config.logging.trace), logfile)
