"""`prefetch`: a `distil-eval` round whose students come from a throttled hub, against its parts run back to back.

Three measurements on tiny real-vocabulary models, the hub being `tests/hub_server.py`
on 127.0.0.1 throttled to `--bandwidth-mb` MiB/s (so this runs from a checkout):

- download_s: every student's snapshot downloaded back to back into an empty cache;
- scoring_s: `distil-eval` on the already-downloaded student directories (teacher load,
  generation, teacher forward, students);
- wall_s: `distil-eval` with the students as hub repos and an empty cache: downloads in
  the background while the teacher runs.

Both `distil-eval` runs are real subprocesses (the same start-up cost in each). Target:
wall_s ≤ 1.15 × max(download_s, scoring_s); `sequential_s` = download_s + scoring_s is
what the round cost before downloads overlapped the teacher.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from distil.bench import machine

ROOT = Path(__file__).resolve().parents[2]


def _hub_server():
    """`tests/hub_server.py` of this checkout (the bench needs a checkout, not just the package)."""
    tests = ROOT / "tests"
    if not (tests / "hub_server.py").is_file():
        raise SystemExit(f"the prefetch bench needs a distil checkout: {tests / 'hub_server.py'} is missing")
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    from hub_server import HubServer

    return HubServer


def _distil_eval(args: list[str], env: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "distil.eval.cli", *args, "--json", "--timings", "--log-level", "WARNING"],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"distil-eval failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    doc = json.loads(proc.stdout)
    if not all(m["status"] == "ok" for m in doc["models"]):
        raise SystemExit(f"a student was not scored: {doc['models']}")
    return seconds, doc


def bench_prefetch(bandwidth_mb: float, n_students: int, n_prompts: int, max_new_tokens: int, device: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="distil-bench-prefetch-") as root:  # models and hub caches removed after
        return _bench_prefetch(Path(root), bandwidth_mb, n_students, n_prompts, max_new_tokens, device)


def _bench_prefetch(root: Path, bandwidth_mb: float, n_students: int, n_prompts: int, max_new_tokens: int,
                    device: str) -> dict:
    from huggingface_hub import snapshot_download

    from distil import tiny
    from distil.eval.cli import MODEL_FILES

    tiny.save_teacher(root / "teacher", seed=0)
    students = []
    for i in range(n_students):
        tiny.save_student(root / f"student{i}", seed=10 + i)
        students.append(root / f"student{i}")
    g = torch.Generator().manual_seed(0)
    with open(root / "prompts.jsonl", "w") as f:
        for n in torch.randint(8, 64, (n_prompts,), generator=g).tolist():
            f.write(json.dumps({"input_ids": torch.randint(0, 248_000, (n,), generator=g).tolist()}) + "\n")
    common = ["--teacher", str(root / "teacher"), "--prompts-file", str(root / "prompts.jsonl"), "--seed", "0x" + "be" * 32,
              "--n-prompts", str(n_prompts), "--max-new-tokens", str(max_new_tokens), "--device", device]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0"}
    student_bytes = sum(p.stat().st_size for s in students for p in s.iterdir())

    HubServer = _hub_server()
    with HubServer(bandwidth=bandwidth_mb * 2**20) as hub:
        repos = [f"bench/student{i}@{hub.add_repo(f'bench/student{i}', s)}" for i, s in enumerate(students)]
        started = time.perf_counter()
        local = []
        for spec in repos:
            repo, _, revision = spec.partition("@")
            local.append(snapshot_download(repo, revision=revision, endpoint=hub.endpoint, cache_dir=root / "cache-download",
                                           allow_patterns=MODEL_FILES, token=False))
        download_s = time.perf_counter() - started
        scoring_s, scored = _distil_eval([*common, *[a for p in local for a in ("--student", p)]], env)
        hub_env = {**env, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(root / "cache-round")}
        wall_s, overlapped = _distil_eval([*common, *[a for r in repos for a in ("--student", r)]], hub_env)
    same = [a["per_prompt_kl"] for a in scored["models"]] == [b["per_prompt_kl"] for b in overlapped["models"]]
    limit = max(download_s, scoring_s)
    return {
        "bench": "prefetch", "device": machine(), "bandwidth_mib_s": bandwidth_mb, "students": n_students,
        "student_mib": round(student_bytes / 2**20, 1), "prompts": n_prompts, "max_new_tokens": max_new_tokens,
        "download_s": round(download_s, 2), "scoring_s": round(scoring_s, 2), "sequential_s": round(download_s + scoring_s, 2),
        "wall_s": round(wall_s, 2), "wall_over_max": round(wall_s / limit, 3), "target": 1.15, "met": wall_s <= 1.15 * limit,
        "same_kl": same,
        "round_timings": {k: round(v, 2) for k, v in overlapped.get("timings", {}).items() if not k.startswith("student_s.")},
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def register(sub) -> None:
    p = sub.add_parser("prefetch", help="a distil-eval round with students on a throttled hub vs download + scoring back to back")
    p.add_argument("--bandwidth-mb", type=float, default=8.0, help="hub bandwidth in MiB/s (default: %(default)s)")
    p.add_argument("--students", type=int, default=2)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(run=lambda a: bench_prefetch(a.bandwidth_mb, a.students, a.prompts, a.max_new_tokens, a.device))
