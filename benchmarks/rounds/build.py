"""Build the recorded rounds of docs/performance.md ("Recorded rounds"): tiny students of graded
quality, trained differently, scored on rounds of 120 distinct prompts as validators score them.

    python benchmarks/rounds/build.py WORKDIR [--out benchmarks/rounds]

CPU only (about half an hour on 2 shared cores). Steps, each skipped when its output exists in
WORKDIR (so an interrupted build resumes):

1. a prompt pool of local text read from this repository at a pinned commit (`git show`):
   paragraphs of its Markdown (prose, tables, commands) and blocks of its Python code, cut to
   240 characters, deduplicated, split by a hash of the text into a training part and two
   evaluation parts (`eval-a`, `eval-b`: the two rounds never share a prompt, and no student
   trained on either);
   round a holds as many code blocks as prose paragraphs, round b the repository's mix (mostly code);
2. the tiny teacher of the demo (`distil.tiny` MoE, seed 0, output layer × 30);
3. students: noisy copies of the teacher (`distil.tiny.perturbed_copy`) as starting points,
   then `distil-train` runs from them with different seeds, step counts, learning rates,
   data (prose only, code only, both) and on-policy fractions, and two untrained copies;
4. one `distil-eval --json` per round: all students on 120 prompts of its evaluation part
   (its seed picks them), 32 new tokens (the spec's 512 would take hours on CPU), prompts
   cut to 64 token ids; the degeneration probe on 1 prompt (it does not change the KL);
5. `OUT/round-<name>.json`: the round document without its token ids (per-prompt KL rounded
   to 7 significant digits), readable by `python -m distil.sim dethrone --round`, with how
   each student was built and each prompt's source and continuation length.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

POOL_COMMIT = "5c27925ff85ecbbda7aa58b81421f77f989ad857"
SNIPPET_CHARS = 240
TEACHER_LOGIT_SCALE = 30.0  # as distil.demo: a random model at the default init is nearly uniform

# name: (noise scale of the starting copy, its seed, training or None) — training is
# (data, steps, learning rate, on-policy fraction, seed)
STUDENTS = {
    "copy-05": (0.05, 101, None),
    "copy-10": (0.10, 102, None),
    "prose-a": (0.10, 103, ("prose", 40, 1e-3, 0.25, 1)),
    "code-a": (0.10, 104, ("code", 40, 1e-3, 0.25, 2)),
    "mixed-a": (0.10, 105, ("mixed", 80, 5e-4, 0.25, 3)),
    "mixed-b": (0.20, 106, ("mixed", 40, 1e-3, 0.25, 4)),
    "prose-b": (0.20, 107, ("prose", 24, 1e-3, 0.0, 5)),
    "code-b": (0.05, 108, ("code", 40, 3e-4, 0.25, 6)),
    "mixed-c": (0.15, 109, ("mixed", 30, 1e-3, 0.5, 7)),
}
ROUNDS = {"a": ("eval-a", "a1" * 32), "b": ("eval-b", "b2" * 32)}
N_PROMPTS, MAX_NEW_TOKENS, MAX_PROMPT_TOKENS = 120, 32, 64
TRAIN_PROMPTS, TRAIN_NEW_TOKENS = 96, 16
QUIET = {**os.environ, "TQDM_DISABLE": "1"}  # no progress bars in the build's log


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _git_files(pattern: str) -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", POOL_COMMIT],
                         check=True, capture_output=True, text=True).stdout.split()
    return sorted(f for f in out if re.fullmatch(pattern, f))


def _show(path: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"{POOL_COMMIT}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def snippets() -> list[dict]:
    """Prose paragraphs and code blocks of the repository at POOL_COMMIT: [{text, kind, source}]."""
    found, seen = [], set()
    for kind, pattern in (("prose", r"(docs|contrib)/.*\.md|README\.md"), ("code", r"(distil|tests|template|neurons)/.*\.py")):
        for path in _git_files(pattern):
            for i, block in enumerate(re.split(r"\n\s*\n", _show(path))):
                text = block.strip()
                if len(text) < 80 or (kind == "code" and text.count("\n") < 2):
                    continue
                text = text[:SNIPPET_CHARS]
                if text in seen:
                    continue
                seen.add(text)
                found.append({"text": text, "kind": kind, "source": f"{path}#{i}"})
    return found


def part_of(text: str) -> str:
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 4
    return {0: "eval-a", 1: "eval-b"}.get(h, "train")


def write_pool(work: Path) -> None:
    pool = work / "pool"
    if (pool / "done").exists():
        return
    pool.mkdir(parents=True, exist_ok=True)
    parts: dict[str, list[dict]] = {}
    for s in snippets():
        part = part_of(s["text"])
        parts.setdefault(part, []).append(s)
        if part == "train":
            parts.setdefault(f"train-{s['kind']}", []).append(s)
    parts["train-mixed"] = parts.pop("train")
    # round a: as many code blocks as prose paragraphs; round b keeps the repository's mix (mostly code)
    prose = [s for s in parts["eval-a"] if s["kind"] == "prose"]
    code = sorted((s for s in parts["eval-a"] if s["kind"] == "code"), key=lambda s: hashlib.sha256(s["text"].encode()).digest())
    parts["eval-a"] = prose + code[:len(prose)]
    for name, rows in parts.items():
        with open(pool / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"text": r["text"], "kind": r["kind"], "source": r["source"]}) + "\n")
        log(f"pool {name}: {len(rows)} snippets ({sum(r['kind'] == 'code' for r in rows)} code)")
    (pool / "done").write_text("")


def build_models(work: Path) -> None:
    import torch

    from distil import tiny

    torch.set_num_threads(2)
    teacher_dir = work / "teacher"
    if not (teacher_dir / "config.json").exists():
        tiny.save_model(teacher_dir, tiny.teacher_config(), seed=0, logit_scale=TEACHER_LOGIT_SCALE)
        log("teacher built")
    from transformers import AutoModelForCausalLM

    teacher = None
    for name, (noise, seed, _) in STUDENTS.items():
        start = work / "start" / name
        if (start / "config.json").exists():
            continue
        if teacher is None:
            teacher = AutoModelForCausalLM.from_pretrained(str(teacher_dir), dtype="auto")
        tiny.save_model(start, teacher.config, model=tiny.perturbed_copy(teacher, seed=seed, scale=noise))
        log(f"start {name}: teacher + noise {noise} (seed {seed})")


def train(work: Path) -> None:
    for name, (_, _, training) in STUDENTS.items():
        out = work / "students" / name
        if training is None or (out / "config.json").exists():
            continue
        data, steps, lr, on_policy, seed = training
        cmd = [sys.executable, "-m", "distil.train", "--teacher", str(work / "teacher"), "--student",
               str(work / "start" / name), "--output", str(out), "--prompts-file", str(work / "pool" / f"train-{data}.jsonl"),
               "--max-steps", str(steps), "--max-new-tokens", str(TRAIN_NEW_TOKENS), "--max-prompt-tokens",
               str(MAX_PROMPT_TOKENS), "--device", "cpu", "--train-prompts", str(TRAIN_PROMPTS), "--held-out-prompts", "4",
               "--batch-size", "4", "--gradient-accumulation-steps", "1", "--lr", str(lr), "--on-policy", str(on_policy),
               "--seed", str(seed), "--save-steps", "0", "--skip-final-eval", "--wandb.off", "--log-level", "WARNING"]
        t = time.time()
        log(f"train {name}: {data}, {steps} steps, lr {lr}, on-policy {on_policy}, seed {seed}")
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env=QUIET)
        log(f"train {name}: done in {time.time() - t:.0f} s")


def student_dir(work: Path, name: str) -> Path:
    return work / ("start" if STUDENTS[name][2] is None else "students") / name


def evaluate(work: Path, round_name: str) -> Path:
    part, seed = ROUNDS[round_name]
    out = work / f"round-{round_name}.full.json"
    if out.exists():
        return out
    cmd = [sys.executable, "-m", "distil.eval.cli", "--teacher", str(work / "teacher"), "--prompts-file",
           str(work / "pool" / f"{part}.jsonl"), "--seed", seed, "--n-prompts", str(N_PROMPTS), "--max-new-tokens",
           str(MAX_NEW_TOKENS), "--max-prompt-tokens", str(MAX_PROMPT_TOKENS), "--probe-prompts", "1", "--json",
           "--log-level", "WARNING"]
    for name in STUDENTS:
        cmd += ["--student", str(student_dir(work, name))]
    t = time.time()
    log(f"round {round_name}: distil-eval of {len(STUDENTS)} students on {N_PROMPTS} prompts of {part}")
    result = subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True, env=QUIET)
    out.write_text(result.stdout)
    log(f"round {round_name}: done in {time.time() - t:.0f} s")
    return out


def _sig(x: float, digits: int = 7) -> float:
    return float(f"{x:.{digits}g}")


def compact(work: Path, round_name: str, full: Path, out_dir: Path) -> Path:
    """The round without its token ids: per-prompt KL and how it was made."""
    doc = json.loads(full.read_text())
    part, _ = ROUNDS[round_name]
    rows = [json.loads(line) for line in (work / "pool" / f"{part}.jsonl").read_text().splitlines() if line.strip()]
    by_line = {f"{part}.jsonl:{i}": r for i, r in enumerate(rows)}
    key_of = {str(student_dir(work, name)): name for name in STUDENTS}
    models = []
    for m in doc["models"]:
        name = key_of[m["key"]]
        noise, seed, training = STUDENTS[name]
        how = {"start": f"teacher + noise {noise} (perturbed_copy seed {seed})"}
        if training:
            how["distil_train"] = dict(zip(("data", "steps", "lr", "on_policy", "seed"), training))
        models.append({"key": name, "status": m["status"], "kl_mean": m.get("kl_mean"), "kl_se": m.get("kl_se"),
                       "top1_agreement": m.get("top1_agreement"), "built": how,
                       "per_prompt_kl": [_sig(v) for v in m.get("per_prompt_kl") or []]})
    compacted = {
        "format": doc["format"], "format_version": doc["format_version"], "scoring_version": doc["scoring_version"],
        "seed": doc["seed"], "round": round_name,
        "spec": {k: doc["spec"][k] for k in ("n_prompts", "max_new_tokens", "max_prompt_tokens", "dtype")},
        "built_by": "benchmarks/rounds/build.py (the token ids dropped: see its docstring)",
        "pool_commit": POOL_COMMIT,
        "teacher": f"distil.tiny teacher_config(), seed 0, output layer x {TEACHER_LOGIT_SCALE}",
        "prompts": [{"source": by_line[p["source_id"]]["source"], "kind": by_line[p["source_id"]]["kind"],
                     "continuation_tokens": len(p["continuation_ids"])} for p in doc["prompts"]],
        "models": models,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"round-{round_name}.json"
    path.write_text(json.dumps(compacted, separators=(",", ":")) + "\n")
    log(f"wrote {path} ({path.stat().st_size} bytes)")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "rounds"))
    args = parser.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    write_pool(work)
    build_models(work)
    train(work)
    for name in ROUNDS:
        compact(work, name, evaluate(work, name), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
