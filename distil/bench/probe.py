"""`probe`: the degeneration guard's margins on honest students and its verdict on the reproductions.

Builds the demo's tiny teacher and its noise-copy students (`fair`, `good`, `better`,
exactly as `python -m distil.demo build` does) and, as a second world, the same teacher made to
end its text after a random 1 % of the ids it may write (never the prompts' byte ids) (`tiny.stopping_copy`; the demo's
teacher never writes EOS within 512 tokens) with students that are noise copies of *that*
teacher. Every model generates on the demo's prompts through the probe's own code
(`greedy_generate`, `probe_verdict`); for each the JSON gives its statistics and how far it
is from each DEGENERATE limit:

* `loop_room`: looping prompts it could add before the loop limit (≥ 1 passes);
* `share_room`: repeated-4-gram share it could add before the share limit (> 0 passes);
* `length_ratio`: its mean generated length / the teacher's (DEGENERATE below
  `probe_length_ratio`, 0.5).

`reproductions` are the issue's three continuations that spec v2 passed, built on the teacher's
own continuations: EOS first on every prompt, one token then EOS, and a period-5 loop over
the last 18 % of the `--max-new-tokens` budget (92 tokens of 512; at the demo's 32 it is 6
tokens, below any loop's length, and passes). Figures in docs/scoring.md.
"""

from __future__ import annotations

import json
import time

import torch

from distil.bench import machine


def _prompts(n: int) -> list[list[int]]:
    import tempfile
    from pathlib import Path

    from distil import tiny
    from distil.demo import write_prompts

    tokenizer = tiny.build_tokenizer()
    with tempfile.TemporaryDirectory() as d:
        lines = write_prompts(Path(d) / "prompts.jsonl", n=max(n, 64)).read_text().splitlines()
    return [tokenizer(json.loads(line)["text"], add_special_tokens=False)["input_ids"] for line in lines[:n]]


def _room(result, spec) -> dict:
    t = spec.degeneration_thresholds()
    s, ts = result.stats, result.teacher_stats
    return {
        "verdict": result.verdict,
        "loops": s.loops, "loop_room": t.loop_limit(s.n, ts.loops) - s.loops,
        "repeated_share": round(s.mean_repeated_ngram_share, 4),
        "share_room": round(ts.mean_repeated_ngram_share + t.repeat_margin - s.mean_repeated_ngram_share, 4),
        "mean_tokens": s.mean_tokens, "eos": s.eos,
        "length_ratio": round(s.mean_tokens / ts.mean_tokens, 4) if ts.mean_tokens else None,
    }


def _reproductions(teacher_conts: list[list[int]], eos: int, max_new_tokens: int) -> dict[str, list[list[int]]]:
    def tail_loop(c: list[int]) -> list[int]:
        # the teacher's text (varied ids after it if it stopped) up to 82 % of the budget
        # (420 of 512), then a period-5 loop to the end of the budget
        start = int(0.82 * max_new_tokens)
        body = ([t for t in c if t != eos] + list(range(100_000, 100_000 + max_new_tokens)))[:start]
        return body + ([11, 12, 13, 14, 15] * max_new_tokens)[: max_new_tokens - start]

    return {
        "eos_first": [[eos] for _ in teacher_conts],
        "one_token_then_eos": [[c[0], eos] for c in teacher_conts],
        "tail_loop_last_18pct": [tail_loop(c) for c in teacher_conts],
    }


def bench_probe(n_prompts: int, max_new_tokens: int, stop_share: float) -> dict:
    from distil import tiny
    from distil.demo import NOISY_STUDENTS, TEACHER_LOGIT_SCALE
    from distil.eval.probe import probe_verdict
    from distil.eval.spec import EvalSpec
    from distil.eval.teacher import greedy_generate

    spec = EvalSpec(n_prompts=n_prompts, max_new_tokens=max_new_tokens, probe_prompts=n_prompts)
    prompts = _prompts(n_prompts)
    eos = [tiny.EOS_ID]
    demo_teacher = tiny.build_model(tiny.teacher_config(), seed=0, logit_scale=TEACHER_LOGIT_SCALE)
    generator = torch.Generator().manual_seed(0)
    vocab = demo_teacher.config.vocab_size
    # ids the model writes, never bytes (the prompts' ids): a trigger in the prompt would stop it at once
    triggers = (256 + torch.randperm(vocab - 256, generator=generator)[: int(stop_share * vocab)]).tolist()
    worlds = {"demo": demo_teacher, "stopping": tiny.stopping_copy(demo_teacher, trigger_ids=triggers)}
    out = {"bench": "probe", "device": machine(), "prompts": n_prompts, "max_new_tokens": max_new_tokens,
           "thresholds": spec.degeneration_thresholds().__dict__, "worlds": {}}
    started = time.perf_counter()
    for world, teacher in worlds.items():
        def generate(model, who):
            return greedy_generate(model, prompts, max_new_tokens, eos, spec.generation_batch_size, who=who)

        teacher_conts = generate(teacher, "teacher")
        rows = {"teacher": _room(probe_verdict("teacher", teacher_conts, teacher_conts, eos, spec), spec)}
        for i, (name, (noise, _)) in enumerate(NOISY_STUDENTS.items()):
            student = tiny.perturbed_copy(teacher, seed=1 + i, scale=noise)  # the demo's seeds
            rows[name] = _room(probe_verdict(name, generate(student, name), teacher_conts, eos, spec), spec)
        for name, conts in _reproductions(teacher_conts, tiny.EOS_ID, max_new_tokens).items():
            rows[name] = _room(probe_verdict(name, conts, teacher_conts, eos, spec), spec)
        out["worlds"][world] = rows
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def register(sub) -> None:
    p = sub.add_parser("probe", help="degeneration guard: margins of honest students, verdicts on the reproductions")
    p.add_argument("--prompts", type=int, default=16, help="K: probe prompts (default: %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--stop-share", type=float, default=0.01,
                   help="share of the vocabulary after which the 'stopping' world's teacher ends its text")
    p.set_defaults(run=lambda a: bench_probe(a.prompts, a.max_new_tokens, a.stop_share))
