"""`fingerprint`: the functional-copy detector's miss and false-positive rates on tiny models.

Two worlds, each a tiny teacher at the real vocabulary (sharpened output as in the demo)
and students that are noise copies of it at three quality levels (the demo's construction:
weights + scale × std × N(0, 1), scale 0.02, 0.05, 0.10, `--seeds` seeds each, stored in
bf16): `moe` (the demo's Qwen3.5-MoE teacher and students) and `dense` (a Qwen3 teacher,
plain GQA attention, and its students). The fingerprint inputs are 8 of the demo's prompts
and the teacher's 32 greedy tokens after each (256 positions), as a validator builds them.

Copies of every student (`distil.tiny`), each stored in bf16 like the original:

* `permuted`: experts and router rows (MoE), MLP or shared-expert neurons, and for plain GQA
  attention the key/value groups and query heads, permuted;
* `rescaled`: post-attention and final norm gains × 1.7, the weights that read them ÷ 1.7;
* `fp16`: a float16 round trip;
* `noise_1e-3`: every weight × (1 + 1e-3 · N(0, 1));

should all be caught (distance < `COPY_DISTANCE`); `independent` pairs, two students of the
same quality level from different seeds (equal KL), should not. `miss_rate` and
`false_positive_rate` are at `COPY_DISTANCE`. Each is computed with the student in float32
(the CPU validator's dtype) and in bfloat16 (the GPU validator's; here on CPU). The `sweep`
adds noise of growing size (× std, as the students were made) to see where copies stop
being caught, beside the KL change that noise causes. `--trained-steps N` adds students
distilled from a common start (the demo's `fair`) with different data orders, and from two
different starts: honest models that share an ancestor, and each one's distance to the
model it started from. Figures in docs/performance.md.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time

import torch

from distil.bench import machine

QUALITY = (0.02, 0.05, 0.10)
SWEEP = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def _prompts(n: int = 8, skip: int = 32) -> list[list[int]]:
    import tempfile
    from pathlib import Path

    from distil import tiny
    from distil.demo import write_prompts

    tokenizer = tiny.build_tokenizer()
    with tempfile.TemporaryDirectory() as d:
        lines = write_prompts(Path(d) / "prompts.jsonl").read_text().splitlines()
    # prompts the demo's rounds (its first 8) never use
    return [tokenizer(json.loads(line)["text"], add_special_tokens=False)["input_ids"] for line in lines[skip : skip + n]]


@torch.no_grad()
def _log_probs(model, inputs) -> list[torch.Tensor]:
    from distil.eval.teacher import scored_input

    out = []
    for p, c in zip(inputs.prompt_ids, inputs.continuation_ids):
        x, _ = scored_input(list(p), list(c))
        out.append(torch.log_softmax(model(input_ids=torch.tensor([x]), logits_to_keep=len(c)).logits[0].double(), -1))
    return out


def _kl(teacher_lp: list[torch.Tensor], student_lp: list[torch.Tensor]) -> torch.Tensor:
    """Per-position forward KL(teacher ‖ student) in float64 over the full vocabulary."""
    return torch.cat([(t.exp() * (t - s)).sum(-1) for t, s in zip(teacher_lp, student_lp)])


def compute_fingerprint_as_is(model, inputs):
    """The fingerprint in the dtype the model is in (what a validator computing in that dtype gets)."""
    from distil.eval.fingerprint import compute_fingerprint

    return compute_fingerprint(model, inputs, dtype=None)


def _in(model, dtype):
    return model.to(dtype)  # in place; bf16 → fp32 → bf16 is exact, so the stored weights stay as they were


def _summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "min": round(min(values), 5), "median": round(statistics.median(values), 5),
            "max": round(max(values), 5)}


def bench_world(world: str, seeds: int, dtypes: list[str]) -> dict:
    from distil import tiny
    from distil.demo import TEACHER_LOGIT_SCALE
    from distil.eval.fingerprint import build_fingerprint_inputs
    from distil.scoring.fingerprints import COPY_DISTANCE, fingerprint_distance

    config = tiny.teacher_config() if world == "moe" else tiny.student_config("qwen3")
    teacher = tiny.build_model(config, seed=0, logit_scale=TEACHER_LOGIT_SCALE)
    inputs, _ = build_fingerprint_inputs(_in(teacher, torch.float32), _prompts())
    teacher_lp = _log_probs(teacher, inputs)
    _in(teacher, torch.bfloat16)

    students = {(q, s): tiny.perturbed_copy(teacher, seed=100 * s + int(q * 100), scale=q)
                for q in QUALITY for s in range(1, seeds + 1)}
    kl = {}
    for key, m in students.items():
        kl[key] = _kl(teacher_lp, _log_probs(_in(m, torch.float32), inputs))
        _in(m, torch.bfloat16)

    def copies(original, key):
        q, s = key
        yield "permuted", tiny.permuted_copy(original, seed=s)
        yield "rescaled", tiny.rescaled_copy(original, 1.7)
        yield "fp16", tiny.fp16_round_trip(original)
        yield "noise_1e-3", tiny.relative_noise_copy(original, seed=s, scale=1e-3)
        for size in SWEEP:
            yield f"sweep_{size:g}", tiny.perturbed_copy(original, seed=1000 + s, scale=size)

    out = {"world": world, "positions": inputs.n_positions,
           "kl_by_quality": {str(q): _summary([float(kl[(q, s)].mean()) for s in range(1, seeds + 1)]) for q in QUALITY},
           "dtypes": {}}
    copy_fps: dict[str, dict[str, list]] = {d: {} for d in dtypes}
    copy_kl_change: dict[str, list[float]] = {}
    student_fps = {d: {} for d in dtypes}
    refs = {}
    for dtype in dtypes:
        refs[dtype] = compute_fingerprint_as_is(_in(teacher, getattr(torch, dtype)), inputs)
        _in(teacher, torch.bfloat16)
    for key, original in students.items():
        for dtype in dtypes:
            student_fps[dtype][key] = compute_fingerprint_as_is(_in(original, getattr(torch, dtype)), inputs)
        _in(original, torch.bfloat16)
        for name, clone in copies(original, key):
            for dtype in dtypes:
                fp = compute_fingerprint_as_is(_in(clone, getattr(torch, dtype)), inputs)
                distance = fingerprint_distance(student_fps[dtype][key], fp, refs[dtype])
                copy_fps[dtype].setdefault(name, []).append(distance)
            if name.startswith("sweep"):
                change = float(_kl(teacher_lp, _log_probs(_in(clone, torch.float32), inputs)).mean() / kl[key].mean() - 1)
                copy_kl_change.setdefault(name, []).append(abs(change))
            del clone
    for dtype in dtypes:
        equal = [fingerprint_distance(student_fps[dtype][a], student_fps[dtype][b], refs[dtype])
                 for a, b in itertools.combinations(students, 2) if a[0] == b[0]]
        cross = [fingerprint_distance(student_fps[dtype][a], student_fps[dtype][b], refs[dtype])
                 for a, b in itertools.combinations(students, 2) if a[0] != b[0]]
        attacks = {k: v for k, v in copy_fps[dtype].items() if not k.startswith("sweep")}
        all_copies = [d for v in attacks.values() for d in v]
        out["dtypes"][dtype] = {
            "copies": {k: _summary(v) for k, v in attacks.items()},
            "independent_equal_kl": _summary(equal),
            "independent_other_kl": _summary(cross),
            "miss_rate": sum(d >= COPY_DISTANCE for d in all_copies) / len(all_copies),
            "false_positive_rate": sum(d < COPY_DISTANCE for d in equal + cross) / max(1, len(equal + cross)),
            "separation": round(min(equal + cross) / max(all_copies), 2) if equal + cross else None,
            "sweep": {k.removeprefix("sweep_"): {"median_distance": round(statistics.median(v), 4),
                                                  "caught": sum(d < COPY_DISTANCE for d in v) / len(v),
                                                  "median_abs_kl_change": round(statistics.median(copy_kl_change[k]), 5)}
                      for k, v in copy_fps[dtype].items() if k.startswith("sweep")},
        }
    # the measure, for comparison: cosine of the per-position KL vectors of equal-KL pairs
    cos = [float(torch.nn.functional.cosine_similarity(kl[a], kl[b], dim=0))
           for a, b in itertools.combinations(students, 2) if a[0] == b[0]]
    out["kl_cosine_equal_kl"] = _summary(cos)
    return out


def _train(start, teacher, prompts: list[list[int]], steps: int, lr: float, seed: int):
    """`start` distilled further on the teacher's 32 greedy tokens after `prompts` (the
    validators' forward KL, the chunked loss of distil-train), batches of 4 drawn with `seed`;
    fp32 master weights, AdamW, returned in bf16 as a miner would upload it."""
    import copy

    from distil.eval.models import final_hidden, head_of
    from distil.eval.teacher import eos_ids_of, greedy_generate, scored_input
    from distil.train.loss import chunked_kl_loss

    _in(teacher, torch.float32)
    conts = greedy_generate(teacher, prompts, 32, eos_ids_of(teacher), 16, who="teacher (training targets)")
    with torch.no_grad():
        targets = []
        for p, c in zip(prompts, conts):
            x, first = scored_input(p, c)
            targets.append((x, first, final_hidden(teacher, torch.tensor([x]))[first:].clone()))
    t_weight = head_of(teacher).weight.detach()
    student = copy.deepcopy(start).float().train().requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        for i in torch.randperm(len(targets), generator=generator)[:4].tolist():
            x, first, t_hidden = targets[i]
            s_hidden = final_hidden(student, torch.tensor([x]))[first:]
            rows = t_hidden.shape[0]
            loss, _ = chunked_kl_loss(s_hidden, head_of(student).weight, None, t_hidden, t_weight, None,
                                      torch.full((rows,), 1.0 / (4 * rows)))
            loss.backward()
        optimizer.step()
    _in(teacher, torch.bfloat16)
    return student.eval().requires_grad_(False).to(torch.bfloat16)


def bench_trained(steps: int, lr: float, dtypes: list[str]) -> dict:
    """Students distilled from the demo's `fair` (noise 0.10) by the same recipe with different
    data orders, and from two different starts: honest models that share an ancestor. Each
    pair's fingerprint distance, each student's distance to its start (a fine-tune is not a
    copy of what it started from when it changed), and their KL."""
    from distil import tiny
    from distil.demo import TEACHER_LOGIT_SCALE
    from distil.eval.fingerprint import build_fingerprint_inputs
    from distil.scoring.fingerprints import COPY_DISTANCE, fingerprint_distance

    teacher = tiny.build_model(tiny.teacher_config(), seed=0, logit_scale=TEACHER_LOGIT_SCALE)
    inputs, _ = build_fingerprint_inputs(_in(teacher, torch.float32), _prompts())
    teacher_lp = _log_probs(teacher, inputs)
    _in(teacher, torch.bfloat16)
    train_prompts = _prompts(24, skip=8) + _prompts(24, skip=40)  # never the fingerprint prompts (32-39)
    starts = {"A": tiny.perturbed_copy(teacher, seed=1, scale=0.10), "B": tiny.perturbed_copy(teacher, seed=2, scale=0.10)}
    models = dict(starts)
    for name, start, seed in (("A1", "A", 1), ("A2", "A", 2), ("B1", "B", 1)):
        models[name] = _train(starts[start], teacher, train_prompts, steps, lr, seed)
    kl = {k: round(float(_kl(teacher_lp, _log_probs(_in(m, torch.float32), inputs)).mean()), 5) for k, m in models.items()}
    out = {"steps": steps, "lr": lr, "kl_on_fingerprint_positions": kl, "dtypes": {}}
    for dtype in dtypes:
        ref = compute_fingerprint_as_is(_in(teacher, getattr(torch, dtype)), inputs)
        fps = {k: compute_fingerprint_as_is(_in(m, getattr(torch, dtype)), inputs) for k, m in models.items()}
        pairs = {f"{a}-{b}": round(fingerprint_distance(fps[a], fps[b], ref), 4)
                 for a, b in (("A1", "A2"), ("A1", "B1"), ("A1", "A"), ("A2", "A"), ("B1", "B"), ("A", "B"))}
        out["dtypes"][dtype] = {"distance": pairs, "caught": sorted(k for k, d in pairs.items() if d < COPY_DISTANCE)}
    _in(teacher, torch.bfloat16)
    return out


def bench_fingerprint(worlds: list[str], seeds: int, dtypes: list[str], trained_steps: int = 20, lr: float = 1e-4) -> dict:
    from distil.fingerprint import FINGERPRINT_VERSION
    from distil.scoring.fingerprints import COPY_DISTANCE

    started = time.perf_counter()
    torch.manual_seed(0)
    result = {"bench": "fingerprint", "device": machine(), "fingerprint_version": FINGERPRINT_VERSION,
              "copy_distance": COPY_DISTANCE, "worlds": [bench_world(w, seeds, dtypes) for w in worlds]}
    if trained_steps:
        result["trained"] = bench_trained(trained_steps, lr, dtypes)
    # the headline rates: over both worlds, for each compute dtype (validators fingerprint
    # students in float32; bfloat16 shows what computing in the scoring dtype would give)
    for dtype in dtypes:
        copies = [r["dtypes"][dtype] for r in result["worlds"]]
        if copies:
            result[f"miss_rate_{dtype}"] = max(c["miss_rate"] for c in copies)
            result[f"false_positive_rate_{dtype}"] = max(c["false_positive_rate"] for c in copies)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def register(sub) -> None:
    p = sub.add_parser("fingerprint", help="functional-copy detector: miss and false-positive rates on tiny models")
    p.add_argument("--worlds", default="moe,dense", help="comma-separated: moe, dense (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="students per quality level (default: %(default)s)")
    p.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes (default: %(default)s)")
    p.add_argument("--trained-steps", type=int, default=20,
                   help="also distil students from a common start for this many steps (0: skip; default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate of --trained-steps (default: %(default)s)")
    p.set_defaults(run=lambda a: bench_fingerprint([w for w in a.worlds.split(",") if w], a.seeds, a.dtypes.split(","),
                                                   a.trained_steps, a.lr))
