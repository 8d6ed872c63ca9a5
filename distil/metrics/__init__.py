"""Weights & Biases reporting of the validator's rounds (or nothing, with `--wandb.off`)."""

from distil.metrics.wandb_logger import LEADERBOARD_COLUMNS, DISQUALIFIED_COLUMNS, NullLogger, RoundLogger, WandbLogger, make_logger

__all__ = ["LEADERBOARD_COLUMNS", "DISQUALIFIED_COLUMNS", "NullLogger", "RoundLogger", "WandbLogger", "make_logger"]
