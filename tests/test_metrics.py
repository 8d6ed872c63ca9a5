"""W&B reporting, in offline mode, checked in-process on what the run received."""

import json


from distil.metrics import DISQUALIFIED_COLUMNS, LEADERBOARD_COLUMNS, NullLogger, WandbLogger, make_logger
from template.config import namespace_to_config
import argparse


def round_payload():
    leaderboard = [
        {"rank": 1, "round": 4200, "uid": 3, "hotkey": "hk3", "commitment": "a/b@" + "1" * 40, "status": "king", "kl_mean": 0.12,
         "kl_se": 0.01, "kl_median": 0.1, "kl_p99": 0.8, "top1_agreement": 0.7},
        {"rank": 2, "round": 4200, "uid": 5, "hotkey": "hk5", "commitment": "c/d@" + "2" * 40, "status": "evaluated", "kl_mean": 0.2,
         "kl_se": 0.02, "kl_median": 0.18, "kl_p99": 1.1, "top1_agreement": 0.6},
    ]
    disqualified = [{"uid": 7, "hotkey": "hk7", "commitment": "e/f@" + "3" * 40, "reason": "COPY", "code": "DUPLICATE_HASH", "detail": "same weights as hk3"}]
    round_json = {"scoring_version": 1, "seed_block": 4200, "seed": "0x" + "ab" * 32, "prompts": [{"prompt_ids": [1, 2], "continuation_ids": [3]}]}
    return leaderboard, disqualified, round_json


def test_round_is_logged_with_tables_summary_and_artifact(tmp_path):
    wb = WandbLogger(tmp_path, project="distil-test", mode="offline")
    leaderboard, disqualified, round_json = round_payload()
    wb.log_round(7, {"king": "hk3", "king_kl": 0.12}, leaderboard, disqualified, {"teacher": 1.5, "students_s": 2.5}, round_json)
    payload = wb.logged[-1]
    assert payload["leaderboard"].columns == LEADERBOARD_COLUMNS
    rows = [dict(zip(LEADERBOARD_COLUMNS, row)) for row in payload["leaderboard"].data]
    assert [(r["round"], r["rank"], r["hotkey"]) for r in rows] == [(4200, 1, "hk3"), (4200, 2, "hk5")]
    assert payload["disqualified"].columns == DISQUALIFIED_COLUMNS
    assert payload["disqualified"].data[0][3:5] == ["COPY", "DUPLICATE_HASH"]
    assert payload["models/hk5/kl_mean"] == 0.2 and payload["timings/teacher_s"] == 1.5
    assert payload["timings/students_s"] == 2.5 and "timings/students_s_s" not in payload
    assert wb.run.summary["king"] == "hk3" and wb.run.summary["king_kl"] == 0.12
    artifact = wb.artifacts[-1]
    assert artifact.name.startswith("round-4200") and artifact.type == "round"
    path = artifact.manifest.entries["round.json"].local_path
    with open(path) as f:
        assert json.load(f) == round_json
    wb.finish()


def test_run_is_resumed_across_restarts(tmp_path):
    first = WandbLogger(tmp_path, project="distil-test", mode="offline")
    run_id = first.run.id
    first.finish()
    second = WandbLogger(tmp_path, project="distil-test", mode="offline")
    assert second.run.id == run_id and (tmp_path / "wandb_run_id").read_text() == run_id
    second.finish()


def config(**wandb):
    ns = argparse.Namespace(**{"wandb.off": False, "wandb.offline": True, "wandb.project": "distil-test",
                               "wandb.entity": None, "wallet.hotkey": "h"})
    for k, v in wandb.items():
        setattr(ns, f"wandb.{k}", v)
    return namespace_to_config(ns, set())


def test_make_logger_off_and_failure_fall_back(tmp_path, monkeypatch):
    assert isinstance(make_logger(config(off=True), tmp_path), NullLogger)
    import wandb

    def broken(*a, **k):
        raise RuntimeError("no API key")

    monkeypatch.setattr(wandb, "init", broken)
    assert isinstance(make_logger(config(), tmp_path), NullLogger)
