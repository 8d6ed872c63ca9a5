"""`distil-eval` end to end on tiny models: JSON agrees with an independent float64
computation over the ids it reports, same seed ⇒ same JSON, `--round` reproduces it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distil import SCORING_VERSION
from distil.eval import cli
from eval_helpers import float64_logits, model_dir, new_dir, reference_kl, reference_stats

ROOT = Path(__file__).resolve().parent.parent
SEED = "0x" + "5e" * 32


@pytest.fixture(scope="module")
def prompts_file():
    path = new_dir("cli") / "prompts.jsonl"
    lines = [{"text": f"Paragraph {i}: the validator scores students on block-seeded prompts."} for i in range(6)]
    lines.append({"input_ids": [7, 8, 9, 10]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(path)


def args(prompts_file, *extra):
    return ["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--student", model_dir("student"),
            "--prompts-file", prompts_file, "--seed", SEED, "--n-prompts", "3", "--max-new-tokens", "5",
            "--chunk-size", "4", *extra]


@pytest.fixture(scope="module")
def round_json(prompts_file):
    """One real `python -m distil.eval.cli ... --json` subprocess."""
    proc = subprocess.run([sys.executable, "-m", "distil.eval.cli", *args(prompts_file, "--json")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_json_agrees_with_float64_computation_over_reported_ids(round_json):
    doc = json.loads(round_json)
    assert doc["scoring_version"] == SCORING_VERSION == 3 and doc["seed"] == "5e" * 32
    assert doc["spec"]["n_prompts"] == 3 and doc["spec"]["versions"]["torch"]
    assert doc["prompt_source"]["kind"] == "jsonl"
    prompts = [p["prompt_ids"] for p in doc["prompts"]]
    conts = [p["continuation_ids"] for p in doc["prompts"]]
    assert len(prompts) == 3 and all(1 <= len(c) <= 5 for c in conts)
    teacher = float64_logits(model_dir("teacher"), prompts, conts)
    for t, c in zip(teacher, conts):
        assert t.argmax(-1).tolist() == c  # reported continuations are the teacher's greedy tokens
    for model in doc["models"]:
        assert model["status"] == "ok"
        student = float64_logits(model["key"], prompts, conts)
        ref = reference_stats(*reference_kl(teacher, student))
        for name in ("kl_mean", "kl_se", "kl_median", "kl_p99", "top1_agreement"):
            np.testing.assert_allclose(model[name], ref[name], rtol=1e-4, atol=5e-7, err_msg=name)
        np.testing.assert_allclose(model["per_prompt_kl"], ref["per_prompt_kl"], rtol=1e-4, atol=5e-7)
    # several students: the first is the king, each other one its challenger under spec v3's rule
    from distil.scoring.rules import required_gain

    first, second = doc["models"]
    need = required_gain(first["per_prompt_kl"], second["per_prompt_kl"])
    assert "dethrone" not in first
    assert second["dethrone"] == {"king": first["key"], "king_from": "first_student", **need.to_dict(),
                                  "line": need.line(second["key"], first["key"])}


def test_same_seed_same_json_and_round_rescoring_reproduces_it(round_json, prompts_file, capsys, tmp_path):
    assert cli.main(args(prompts_file, "--json")) == 0  # in-process run: same JSON as the subprocess
    assert capsys.readouterr().out == round_json
    assert cli.main([a if a != SEED else "0x1234" for a in args(prompts_file, "--json")]) == 0
    assert json.loads(capsys.readouterr().out)["prompts"] != json.loads(round_json)["prompts"]  # other seed
    path = tmp_path / "round.json"
    path.write_text(round_json)
    rescore = ["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--student", model_dir("student"),
               "--round", str(path), "--json"]
    assert cli.main(rescore) == 0
    assert capsys.readouterr().out == round_json  # the same numbers, from the file's ids alone
    # a round of scoring spec v1 is refused with the version named (exit 2), not replayed under v3
    old = json.loads(round_json)
    old["scoring_version"] = 1
    path.write_text(json.dumps(old))
    assert cli.main(rescore) == 2
    err = capsys.readouterr().err
    assert "scoring spec v1" in err and "implements v3" in err


def test_every_scored_student_is_probed_and_the_verdict_follows_from_the_ids(round_json):
    from distil.eval.probe import probe_verdict
    from distil.eval.spec import EvalSpec
    from distil.scoring.degeneration import probe_stats

    doc = json.loads(round_json)
    spec = EvalSpec.from_dict(doc["spec"])
    teacher_conts = [p["continuation_ids"] for p in doc["prompts"]]
    assert spec.probe_count == 3
    for model in doc["models"]:
        probe = model["probe"]
        assert probe["k"] == 3 and len(probe["continuation_ids"]) == 3
        assert all(1 <= len(c) <= 5 for c in probe["continuation_ids"])
        # the teacher's statistics are those of its own cached continuations
        assert probe["teacher_stats"] == probe_stats(teacher_conts, doc["eos_ids"]).to_dict()
        again = probe_verdict(model["key"], probe["continuation_ids"], teacher_conts, doc["eos_ids"], spec)
        assert again.to_dict() == probe
    near = next(m for m in doc["models"] if m["key"] == model_dir("near"))
    assert near["probe"]["verdict"] == "passed"
    # the near-copy generates what the teacher generates (independent float64 greedy argmax)
    prompts = [p["prompt_ids"] for p in doc["prompts"]]
    student = float64_logits(model_dir("near"), prompts, near["probe"]["continuation_ids"])
    for logits, cont in zip(student, near["probe"]["continuation_ids"]):
        assert logits.argmax(-1).tolist()[: len(cont)] == cont


def test_table_output_and_exit_codes(prompts_file, capsys, tmp_path):
    code = cli.main(["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--student",
                     model_dir("wrong_vocab"), "--prompts-file", prompts_file, "--seed", SEED, "--n-prompts", "2",
                     "--max-new-tokens", "3"])
    out = capsys.readouterr().out
    assert code == 1  # a model got its verdict
    # refused by its config before the teacher pass, as validators' pre-checks refuse it
    assert "KL mean" in out and "INVALID (precheck): VOCAB_SIZE: vocab_size is 151,936" in out
    assert f"probe: {model_dir('near')} passed (loops 0/2, repeated 4-grams" in out
    assert cli.main(args(prompts_file)[:-2] + ["--seed", "block 12"]) == 2
    assert "not a hex block hash" in capsys.readouterr().err
    assert cli.main(args(prompts_file)[:-2] + ["--n-prompts", "99"]) == 2
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"format": "distil-eval-round"}))
    assert cli.main(["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--round", str(path)]) == 2
    with pytest.raises(SystemExit) as exc:  # two prompt sources
        cli.main(["--teacher", "x", "--student", "y", "--seed", "ab", "--round", "r.json", "--prompts-file", "p"])
    assert exc.value.code == 2


def test_round_refuses_another_generation_batch_size(round_json, capsys, tmp_path):
    """The probe generates in batches of the round's size: another size could change a verdict."""
    path = tmp_path / "round.json"
    path.write_text(round_json)
    code = cli.main(["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--round", str(path),
                     "--generation-batch-size", "1", "--json"])
    assert code == 2
    assert "--round fixes the scoring spec; cannot change --generation-batch-size" in capsys.readouterr().err


