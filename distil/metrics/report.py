"""What a validator reports after each epoch: the summary on stdout and the W&B entry.

stdout carries only this summary (every log line goes to stderr and the log file), each
line escaped and bounded by `template.text.printable`: one line for the epoch, one per leaderboard row, one per model still pending (with its code:
why it waits), one per notable event. Models are named `uid N repo` everywhere in it. W&B
gets the leaderboard and disqualification tables, the king, the timings and, after a
round, the round document; the round document is also kept as
`<full_path>/rounds/round-<block>.json` (`distil.metrics.rounds`).
"""

from __future__ import annotations

from typing import Any, Sequence

from loguru import logger

from distil.metrics.rounds import RoundFiles
from distil.metrics.wandb_logger import RoundLogger
from distil.scoring import epoch as ep
from distil.state import DISQUALIFIED, KING, PENDING, ValidatorState
from template.text import LINE_LIMIT, printable

# events worth a line of the stdout summary (the rest are in the log)
SUMMARY_EVENTS = ("probe", "disqualified", "new_king", "king_holds", "contender", "contender_dropped", "round_aborted",
                  "round_failed", "retry_later", "strike", "eval_strike", "state_not_saved")


def leaderboard_rows(state: ValidatorState) -> list[dict[str, Any]]:
    """Every evaluated, not disqualified model, grouped by the round its KL comes from (its seed
    block, newest first) and ranked within it: the king first, then by KL, earlier commits first.

    KLs of different rounds come from different prompts and are never compared (docs/scoring.md):
    `rank` is the place among the models scored in the same round, `round` that round."""
    evaluated = sorted(
        ((hk, m) for hk, m in state.miners.items() if m.kl is not None and m.status != DISQUALIFIED),
        key=lambda kv: (-_round_of(kv[1]), kv[1].status != KING, kv[1].kl["mean"], kv[1].commit_block, kv[0]),
    )
    rows, rank, current = [], 0, None
    for hk, m in evaluated:
        rank = rank + 1 if _round_of(m) == current else 1
        current = _round_of(m)
        rows.append({"rank": rank, "round": m.kl.get("seed_block"), "uid": m.uid, "hotkey": hk,
                     "commitment": m.commitment, "status": m.status, "kl_mean": m.kl["mean"], "kl_se": m.kl["se"],
                     "kl_median": m.kl["median"], "kl_p99": m.kl["p99"], "top1_agreement": m.kl["top1"]})
    return rows


def _round_of(record) -> int:
    """The seed block of the round a record's KL comes from (-1 when the record does not say)."""
    block = record.kl.get("seed_block")
    return -1 if block is None else int(block)


def disqualified_rows(state: ValidatorState) -> list[dict[str, Any]]:
    return [
        {"uid": m.uid, "hotkey": hk, "commitment": m.commitment, "reason": m.reason, "code": m.code, "detail": m.detail}
        for hk, m in sorted(state.miners.items()) if m.status == DISQUALIFIED
    ]


def king_kl(state: ValidatorState) -> float | None:
    king = state.miners.get(state.king) if state.king else None
    return king.kl["mean"] if king and king.kl else None


def model_name(state: ValidatorState, hotkey: str | None) -> str:
    """`uid N repo`: how the summary names a model (the leaderboard's uid and repo)."""
    record = state.miners.get(hotkey) if hotkey else None
    if record is None:
        return hotkey or "-"
    return f"uid {record.uid} {record.commitment.split('@', 1)[0]}"


def summary_lines(epoch_block: int, state: ValidatorState, plan: ep.RoundPlan, events: Sequence[ep.Event], seconds: float) -> list[str]:
    """The epoch's summary as printed on stdout."""
    kl = king_kl(state)
    challengers = ", ".join(model_name(state, hk) for hk in plan.challengers) or "none"
    contender = plan.contender if plan.contender != state.king else None  # spec v3: scored for its confirmation
    lines = [
        f"epoch {epoch_block}: king {model_name(state, state.king) if state.king else '-'}"
        + (f" (KL {kl:.6f})" if kl is not None else "")
        + (f" | contender: {model_name(state, contender)}" if contender else "")
        + f" | challengers: {challengers} | {len(disqualified_rows(state))} disqualified | {seconds:.1f}s"
    ]
    for row in leaderboard_rows(state):  # ranked within each round: KLs of different rounds are not comparable
        lines.append(f"  round {row['round'] if row['round'] is not None else '?'}: #{row['rank']} uid {row['uid']} "
                     f"{row['status']:<9} KL {row['kl_mean']:.6f}  {row['commitment']}")
    for hotkey, record in sorted(state.miners.items(), key=lambda kv: (kv[1].commit_block, kv[0])):
        if record.status == PENDING:
            why = f"{record.code}: {record.detail}" if record.code else ("checked, waiting for a round" if record.checked
                                                                          else "waiting for its pre-check")
            if hotkey in plan.later:  # spec v3: committed too close to (or after) this round's seed block
                why = (f"checked; committed at block {record.commit_block}, this round scores commitments before "
                       f"block {plan.commit_deadline}: a later round")
            lines.append(f"  pending: {model_name(state, hotkey)} ({why})")
    for event in events:
        if event.kind in SUMMARY_EVENTS:
            who = f"{model_name(state, event.hotkey)}: " if event.hotkey else ""
            lines.append(f"  {event.kind}: {who}{event.detail}")
    return lines


def report_epoch(
    metrics: RoundLogger,
    step: int,
    epoch_block: int,
    state: ValidatorState,
    plan: ep.RoundPlan,
    scores,
    events: Sequence[ep.Event],
    seconds: float,
    precheck_download_s: float,
    rounds: RoundFiles | None = None,
) -> None:
    """Print the epoch's summary, keep the round's file and log both to W&B (`scores`: the
    round's RoundScores, or None when the epoch had no round)."""
    for line in summary_lines(epoch_block, state, plan, events, seconds):
        print(printable(line, LINE_LIMIT), flush=True)  # commitments, details: a miner's text, one line each
    timings = dict(scores.timings) if scores else {}
    timings["precheck_download_s"] = precheck_download_s
    timings["epoch"] = seconds
    if scores is not None and scores.round_json is not None:
        scores.round_json.setdefault("timings", {})["precheck_download_s"] = precheck_download_s
    if rounds is not None and scores is not None and scores.round_json is not None:
        rounds.save(scores.round_json, epoch_block)
    leaderboard, disqualified = leaderboard_rows(state), disqualified_rows(state)
    # the whole summary, every epoch: W&B's run summary must show this epoch, not an older one
    summary = {"king": state.king, "king_kl": king_kl(state), "epoch_block": epoch_block,
               "n_models": len(leaderboard), "n_disqualified": len(disqualified)}
    try:
        if scores is not None:
            metrics.log_round(step, summary, leaderboard, disqualified, timings, scores.round_json)
        else:
            metrics.log_epoch(step, {**summary, "timings/epoch_s": seconds, "timings/precheck_download_s": precheck_download_s})
    except Exception as e:  # reporting must never stop the validator
        logger.warning(f"W&B logging failed: {e}")


def run_config(spec_version: int, netuid: int, hotkey: str, spec, params: ep.RoundParams) -> dict[str, Any]:
    """The W&B run's config: what a reader needs to know which rules scored the rounds."""
    from distil import __version__

    return {"version": __version__, "spec_version": spec_version, "netuid": netuid, "hotkey": hotkey,
            "spec": spec.to_dict(), "epsilon": params.epsilon, "alpha": params.alpha}
