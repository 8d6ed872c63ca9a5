"""The round JSON that `distil-eval --json` prints and `distil-eval --round FILE` reads.

    {
      "format": "distil-eval-round", "format_version": 1,
      "scoring_version": 2,  (distil.SCORING_VERSION)
      "seed": "<block hash hex>",
      "spec": {...EvalSpec.to_dict(): every setting, sampler and library versions...},
      "prompt_source": {...PromptSource.describe()...},
      "teacher": "<path or repo@revision>",
      "eos_ids": [248044, ...],
      "prompts": [{"source_id": "...", "prompt_ids": [...], "continuation_ids": [...]}, ...],
      "models": [
        {"key": "...", "status": "ok", "kl_mean": ..., "kl_se": ..., "kl_median": ..., "kl_p99": ...,
         "top1_agreement": ..., "per_prompt_kl": [...], "n_positions": ..., "position_kl": [[...], [...]],
         "head": "hidden" | "own_logits",
         "implementations": {"attn_implementation": "sdpa", "experts_implementation": "grouped_mm" | "eager"},
                             (the code paths it ran with: the validator's choice, never config.json's)
         "probe": {"verdict": "passed" | "DEGENERATE", "detail": "...", "k": K, "stats": {...}, "teacher_stats": {...},
                   "continuation_ids": [[...], ...]},   (distil-eval: every scored student; validator: each probed model)
         "dethrone": {"king": "...", "king_from": "round" | "first_student", "n_prompts": N, "king_kl": ..., "kl": ...,
                      "measured_gain": ..., "p_value": ..., "first_alpha": 0.0125, "margin_ok": ...,
                      "passes_first_stage": ..., "outcome": "passes" | "worse" | "margin" | "cannot tell",
                      "confirm_alpha": 0.025, "max_kl": ... | null, "gain_to_pass": ... | null,
                      "reliable_gain": ... | null, "reliable_power": 0.95, "line": "..."}},
                     (distil-eval only: scoring spec v3's rule against the round file's king, or the first
                      of several students; `RequiredGain.to_dict`)
        {"key": "...", "status": "failed", "failure": {"kind": "invalid" | "transient", "phase": "download" | "load" | "score" | "worker", "detail": "..."}}
      ],
      "devices": ["cuda:0", ...],  (where it ran: the teacher on the first, one student worker per device)
      "teacher_implementations": {"attn_implementation": ..., "experts_implementation": ...},
      "king": "<hotkey>" | null,  (validator rounds: the king before the round)
      "timings": {...}            (only when asked for: it differs between runs)
    }

Anyone can re-score a published round on exactly its token ids from this file alone.
"""

from __future__ import annotations

from distil import SCORING_VERSION
from distil.eval.results import RoundResult
from distil.eval.prompts import seed_from_block_hash

FORMAT = "distil-eval-round"
FORMAT_VERSION = 1


def round_to_json(seed: str, spec_dict: dict, prompt_source: dict, teacher: str, source_ids: list[str],
                  result: RoundResult, timings: bool = False) -> dict:
    """The JSON document of a scored round (see the module docstring)."""
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scoring_version": SCORING_VERSION,
        "seed": seed,
        "spec": spec_dict,
        "prompt_source": prompt_source,
        "teacher": teacher,
        "eos_ids": result.eos_ids,
        "prompts": [{"source_id": sid, "prompt_ids": p, "continuation_ids": c}
                    for sid, p, c in zip(source_ids, result.prompt_ids, result.continuation_ids)],
        "models": [r.to_dict() for r in result.results.values()],
        "devices": result.devices,
        "teacher_implementations": result.teacher_implementations,
    }
    if timings:
        doc["timings"] = result.timings
    return doc


def round_from_json(doc: dict) -> dict:
    """Validate a round document; returns it with `seed` normalised. Raises ValueError naming the problem."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"round format_version {doc.get('format_version')!r}, this distil reads {FORMAT_VERSION}")
    if doc.get("scoring_version") != SCORING_VERSION:
        raise ValueError(
            f"the round was scored under scoring spec v{doc.get('scoring_version')}, and this distil implements "
            f"v{SCORING_VERSION}: it cannot replay it (its per-prompt KLs stay readable by `python -m distil.sim "
            f"dethrone --round`; replay it with the distil release of scoring v{doc.get('scoring_version')})")
    prompts = doc.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise ValueError("round has no prompts")
    for i, p in enumerate(prompts):
        for k in ("prompt_ids", "continuation_ids"):
            ids = p.get(k) if isinstance(p, dict) else None
            if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
                raise ValueError(f"round prompt {i}: {k} must be a non-empty list of integers")
    if not isinstance(doc.get("spec"), dict):
        raise ValueError("round has no spec")
    return {**doc, "seed": seed_from_block_hash(doc.get("seed", ""))}