def test_round_rescoring_tells_a_miner_what_the_king_takes(round_json, capsys, tmp_path):
    """`--round` on a validator's round file (with a `king`): one line per student from `required_gain`;
    without one, the first of several students is the king."""
    from distil.scoring.rules import required_gain

    recorded = json.loads(round_json)
    king = next(m for m in recorded["models"] if m["key"] == model_dir("near"))
    path = tmp_path / "round.json"
    path.write_text(json.dumps({**recorded, "king": king["key"]}))
    rescore = ["--teacher", model_dir("teacher"), "--student", model_dir("student"), "--round", str(path)]
    assert cli.main(rescore) == 0
    out = capsys.readouterr().out
    mine = next(m for m in recorded["models"] if m["key"] == model_dir("student"))
    expected = required_gain(king["per_prompt_kl"], mine["per_prompt_kl"])
    assert expected.line(model_dir("student"), f"the round's king {king['key']}") in out.splitlines()
    assert "win twice, stage one (p < 0.1 / 8 = 0.0125" in out
    path.write_text(round_json)  # distil-eval's own JSON names no king
    assert cli.main(rescore) == 0
    assert "vs king: the round file names no scored king" in capsys.readouterr().out
    # ...but with several students the first is the king, in the table's text as in the JSON
    assert cli.main(["--teacher", model_dir("teacher"), "--student", model_dir("near"), "--student",
                     model_dir("student"), "--round", str(path)]) == 0
    near = next(m for m in recorded["models"] if m["key"] == model_dir("near"))
    assert required_gain(near["per_prompt_kl"], mine["per_prompt_kl"]).line(
        model_dir("student"), model_dir("near")) in capsys.readouterr().out.splitlines()
