"""One W&B run per validator, resumed across restarts; one log entry and artifact per round.

Per round: the leaderboard table, the king, each model's KL statistics, disqualifications
with reasons, the timings of each phase, and an artifact `round-<seed_block>` holding
`round.json`: the round's seed block, seed, resolved spec, prompt and continuation token
ids and per-prompt KL (the format `distil-eval --json` prints), so any miner can re-score
a model on exactly that round's tokens with `distil-eval --round round.json` (the same
document is kept as `<full_path>/rounds/round-<block>.json`).

Every epoch logs the whole summary (king, its KL, `epoch_block`, `n_models`,
`n_disqualified`) and its timings, and each entry is committed at once; a timing the last
epoch did not have (a round phase, after an epoch without a round) is removed from the run
summary, so the summary always describes the last epoch.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from template.text import printable

# `rank` is the place within `round` (the seed block the KL was measured in): KLs of different rounds are not comparable
LEADERBOARD_COLUMNS = ["round", "rank", "uid", "hotkey", "commitment", "status", "kl_mean", "kl_se", "kl_median", "kl_p99",
                       "top1_agreement"]
DISQUALIFIED_COLUMNS = ["uid", "hotkey", "commitment", "reason", "code", "detail"]


class RoundLogger(Protocol):
    def log_round(
        self,
        step: int,
        summary: dict[str, Any],
        leaderboard: list[dict[str, Any]],
        disqualified: list[dict[str, Any]],
        timings: dict[str, float],
        round_json: dict[str, Any] | None,
    ) -> None: ...

    def log_epoch(self, step: int, values: dict[str, Any]) -> None: ...

    def finish(self) -> None: ...


class NullLogger:
    """`--wandb.off`: report nothing."""

    def log_round(self, step, summary, leaderboard, disqualified, timings, round_json) -> None:
        pass

    def log_epoch(self, step, values) -> None:
        pass

    def finish(self) -> None:
        pass


def _safe(value: Any) -> Any:
    """Strings (hotkeys, commitments, details: a miner's text) escaped and bounded for the dashboard."""
    return printable(value) if isinstance(value, str) else value


def _rows(records: list[dict[str, Any]], columns: list[str]) -> list[list[Any]]:
    return [[_safe(record.get(c)) for c in columns] for record in records]


class WandbLogger:
    """A W&B run whose id is kept in `<state_dir>/wandb_run_id`, so restarts resume it."""

    def __init__(
        self,
        state_dir: str | Path,
        project: str = "distil",
        entity: str | None = None,
        config: dict[str, Any] | None = None,
        name: str | None = None,
        mode: str | None = None,
    ):
        import wandb

        self._wandb = wandb
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        id_file = state_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:16]
        self.run = wandb.init(
            project=project,
            entity=entity,
            id=run_id,
            resume="allow",
            name=name,
            dir=str(state_dir),
            config=config or {},
            mode=mode or os.environ.get("WANDB_MODE") or "online",
            reinit="finish_previous",
        )
        id_file.write_text(self.run.id)
        # the last few things handed to the run (bounded: a validator runs for months)
        self.logged: deque[dict[str, Any]] = deque(maxlen=32)
        self.artifacts: deque[Any] = deque(maxlen=8)
        logger.info(f"W&B run {self.run.id} ({project}) in {self.run.dir}")

    def log_round(self, step, summary, leaderboard, disqualified, timings, round_json) -> None:
        wandb = self._wandb
        payload: dict[str, Any] = {
            "leaderboard": wandb.Table(columns=LEADERBOARD_COLUMNS, data=_rows(leaderboard, LEADERBOARD_COLUMNS)),
            "disqualified": wandb.Table(columns=DISQUALIFIED_COLUMNS, data=_rows(disqualified, DISQUALIFIED_COLUMNS)),
            "n_models": len(leaderboard),
            "n_disqualified": len(disqualified),
            **{k: _safe(v) for k, v in summary.items()},
        }
        for row in leaderboard:
            for stat in ("kl_mean", "kl_se", "kl_median", "kl_p99", "top1_agreement"):
                if row.get(stat) is not None:
                    payload[f"models/{_safe(row['hotkey'])}/{stat}"] = row[stat]
        for phase, seconds in timings.items():
            payload[f"timings/{phase.removesuffix('_s')}_s"] = seconds
        self._log(step, payload, {k: _safe(v) for k, v in summary.items()})
        if round_json is not None:
            artifact = wandb.Artifact(
                f"round-{round_json.get('seed_block', step)}",
                type="round",
                metadata={k: round_json.get(k) for k in ("seed_block", "seed", "scoring_version")},
            )
            with artifact.new_file("round.json") as f:
                json.dump(round_json, f)
            self.run.log_artifact(artifact)
            self.artifacts.append(artifact)

    def log_epoch(self, step, values) -> None:
        values = {k: _safe(v) for k, v in values.items()}
        self._log(step, values, {k: v for k, v in values.items() if not k.startswith("timings/")})

    def _log(self, step: int, payload: dict[str, Any], summary: dict[str, Any]) -> None:
        # commit=True: with an explicit step, W&B would otherwise hold the entry open until
        # the next step, and the run summary would lag one epoch behind
        self.run.log(payload, step=step, commit=True)
        stale = [k for k in self.run.summary.keys() if k.startswith("timings/") and k not in payload]
        for key in stale:  # a round's phases beside an epoch without a round would mislead
            del self.run.summary[key]
        self.run.summary.update(summary)
        self.logged.append(payload)

    def finish(self) -> None:
        try:
            self.run.finish()
        except Exception as e:  # reporting must never take the validator down
            logger.warning(f"W&B finish failed: {e}")
            return
        logger.info(f"W&B run {self.run.id} finished")


def make_logger(config, state_dir: str | Path, run_config: dict[str, Any] | None = None) -> RoundLogger:
    """`NullLogger` with `--wandb.off`; else a W&B run (offline with `--wandb.offline`).

    A W&B failure at start-up (no API key, no network) is logged and reporting is turned
    off: the validator's job is scoring and weights, not dashboards.
    """
    if config.wandb.off:
        return NullLogger()
    try:
        return WandbLogger(
            state_dir,
            project=config.wandb.project,
            entity=config.wandb.entity,
            config=run_config,
            name=f"validator-{config.wallet.hotkey}",
            mode="offline" if config.wandb.offline else None,
        )
    except Exception as e:
        logger.error(f"W&B unavailable ({type(e).__name__}: {e}); continuing without it (use --wandb.off to silence)")
        return NullLogger()
