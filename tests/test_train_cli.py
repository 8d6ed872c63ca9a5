"""`distil-train` end to end on tiny real-vocabulary models (CPU): a noisy copy of the tiny
teacher is trained, the output passes distil-check and its held-out distil-eval KL falls;
an interrupted run resumed from its checkpoint ends where an uninterrupted one does; the
DDP path under `accelerate launch` (2 CPU processes) trains too."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from distil import tiny
from distil.train import loop
from distil.train.cli import main

ROOT = Path(__file__).resolve().parent.parent
WORDS = "the of and to in is that it for on with as was by at from this be are have not or an".split()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    teacher = tiny.save_teacher(root / "teacher", seed=0)
    # the starting student: the teacher with every weight moved by 0.5 std of noise
    tiny.save_model(root / "student", tiny.teacher_config(), model=tiny.perturbed_copy(teacher, 11, 0.5))
    rng = random.Random(0)
    with open(root / "prompts.jsonl", "w") as f:
        for _ in range(40):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))}) + "\n")
    return root


HOTKEY = "5TrainedByThisHotkeyXXXXXXXXXXXXXXXXXXXXXXXXXXX"  # the committing hotkey of the submissions


def _args(root: Path, output: Path, *extra: str, wandb: str = "--wandb.off") -> list[str]:
    return ["--teacher", str(root / "teacher"), "--student", str(root / "student"), "--output", str(output),
            "--prompts-file", str(root / "prompts.jsonl"), "--max-new-tokens", "8", "--device", "cpu",
            "--train-prompts", "16", "--held-out-prompts", "4", "--batch-size", "4",
            "--gradient-accumulation-steps", "1", "--lr", "3e-3", "--hotkey", HOTKEY, wandb, *extra]


def _held_out_kl(text: str) -> tuple[float, float]:
    start = float(re.search(r"^\s*start\s+KL (\S+)", text, re.M).group(1))
    trained = float(re.search(r"^\s*trained\s+KL (\S+)", text, re.M).group(1))
    return start, trained


def _assert_submission(output: Path, teacher: Path) -> None:
    names = sorted(p.name for p in output.iterdir())
    assert not [n for n in names if n.endswith((".py", ".bin", ".pt", ".pkl"))], names
    assert "checkpoints" not in names and (teacher / "tokenizer.json").read_bytes() == (output / "tokenizer.json").read_bytes()
    config = json.loads((output / "config.json").read_text())
    assert "auto_map" not in config and "quantization_config" not in config and config["dtype"] == "bfloat16"
    with safe_open(str(output / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    # spec v3: the output names the committing hotkey (--hotkey)
    assert json.loads((output / "distil.json").read_text()) == {"hotkey": HOTKEY}
    from distil.checks.cli import main as check_main

    assert check_main([str(output), "--teacher", str(teacher), "--hotkey", HOTKEY]) == 0


def test_training_lowers_held_out_kl_and_the_output_is_valid(models, tmp_path, capsys):
    output = tmp_path / "out"
    rc = main(_args(models, output, "--max-steps", "16", "--on-policy", "0.25", "--save-steps", "8",
                    wandb="--wandb.offline"))
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "result: VALID" in text and f"[pass] owner                  distil.json names the committing hotkey {HOTKEY}" in text
    start, trained = _held_out_kl(text)
    assert trained <= 0.7 * start, text
    # and what spec v3's dethrone rule makes of it, on the 4 held-out prompts
    verdict = re.search(r"^  trained vs start: KL (\S+) vs (\S+) on 4 prompts \((\S+) % lower\); win twice, stage one "
                        r"\(p < 0.1 / 8 = 0.0125, KL < (\S+)\): p = (\S+), (.*)$", text, re.M)
    assert verdict, text
    assert [float(verdict.group(i)) for i in (1, 2, 4)] == [trained, start, start]
    assert float(verdict.group(3)) == round(100 * (1 - trained / start), 2)
    p = float(verdict.group(5))
    assert verdict.group(6).startswith("passes: a contender, not yet a crown" if p < 0.0125 else
                                       "does not pass: these 4 prompts cannot tell the two apart"), text
    _assert_submission(output, models / "teacher")
    run_state = tmp_path / "out.run"  # checkpoints and the W&B run moved beside the model
    assert (run_state / "step-00000008" / "trainer_state.json").is_file()
    runs = list((run_state / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0 and (run_state / "wandb_run_id").is_file()


def test_a_tied_student_is_saved_once_and_passes_the_cap_it_started_under(models, tmp_path, capsys):
    """A tied qwen3 start (its embedding is its head: 15,966,592 parameters) trained for 2
    steps comes out tied and stored once, so it passes a cap between its size and twice it,
    as its input did (issue 22 §6)."""
    from distil.checks.cli import main as check_main

    start = tiny.save_student(tmp_path / "tied", seed=5, arch="qwen3", tie_word_embeddings=True)
    from distil.checks.owner import write_owner_file

    write_owner_file(tmp_path / "tied", HOTKEY)  # a submission of its own (spec v3)
    size = sum(p.numel() for p in start.parameters())
    assert size == 15_966_592
    cap = str(size * 3 // 2)
    assert check_main([str(tmp_path / "tied"), "--teacher", str(models / "teacher"), "--max-params", cap]) == 0
    output = tmp_path / "out"
    args = _args(models, output, "--max-steps", "2", "--save-steps", "0", "--skip-final-eval", "--max-params", cap,
                 "--train-prompts", "8", "--held-out-prompts", "1")
    args[args.index("--student") + 1] = str(tmp_path / "tied")
    del args[args.index("--hotkey"):args.index("--hotkey") + 2]  # no --hotkey: no distil.json, and the report says so
    rc = main(args)
    text = capsys.readouterr().out
    assert rc == 0 and "result: VALID" in text, text
    assert not (output / "distil.json").exists()
    assert "[skip] owner" in text and f"python neurons/miner.py --write-owner {output}" in text
    with safe_open(str(output / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    assert json.loads((output / "config.json").read_text())["tie_word_embeddings"] is True
    trained = _weights(output)["model.embed_tokens.weight"]
    assert not torch.equal(trained, _weights(tmp_path / "tied")["model.embed_tokens.weight"])  # it did train


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_resume_continues_an_interrupted_run_from_its_checkpoint(models, tmp_path, monkeypatch, capsys):
    common = ("--max-steps", "4", "--save-steps", "2", "--on-policy", "0.5", "--skip-final-eval", "--lr-schedule", "constant")
    assert main(_args(models, tmp_path / "whole", *common)) == 0

    real_collate, calls = loop.collate, []

    def crash_on_step_three(*a, **k):  # the machine dies during step 3 (after the step-2 checkpoint)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_collate(*a, **k)

    monkeypatch.setattr(loop, "collate", crash_on_step_three)
    assert main(_args(models, tmp_path / "cut", *common)) == 2  # interrupted: one line, the checkpoint kept
    err = capsys.readouterr().err
    assert "distil-train: interrupted; checkpoint at step 2 kept" in err and "--resume continues" in err
    assert "Traceback" not in err
    monkeypatch.setattr(loop, "collate", real_collate)
    assert loop.latest_checkpoint(tmp_path / "cut")[0] == 2
    assert main(_args(models, tmp_path / "cut", *common)) == 2  # checkpoints there and no --resume: refused
    capsys.readouterr()

    steps = []
    monkeypatch.setattr(loop, "collate", lambda *a, **k: steps.append(1) or real_collate(*a, **k))
    assert main(_args(models, tmp_path / "cut", *common, "--resume")) == 0
    assert len(steps) == 2  # steps 2 and 3 only
    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    start = _weights(models / "student")
    assert any(not torch.equal(whole[k], start[k]) for k in whole)  # training changed the weights
    for key in whole:
        torch.testing.assert_close(resumed[key].float(), whole[key].float(), rtol=0, atol=2e-2 * float(whole[key].float().abs().max()) + 1e-6)
    diff = max(float((resumed[k].float() - whole[k].float()).abs().max()) for k in whole)
    moved = max(float((whole[k].float() - start[k].float()).abs().max()) for k in whole)
    assert diff < 0.05 * moved, (diff, moved)
    # the checkpoint it resumed from holds safetensors and JSON only (issue 25 §3)
    kept = tmp_path / "cut.run" / "step-00000002"
    assert sorted(p.name for p in kept.iterdir()) == ["rng-00000.json", "state.json", "state.safetensors",
                                                      "trainer_state.json"]

    # issue 25 §3: pickles planted in a checkpoint (accelerate's names for its pickled state) run nothing:
    # the checkpoint is refused, in one line naming the file, before a model is loaded
    marker = tmp_path / "pwned"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin"):
        planted = tmp_path / f"planted-{name}"
        shutil.copytree(kept, planted / "checkpoints" / "step-00000002")
        torch.save({"state": Planted()}, planted / "checkpoints" / "step-00000002" / name)
        assert main(_args(models, planted, *common, "--resume")) == 2
        out = capsys.readouterr().out
        assert f"holds '{name}', a pickle" in out and "a pickle is never loaded" in out, out
        assert not marker.exists()
        assert not (planted / "model.safetensors").exists()  # nothing was trained or written

    # A finished model is never replaced silently (its checkpoints moved to OUTPUT.run: nothing to resume)
    finished = {p.name: p.read_bytes() for p in (tmp_path / "whole").iterdir()}
    assert main(_args(models, tmp_path / "whole", *common)) == 2
    assert "holds a trained model; --overwrite replaces it" in capsys.readouterr().err
    assert main(_args(models, tmp_path / "whole", *common, "--resume")) == 2
    assert "holds a finished model, with nothing to resume" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "whole").iterdir()} == finished
    (tmp_path / "whole" / "model-00001-of-00002.safetensors").write_bytes(b"a shard of an older model")
    steps.clear()
    assert main(_args(models, tmp_path / "whole", "--max-steps", "1", "--skip-final-eval", "--overwrite")) == 0
    assert len(steps) == 1 and not (tmp_path / "whole" / "model-00001-of-00002.safetensors").exists()
    assert _weights(tmp_path / "whole").keys() == whole.keys()
    assert any(not torch.equal(_weights(tmp_path / "whole")[k], whole[k]) for k in whole)  # the new, 1-step model


@pytest.mark.slow
def test_accelerate_launch_ddp_two_cpu_processes(models, tmp_path):
    output = tmp_path / "ddp"
    # accelerate 1.15 runs `launch --cpu --num_processes 2` as ONE process unless MPI is set up;
    # torchrun's launcher (--multi_gpu) with ACCELERATE_USE_CPU gives two gloo processes (MULTI_CPU)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "ACCELERATE_USE_CPU": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "distil.train",
               *_args(models, output, "--max-steps", "16", "--save-steps", "8", "--batch-size", "2")]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 processes (DistributedType.MULTI_CPU)" in done.stderr + done.stdout and "--device cpu is ignored" in done.stderr + done.stdout
    start, trained = _held_out_kl(done.stdout)
    assert trained <= 0.7 * start, done.stdout
    _assert_submission(output, models / "teacher")


def _usage(tmp_path, *extra):
    (tmp_path / "p.jsonl").write_text('{"text": "hi"}\n')
    return ["--teacher", str(tmp_path / "nowhere"), "--student", str(tmp_path / "nowhere"), "--output",
            str(tmp_path / "o"), "--prompts-file", str(tmp_path / "p.jsonl"), "--max-steps", "3", "--wandb.off", *extra]


@pytest.mark.parametrize("extra,message", [
    (["--max-steps", "0"], "--max-steps must be >= 1"),
    (["--device", "tpu"], "EvalSpec.device"),
    (["--prompts-file", "/nonexistent.jsonl"], "--prompts-file /nonexistent.jsonl: no such file"),
    (["--hotkey", "not a hotkey"], "--hotkey: 'not a hotkey' is not a hotkey address"),
])
def test_bad_flags_are_usage_errors_before_anything_loads(tmp_path, capsys, extra, message):
    assert main(_usage(tmp_path, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_on_policy_fraction_outside_0_1_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(_usage(tmp_path, "--on-policy", "1.5"))
    assert exit_.value.code == 2 and "not in [0, 1]" in capsys.readouterr().err
