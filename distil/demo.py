"""Build the mock demo: a tiny teacher, a handful of students, and a scenario for the validator.

    python -m distil.demo build DIR

writes `DIR/teacher`, `DIR/miners/<name>`, `DIR/prompts.jsonl` and `DIR/scenario.json`,
which `python neurons/validator.py --mock --mock.scenario DIR/scenario.json ...` runs.
Building again replaces exactly those and nothing else: what others put in DIR (a miner's
own model under `DIR/models/`, a validator's state, a mock chain file) is kept, and one
line on stderr names it.

The teacher is a tiny `Qwen3_5MoeForCausalLM` at the real vocabulary with a sharpened
output layer (a random model at the default init is nearly uniform over 248,320 tokens,
which makes every student look alike). Students are noisy copies of the teacher, so
their KL is ordered by the noise: `good` beats `fair`, and `better` beats `good` by more
than the 1% margin. The chain starts at block 100 (epochs of 50 blocks: rounds seeded by
blocks 100, 150, 200), and a round seeded by S scores only commitments made before
S − 50 (spec v3's commit delay): every model is committed before block 50 except
`better`, committed at block 90, which is on chain and pre-checked in the first epoch but
scored from the second. `copy` is `good`'s files re-uploaded under another name
(COPY by hash), `resharded` the same weights in two shards (COPY by content hash),
`hostile` ships a `tokenizer.py` (INVALID) and `random` is an untrained student of
another architecture (KL far above 2: KL_TOO_HIGH). Every repo carries its `distil.json`
naming its own committer's hotkey (spec v3's ownership file), the copies too: they are
copies by their weights, not by a borrowed commitment.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from distil import tiny
from distil.exits import EXIT_ERROR, EXIT_OK
from template.args import ArgumentParser
from distil.checks.owner import write_owner_file

TEACHER_LOGIT_SCALE = 30.0

START_BLOCK = 100
# name: (noise scale relative to the teacher's weights, commit block)
NOISY_STUDENTS = {"fair": (0.10, 40), "good": (0.05, 45), "better": (0.02, 90)}
MINERS = (*NOISY_STUDENTS, "copy", "resharded", "hostile", "random")
# Everything `build` writes, relative to DIR: all it ever removes.
BUILT = ("teacher", "scenario.json", "prompts.jsonl", *(f"miners/{name}" for name in MINERS))


class DemoError(Exception):
    """The demo cannot be built there; the message says why."""


def not_built_here(root: Path) -> list[str]:
    """What `root` holds that `build` did not make (kept by a rebuild), relative to it."""
    if not root.is_dir():
        return []
    ours = {Path(p) for p in BUILT}
    found = []
    for entry in sorted(root.iterdir()):
        name = entry.relative_to(root)
        if name == Path("miners") and entry.is_dir() and not entry.is_symlink():
            found += [str(p.relative_to(root)) for p in sorted(entry.iterdir()) if p.relative_to(root) not in ours]
        elif name not in ours:
            found.append(str(name))
    return found


def _remove_built(root: Path) -> None:
    """Remove what an earlier `build` wrote under `root` (only the names in BUILT)."""
    for name in BUILT:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def demo_hotkey(name: str) -> str:
    from template.wallet import mock_hotkey

    return mock_hotkey("demo-miner", name)


def build(directory: str | Path, seed: int = 0) -> Path:
    """Write the demo's models and `scenario.json` under `directory`; returns the scenario path."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise DemoError(f"{root}: a file, not a directory")
    try:
        _remove_built(root)  # a rebuild replaces its own files, never anything else
        (root / "miners").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoError(f"{e.filename or root}: {e.strerror or type(e).__name__}") from None
    teacher_dir = root / "teacher"
    teacher = tiny.save_model(teacher_dir, tiny.teacher_config(), seed=seed, logit_scale=TEACHER_LOGIT_SCALE)

    miners = []
    for i, (name, (noise, block)) in enumerate(NOISY_STUDENTS.items()):
        path = root / "miners" / name
        tiny.save_model(path, teacher.config, model=tiny.perturbed_copy(teacher, seed=seed + 1 + i, scale=noise))
        miners.append({"name": name, "model": path, "commit_block": block})

    copy = root / "miners" / "copy"
    shutil.copytree(root / "miners" / "good", copy)
    miners.append({"name": "copy", "model": copy, "commit_block": 47})

    resharded = root / "miners" / "resharded"
    good = _load(root / "miners" / "good")
    good.save_pretrained(str(resharded), max_shard_size="40MB")
    tiny.save_tokenizer(resharded)
    miners.append({"name": "resharded", "model": resharded, "commit_block": 48})

    hostile = root / "miners" / "hostile"
    shutil.copytree(root / "miners" / "fair", hostile)
    (hostile / "tokenizer.py").write_text("import os\nos.system('echo pwned')\n")
    miners.append({"name": "hostile", "model": hostile, "commit_block": 49})

    random_student = root / "miners" / "random"
    tiny.save_model(random_student, tiny.student_config("qwen3_5"), seed=seed + 99, logit_scale=TEACHER_LOGIT_SCALE)
    miners.append({"name": "random", "model": random_student, "commit_block": 43})
    for m in miners:  # each repo names the hotkey that commits it (spec v3)
        write_owner_file(m["model"], demo_hotkey(m["name"]))

    # paths relative to the scenario file, so the directory can be moved
    scenario = {
        "teacher": "teacher",
        "start_block": START_BLOCK,
        "miners": [
            {
                "hotkey": demo_hotkey(m["name"]),
                "model": str(Path(m["model"]).relative_to(root)),
                "repo": f"demo/{m['name']}",
                "commit_block": m["commit_block"],
            }
            for m in miners
        ],
    }
    path = root / "scenario.json"
    path.write_text(json.dumps(scenario, indent=1))
    write_prompts(root / "prompts.jsonl")
    return path


_SUBJECTS = ["The river", "A small robot", "The old library", "Every spring the valley", "The night train",
             "Our neighbour's garden", "The lighthouse keeper", "A forgotten recipe", "The city council", "The comet"]
_VERBS = ["remembers", "carries", "hides", "explains", "changes", "waits for", "discovers", "repairs"]
_ENDS = ["what nobody expected.", "a letter from far away.", "the sound of distant bells.",
         "how the bridge was built.", "the colour of the morning sky.", "a map with no names."]


def write_prompts(path: Path, n: int = 64) -> Path:
    """A JSONL of short raw-text prompts (the mock's stand-in for the pretraining corpus)."""
    lines = []
    for i in range(n):
        text = f"{_SUBJECTS[i % len(_SUBJECTS)]} {_VERBS[(i * 3) % len(_VERBS)]} {_ENDS[(i * 5) % len(_ENDS)]}"
        lines.append(json.dumps({"text": f"{text} It was day {i + 1} of the year, and"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype="auto")


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m distil.demo", description="build the mock demo's models and scenario")
    sub = parser.add_subparsers(dest="command", required=True)
    p_build = sub.add_parser("build", help="write tiny models and scenario.json (anything else in DIR is kept)")
    p_build.add_argument("directory")
    p_build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    transformers.utils.logging.disable_progress_bar()  # one line of output: the scenario's path
    disable_progress_bars()
    kept = not_built_here(Path(args.directory))
    try:
        path = build(args.directory, seed=args.seed)
    except DemoError as e:
        print(f"python -m distil.demo: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if kept:
        print(f"kept what the demo did not make in {args.directory}: {', '.join(kept)}", file=sys.stderr)
    print(path)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
