"""Secrets never reach a log line; wallet paths do."""

import io

from loguru import logger

from template.log import redact, setup_logging


def test_redact_masks_tokens_and_credentials(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    text = (
        "token=hf_abcdefghijklmnopqrstuvwxyz0123 password: hunter22 "
        "Authorization: Bearer sk-live-xyz wandb key 0123456789abcdef0123456789abcdef01234567 "
        "wallet at /root/.bittensor/wallets/w/hotkeys/h revision " + "ab" * 20
    )
    out = redact(text)
    for secret in ("hf_abcdefghijklmnopqrstuvwxyz0123", "hunter22", "sk-live-xyz", "0123456789abcdef0123456789abcdef01234567"):
        assert secret not in out
    assert "/root/.bittensor/wallets/w/hotkeys/h" in out
    assert "ab" * 20 in out  # commit shas are not secrets


def test_loguru_records_are_redacted():
    setup_logging()
    sink = io.StringIO()
    handler = logger.add(sink, format="{message}")
    try:
        logger.info("downloading with hf_ZZZZZZZZZZZZZZZZZZZZZZZZ1")
    finally:
        logger.remove(handler)
    assert "hf_ZZZZ" not in sink.getvalue() and "***" in sink.getvalue()
