"""`python -m distil.sim dethrone`: the resampled false-dethrone rate and power of the rule."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distil.scoring.rules import dethrones
from distil.sim.__main__ import main
from distil.sim.dethrone import DethroneSimulation, dethrone_mask
from distil.sim.rounds import round_vectors


def round_doc(models: dict[str, list[float]], n_prompts: int | None = None, scoring_version: int = 1, **extra) -> dict:
    """A round document as `distil-eval --json` / the validator write it (only what the sim reads)."""
    n = n_prompts or len(next(iter(models.values())))
    return {
        "format": "distil-eval-round", "format_version": 1, "scoring_version": scoring_version,
        "seed": "ab" * 32, "spec": {"n_prompts": n},
        "models": [{"key": k, "status": "ok", "kl_mean": float(np.mean(v)), "per_prompt_kl": list(v)}
                   for k, v in models.items()],
        **extra,
    }


def write(tmp_path, doc) -> str:
    path = tmp_path / "round.json"
    path.write_text(json.dumps(doc))
    return str(path)


def run_json(capsys, *argv) -> dict:
    assert main(["dethrone", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_vectorised_rule_equals_the_real_rule_on_thousands_of_cases():
    rng = np.random.default_rng(7)
    checked = fired = 0
    for case in range(4000):
        n = int(rng.integers(1, 25))
        king = rng.gamma(2.0, 0.05, size=n)
        kind = case % 5
        if kind == 0:  # noisy challenger around a random fraction of the king
            challenger = king * rng.uniform(0.8, 1.1) + rng.normal(0, 0.01, size=n)
        elif kind == 1:  # identical: zero variance, sign decides (never dethrones)
            challenger = king.copy()
        elif kind == 2:  # constant offset: zero variance of the differences
            challenger = king - rng.choice([-0.01, 0.0, 0.002, 0.01])
        elif kind == 3:  # exact scaling: the differences are proportional to the king
            challenger = king * rng.choice([0.9, 0.99, 1.0, 1.01])
        else:  # repeated prompts, as bootstrap resamples have
            idx = rng.integers(0, max(1, n // 3), size=n)
            king, challenger = king[idx], (king * rng.uniform(0.9, 1.05))[idx]
        epsilon = float(rng.choice([0.0, 0.01, 0.03]))
        alpha = float(rng.choice([0.05, 0.01, 1.0]))
        mirror = dethrone_mask(king[None, :], challenger[None, :], epsilon, alpha)[0]
        real = dethrones(float(np.mean(challenger)), challenger.tolist(), float(np.mean(king)), king.tolist(), epsilon, alpha)
        assert bool(mirror) == real.dethrones, (case, king, challenger, epsilon, alpha, real.reason)
        checked += 1
        fired += real.dethrones
    assert checked == 4000 and 400 < fired < 3600  # both outcomes well represented


def test_simulation_rates_equal_a_plain_loop_over_the_real_rule():
    rng = np.random.default_rng(3)
    king = rng.gamma(3.0, 0.02, size=12)
    challenger = king * 0.7 + rng.normal(0, 0.004, size=12)
    vectors = round_vectors(round_doc({"king": king.tolist(), "c": challenger.tolist()}), king="king")
    sim = DethroneSimulation(vectors, n=12, resamples=600, seed=11, verify=0)
    for improvement in (0.0, 0.03, 0.1):
        # independent reference: resample, scale, and ask the real rule, one resample at a time
        scaled = challenger * ((1 - improvement) * king.mean() / challenger.mean())
        idx = np.random.default_rng(11).integers(0, 12, size=(600, 12))
        expected = np.mean([
            dethrones(float(np.mean(scaled[i])), scaled[i].tolist(), float(np.mean(king[i])), king[i].tolist()).dethrones
            for i in idx
        ])
        assert sim.mask(tuple(challenger), improvement).mean() == expected


def test_identical_vectors_never_dethrone_and_a_clearly_better_challenger_always_does(tmp_path, capsys):
    rng = np.random.default_rng(0)
    king = rng.uniform(0.05, 0.15, size=40).tolist()
    # the challenger's per-prompt shape equals the king's: scaled to equal it is the king itself
    # (zero-variance differences: the sign decides, and 0 is not better)
    report = run_json(capsys, "--round", write(tmp_path, round_doc({"k": king, "c": [0.5 * x for x in king]})),
                      "--king", "k", "--resamples", "2000")
    assert report["false_dethrone_rate"] == 0.0
    assert report["challengers"][0]["false_dethrone_rate"] == 0.0
    # truly better by 2 % or more on every prompt, proportionally: every resample dethrones
    assert report["power"]["0.02"] == report["power"]["0.1"] == 1.0


def test_noisy_round_false_rate_is_near_alpha_and_power_grows_with_the_improvement(tmp_path, capsys):
    rng = np.random.default_rng(1)
    king = rng.gamma(4.0, 0.025, size=120)
    challenger = king * rng.lognormal(0, 0.2, size=120)  # per-prompt disagreement of ~20 %
    report = run_json(capsys, "--round", write(tmp_path, round_doc({"k": king.tolist(), "c": challenger.tolist()})),
                      "--king", "k", "--resamples", "4000")
    assert 0.0 < report["false_dethrone_rate"] < 0.10  # the t-test's 5 % level, give or take the resampling
    powers = [report["power"][x] for x in ("0.01", "0.02", "0.03", "0.05", "0.1")]
    assert powers == sorted(powers) and powers[-1] > 0.95 and powers[0] < 0.5
    assert 0.01 < report["reliable_improvement"] <= 0.1


def test_json_report_keys_and_determinism(tmp_path, capsys):
    rng = np.random.default_rng(2)
    models = {"king": rng.uniform(0.1, 0.2, 16).tolist(), "a": rng.uniform(0.1, 0.2, 16).tolist(),
              "b": rng.uniform(0.1, 0.2, 16).tolist()}
    path = write(tmp_path, round_doc(models, king="king"))
    first = run_json(capsys, "--round", path, "--seed", "5", "--resamples", "1000")
    assert first["king"] == "king" and first["king_source"] == "round"
    assert set(first["power"]) == {"0.01", "0.02", "0.03", "0.05", "0.1"}
    assert {"false_dethrone_rate", "power", "n", "resamples", "epsilon", "alpha", "challengers",
            "reliable_improvement", "verified_against_rules"} <= set(first)
    assert [c["key"] for c in first["challengers"]] == ["a", "b"]
    assert first["n"] == 16 and first["resamples"] == 1000 and first["verified_against_rules"] > 0
    # per round, with two challengers: at least as often as either one alone
    assert first["false_dethrone_rate"] >= max(c["false_dethrone_rate"] for c in first["challengers"])
    assert run_json(capsys, "--round", path, "--seed", "5", "--resamples", "1000") == first
    other = run_json(capsys, "--round", path, "--seed", "6", "--resamples", "1000")
    assert other["challengers"] != first["challengers"]
    assert run_json(capsys, "--round", path, "--n", "64", "--resamples", "100")["n"] == 64


def test_without_a_king_the_best_valid_model_plays_king_and_failures_are_left_out(tmp_path, capsys):
    doc = round_doc({"fair": [0.3, 0.32, 0.28, 0.31], "good": [0.1, 0.12, 0.09, 0.11], "awful": [19.0, 19.5, 18.9, 19.2]})
    doc["models"].append({"key": "broken", "status": "failed", "failure": {"kind": "invalid", "detail": "x"}})
    report = run_json(capsys, "--round", write(tmp_path, doc), "--resamples", "200")
    assert report["king"] == "good" and report["king_source"] == "best"
    assert [c["key"] for c in report["challengers"]] == ["fair"]
    assert {s["key"] for s in report["skipped"]} == {"awful", "broken"}  # KL_TOO_HIGH, not scored
    assert main(["dethrone", "--round", write(tmp_path, doc)]) == 0
    table = capsys.readouterr().out
    assert "false dethrone" in table and "round (any)" in table and "fair" in table


def test_rounds_of_any_scoring_version_are_read_and_bad_files_are_clear_errors(tmp_path, capsys):
    good = {"k": [0.1, 0.2, 0.15], "c": [0.09, 0.19, 0.16]}
    for version in (1, 2):
        assert run_json(capsys, "--round", write(tmp_path, round_doc(good, scoring_version=version)),
                        "--resamples", "50")["scoring_version"] == version
    cases = [
        ({"format": "something-else"}, "not a distil-eval-round document"),
        (round_doc({"k": [0.1, 0.2], "c": [0.1, 0.2, 0.3]}), "different lengths"),
        (round_doc(good, king="nobody"), "king nobody is not a validly scored model"),
        (round_doc({"k": [0.1, 0.2]}), "no challenger"),
    ]
    for doc, message in cases:
        assert main(["dethrone", "--round", write(tmp_path, doc)]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "round.json").write_text("{not json")
    assert main(["dethrone", "--round", str(tmp_path / "round.json")]) == 2
    assert "cannot read round file" in capsys.readouterr().err


def test_simulated_round_sizes_must_be_positive():
    vectors = round_vectors(round_doc({"k": [0.1, 0.2], "c": [0.1, 0.1]}))
    with pytest.raises(ValueError, match="positive"):
        DethroneSimulation(vectors, n=0, resamples=10, seed=0)
