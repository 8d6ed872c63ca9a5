"""Reading the per-prompt KL vectors of a scored round, whatever its scoring version.

A simulation needs only who was scored, each model's per-prompt KL and who the king
was; so, unlike `distil.eval.report.round_from_json` (which refuses a round it cannot
replay), any `distil-eval-round` document of format version 1 is read here, v1 scoring
rounds included. The king is the round's `king` key (written by validators from scoring
spec v2 on), or the one named by the caller; without either, the best valid model of
the round plays the king (as it would become king of an empty hill).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from distil.scoring.rules import KL_LIMIT, kl_failure, rank_key

FORMAT = "distil-eval-round"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class RoundVectors:
    """The models of one round that the dethrone rule would compare.

    king: the king's key; king_kl: its per-prompt KL; challengers: (key, per-prompt KL)
    in the round's order; skipped: (key, why) for models the rule would never compare
    (failed, or disqualified by KL); king_source: "round", "given" or "best".
    """

    king: str
    king_kl: tuple[float, ...]
    challengers: tuple[tuple[str, tuple[float, ...]], ...]
    skipped: tuple[tuple[str, str], ...]
    king_source: str
    n_prompts: int
    scoring_version: int | None
    seed_block: int | None

    @property
    def n_round_prompts(self) -> int:
        return len(self.king_kl)


def read_round_file(path: str | Path) -> dict:
    """The JSON document of a round file (or of `round.json` inside a folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "round.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read round file {path}: {e}") from None
    return doc


def _per_prompt(model: dict, where: str) -> tuple[float, ...]:
    values = model.get("per_prompt_kl")
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: per_prompt_kl must be a non-empty list of numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: per_prompt_kl holds {v!r}, not a finite number")
        out.append(float(v))
    return tuple(out)


def round_vectors(doc: dict, king: str | None = None, kl_limit: float = KL_LIMIT) -> RoundVectors:
    """The king's and the challengers' per-prompt KL of a round document.

    Raises ValueError naming what is missing or inconsistent: not a round document, a
    format this code does not read, vectors of different lengths, an unknown king, or
    fewer than two models the rule would compare.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document (the JSON of `distil-eval --json` or a validator's round.json)")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"round format_version {doc.get('format_version')!r}; distil.sim reads {FORMAT_VERSION}")
    models = doc.get("models")
    if not isinstance(models, list):
        raise ValueError("round has no models list")
    valid: dict[str, tuple[float, ...]] = {}
    skipped: list[tuple[str, str]] = []
    for i, model in enumerate(models):
        key = model.get("key") if isinstance(model, dict) else None
        if not isinstance(key, str):
            raise ValueError(f"round model {i} has no key")
        if model.get("status") != "ok":
            skipped.append((key, f"not scored ({model.get('status')})"))
            continue
        vector = _per_prompt(model, f"round model {key}")
        problem = kl_failure(sum(vector) / len(vector), kl_limit)
        if problem:  # disqualified KL_TOO_HIGH: the dethrone rule never sees it
            skipped.append((key, problem))
            continue
        valid[key] = vector
    lengths = {len(v) for v in valid.values()}
    if len(lengths) > 1:
        raise ValueError(f"per-prompt KL vectors of different lengths {sorted(lengths)}: not one round")

    source = "given"
    if king is None and isinstance(doc.get("king"), str):
        king, source = doc["king"], "round"
    if king is not None and king not in valid:
        raise ValueError(f"king {king} is not a validly scored model of this round (valid: {', '.join(valid) or 'none'})")
    if king is None:
        if not valid:
            raise ValueError("round has no validly scored model")
        # no king: the best valid model of the round would become king (exact ties: first listed)
        king, source = min(valid, key=lambda k: rank_key(sum(valid[k]) / len(valid[k]), 0, "")), "best"
    challengers = tuple((k, v) for k, v in valid.items() if k != king)
    if not challengers:
        raise ValueError(f"round has no challenger beside the king {king}: nothing to simulate")
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    n_prompts = spec.get("n_prompts")
    if not isinstance(n_prompts, int) or isinstance(n_prompts, bool) or n_prompts < 1:
        n_prompts = len(valid[king])
    return RoundVectors(king, valid[king], challengers, tuple(skipped), source, n_prompts,
                        doc.get("scoring_version"), doc.get("seed_block"))
