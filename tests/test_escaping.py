"""Issue 25 §4: a miner's (or a peer's) strings cannot forge, erase or hide what an operator reads.

Each output a person reads is driven through its real formatting path with a newline, a
carriage return, ANSI escapes (erase line, conceal), a C1 CSI, a bidi override and a
megabyte-long name: log lines (our loguru sinks), the validator's stdout summary,
`distil-state show`, `distil-check`'s report, the status answer, the W&B tables, and the
check details that quote tensor and key names. (`neurons/miner.py --status` printing a
hostile validator's answer is in tests/test_miner.py; a hostile commitment through a real
validator epoch in tests/test_validator.py.)
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from loguru import logger

from model_builders import edit_json, rewrite_weights
from distil.checks.cli import main as distil_check
from distil.checks.result import CheckFailure
from distil.metrics.report import disqualified_rows, leaderboard_rows, report_epoch
from distil.metrics.wandb_logger import NullLogger, WandbLogger
from distil.protocol import DistilStatus
from distil.scoring import epoch as ep
from distil.state import DISQUALIFIED, EVALUATED, INVALID, KING, PENDING, MinerRecord, ValidatorState, save_state
from distil.state_cli import main as distil_state
from distil.validator.status import status_for
from template.log import setup_logging
from template.text import LINE_LIMIT, LOG_LIMIT, printable

FORGED = "2026-12-05 00:00:00 | INFO | template.base.validator | weights set: {6: 1.0}"
HOSTILE = f"\x1b[2K\r{FORGED}\n\x1b[8mhidden\x9b31m\u202eevil\u2028more\x00"
MEGA = "m" * (1 << 20)
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # all but \t and \n


def assert_safe(text: str, line_limit: int = LINE_LIMIT) -> None:
    """No control character but the newlines between lines, no forged line, every line bounded."""
    assert not RAW.search(text), repr(RAW.search(text))
    for line in text.splitlines():
        assert not line.startswith(FORGED[:19]), line[:120]  # no line that begins like a log line we did not write
        assert len(line) <= line_limit + 200, len(line)


def test_printable_escapes_controls_and_bounds_length():
    assert printable(HOSTILE, 1000) == (
        "\\x1b[2K\\r" + FORGED + "\\n\\x1b[8mhidden\\x9b31m\\u202eevil\\u2028more\\x00")
    assert printable("plain text, é and 漢字 stay", 100) == "plain text, é and 漢字 stay"
    cut = printable(MEGA + HOSTILE, 300)
    assert len(cut) <= 300 and cut.endswith(f"…[{len(MEGA + HOSTILE):,} characters]")
    cut = printable("\n" * 5000, 50)  # escaping never lengthens past the bound, nor leaves half an escape
    assert len(cut) <= 50 and re.fullmatch(r"(\\n)*…\[5,000 characters\]", cut)
    for value in (HOSTILE, MEGA, "\n" * 5000, "ok"):  # idempotent: a stored, escaped value prints unchanged
        once = printable(value, 300)
        assert printable(once, 300) == once


def test_log_lines_cannot_be_forged_erased_or_hidden(capsys):
    setup_logging()
    try:
        logger.info(f"checked: {HOSTILE}")
        logger.info(f"tensor {MEGA}")
        try:
            raise ValueError(f"bad tensor name {HOSTILE}")
        except ValueError as e:
            logger.opt(exception=e).warning("pre-check failed")
    finally:
        logger.remove()
    err = capsys.readouterr().err
    assert_safe(err, LOG_LIMIT)
    lines = err.splitlines()
    assert lines[0].endswith(printable(f"checked: {HOSTILE}", LOG_LIMIT))
    assert lines[1].endswith(f"…[{len(MEGA) + 7:,} characters]")
    assert lines[2].endswith("| pre-check failed") and lines[3] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: " + printable(f"bad tensor name {HOSTILE}", LOG_LIMIT)


def hostile_state() -> ValidatorState:
    kl = {"mean": 0.1, "se": 0.01, "median": 0.1, "p99": 0.3, "top1": 0.5, "seed_block": 100}
    return ValidatorState(king="5King", last_epoch_block=100, miners={
        "5King": MinerRecord(uid=1, commitment="good/model@" + "a" * 40, commit_block=5, status=KING, kl=kl),
        "5Hostile": MinerRecord(uid=2, commitment=HOSTILE, commit_block=6, status=DISQUALIFIED, reason=INVALID,
                                code="COMMITMENT_FORMAT", detail=f"does not parse: {HOSTILE}"),
        "5Mega": MinerRecord(uid=3, commitment="mega/model@" + "b" * 40, commit_block=7, status=PENDING,
                             code="EVAL_LOAD", detail=f"tensor {MEGA}{HOSTILE} could not load"),
        "5Evaluated": MinerRecord(uid=4, commitment="eval/model@" + "c" * 40, commit_block=8, status=EVALUATED,
                                  kl={**kl, "mean": 0.2}),
    })


def test_the_validators_summary_and_distil_state_show(tmp_path, capsys):
    state = hostile_state()
    plan = ep.RoundPlan(king="5King", challengers=("5Mega",))
    events = [ep.Event("disqualified", "5Hostile", f"INVALID commitment: {HOSTILE}"),
              ep.Event("round_failed", None, f"RuntimeError: {MEGA}{HOSTILE}")]
    report_epoch(NullLogger(), 1, 100, state, plan, None, events, 1.0, 0.0)
    out = capsys.readouterr().out
    assert_safe(out)
    assert printable("uid 2 " + HOSTILE, 100)[:60] in out and "pending: uid 3 mega/model (EVAL_LOAD: tensor mmm" in out
    save_state(state, tmp_path)
    assert distil_state(["show", "--state-dir", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert_safe(shown)
    assert printable(HOSTILE) in shown and "5Mega" in shown and "…[" in shown


def test_the_status_answer():
    state = hostile_state()
    for hotkey in state.miners:
        answer = DistilStatus(hotkey=hotkey).fill(status_for(state, hotkey))  # what Validator.attach_axon answers
        for name in DistilStatus.RESPONSE_FIELDS:
            value = getattr(answer, name)
            if isinstance(value, str):
                assert not RAW.search(value) and "\n" not in value, (name, value[:80])
    assert DistilStatus(hotkey="5Mega").fill(status_for(state, "5Mega")).detail.endswith("characters]")


def test_the_wandb_tables(tmp_path):
    state = hostile_state()
    wb = WandbLogger(tmp_path, project="distil-test", mode="offline")
    try:
        wb.log_round(1, {"king": HOSTILE, "king_kl": 0.1}, leaderboard_rows(state), disqualified_rows(state), {}, None)
        payload = wb.logged[-1]
        cells = [c for table in ("leaderboard", "disqualified") for row in payload[table].data for c in row]
        assert printable(HOSTILE) in cells and payload["king"] == printable(HOSTILE)
        for cell in cells:
            if isinstance(cell, str):
                assert not RAW.search(cell) and "\n" not in cell and len(cell) <= 300
        assert wb.run.summary["king"] == printable(HOSTILE)
    finally:
        wb.finish()


def test_distil_check_report_quotes_a_hostile_tensor_name_safely(valid_model, teacher_dir, tmp_path, capsys):
    name = f"model.layers.0.{HOSTILE}{MEGA}.weight"
    bad = rewrite_weights(valid_model, tmp_path / "bad", lambda t: {**t, name: torch.zeros(2, dtype=torch.bfloat16)})
    assert distil_check([str(bad), "--teacher", str(teacher_dir)]) == 1
    out = capsys.readouterr().out
    assert_safe(out)
    assert "ARCH_UNUSED_TENSORS" in out and "model.layers.0.\\x1b[2K\\r2026-12-05" in out
    assert distil_check([str(bad), "--teacher", str(teacher_dir), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["code"] == "ARCH_UNUSED_TENSORS" and not RAW.search(doc["detail"]) and "\n" not in doc["detail"]
    assert len(doc["detail"]) <= 1000


@pytest.mark.parametrize("code", ["ARCH_UNUSED_TENSORS", "QUANTIZED", "DTYPE", "EMBEDDING_SHAPE"])
def test_check_details_quoting_names_are_escaped_and_bounded(code, valid_model, teacher_dir, tmp_path, capsys):
    """The details that quote tensor or key names, each raised by its real check through distil-check."""
    bad = tmp_path / code
    if code == "ARCH_UNUSED_TENSORS":
        rewrite_weights(valid_model, bad, lambda t: {**t, f"{HOSTILE}{MEGA}": torch.zeros(2, dtype=torch.bfloat16)})
    elif code == "QUANTIZED":
        rewrite_weights(valid_model, bad, lambda t: t)
        edit_json(bad / "config.json", lambda c: c.update({HOSTILE + MEGA: {"quantization_config": {"bits": 4}}}))
    elif code == "DTYPE":
        rewrite_weights(valid_model, bad, lambda t: {**t, f"model.{HOSTILE}{MEGA}": torch.zeros(2, dtype=torch.float32)})
    else:
        def shrink(t):
            key = next(k for k in t if k.endswith("embed_tokens.weight"))
            return {**{k: v for k, v in t.items() if k != key}, key.replace("model.", f"model.{HOSTILE}{MEGA}."): t[key][:8]}

        rewrite_weights(valid_model, bad, shrink)
    rc = distil_check([str(bad), "--teacher", str(teacher_dir), "--json"])
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 1 and doc["code"] == code, doc
    assert not RAW.search(doc["detail"]) and "\n" not in doc["detail"] and len(doc["detail"]) <= 1000
    assert "\\x1b[2K\\r" in doc["detail"], doc["detail"][:300]


def test_every_check_detail_is_escaped_at_the_raise():
    failure = CheckFailure("TOKENIZER_VOCAB", f"token {HOSTILE}{MEGA}")
    assert not RAW.search(failure.detail) and len(failure.detail) <= 1000 and str(failure).startswith("TOKENIZER_VOCAB: ")
