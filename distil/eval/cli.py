"""`distil-eval`: score students against the teacher exactly as validators do.

    distil-eval --teacher PATH_OR_REPO --student PATH_OR_REPO [--student ...]
                [--prompts-file F | --dataset NAME] --seed HEX [--n-prompts N]
                [--max-new-tokens N] [--device cpu|cuda] [--json]
    distil-eval --teacher PATH_OR_REPO --student ... --round ROUND.json [--force] [--json]

Every EvalSpec field is a flag (`--chunk-size`, `--dataset-revision`, ...). `--round`
re-scores students on exactly the prompts and teacher continuations of a previous run
(the JSON that `--json` prints), so anyone can audit a validator's round; it refuses a
teacher other than the round's (judged by content: `repo@revision` on the hub, the
content revision of a directory, so a copy of the round's teacher is the same teacher)
unless `--force`, which records the mismatch in the output. Without `--prompts-file`,
`--dataset` or `--round`, the prompts come from the validators' dataset. A
PATH_OR_REPO that is not a local directory is downloaded from the hub
(`namespace/name@<revision>` pins it; a student's revision is a 40-hex commit, as
validators pin it); students download in the background while
the teacher runs. Before any teacher work, every student is resolved (a hub repo's current
commit is pinned) and put through the validators' pre-checks that read no weight byte
(files, config and tokenizer JSON, safetensors headers, architecture): one that fails gets
its verdict there and is neither downloaded nor scored. `--devices` scores students in
parallel, one worker process per device (runtime only: the same numbers as one device).
Logs go to stderr, the result to stdout.
Every scored student is also probed (scoring spec v2's degeneration guard: it generates
greedily on the first `--probe-prompts` prompts and is compared with the teacher's own
continuations); the verdict is printed and goes into the JSON as the model's `probe`
object, so a miner sees it before committing. A verdict is a result: it does not change
the exit status.
With a king to compare with (the `king` of a `--round` file, otherwise the first of several
`--student`s), each other student gets a line saying what scoring spec v3's dethrone rule
makes of the difference (`distil.scoring.rules.required_gain`), and the same figures as its
`dethrone` object in the JSON.
Exit status (docs/cli.md): 0 every student scored; 1 a student got a verdict (refused by
the pre-checks, or invalid when loaded or scored); 2 anything else: a bad argument (the
teacher, the prompts, a path, a number), or a failure that is nobody's verdict (the hub,
our disk or memory, a student that failed transiently): try again.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import re
import sys
from pathlib import Path

from loguru import logger

from distil import SCORING_VERSION
from distil.eval.args import UsageError, devices_of, flag, spec_values
from distil.eval.results import INVALID
from distil.eval.spec import CLIMBMIX, FINEWEB, EvalSpec
from distil.exits import EXIT_ERROR, EXIT_OK, EXIT_VERDICT
from template.args import ArgumentParser, one_line
from template.log import setup_logging
from template.text import printable

# Settings `--round` may change: where and how fast it runs, not what is scored. Not
# `generation_batch_size`: the round's continuations are given, but the degeneration probe
# generates in batches of it, and batching can flip a near-tie argmax (a different verdict).
RUNTIME_FIELDS = {"device", "dtype", "chunk_size", "compile_kl", "own_logits_chunk", "student_timeout_s",
                  "prompt_cache_dir"}
# Files a model needs; nothing else is downloaded (no code, no pickles).
MODEL_FILES = ["config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
               "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
               "chat_template.jinja"]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="distil-eval", description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="teacher directory or hub repo[@revision]")
    parser.add_argument("--student", action="append", required=True, help="student directory or hub repo[@<40-hex sha>] (repeatable)")
    src = parser.add_mutually_exclusive_group()  # none of them: the validators' dataset
    src.add_argument("--prompts-file", help='JSONL of {"text": ...} or {"input_ids": [...]} lines')
    src.add_argument("--round", help="re-score on the prompts and continuations of this distil-eval JSON")
    parser.add_argument("--seed", help="the seed block's hash (hex); required unless --round")
    parser.add_argument("--force", action="store_true",
                        help="with --round: score even with a teacher other than the round's; the mismatch is "
                        "recorded in the output")
    parser.add_argument("--json", action="store_true", help="print the round as JSON")
    parser.add_argument("--timings", action="store_true", help="add phase timings to the JSON")
    parser.add_argument("--devices", help="score students in parallel, one worker process per device "
                        "(e.g. cuda:0,cuda:1; the teacher runs on the first; overrides --device)")
    parser.add_argument("--log-level", default="INFO")
    spec = parser.add_argument_group(f"scoring spec (defaults: scoring spec v{SCORING_VERSION})")
    for f in dataclasses.fields(EvalSpec):
        default = f.default
        kwargs = dict(default=None, help=f"default: {default!r}")
        if f.type in ("bool", bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = {"int": int, "float": float}.get(str(f.type), str)
        if f.name == "dataset":
            src.add_argument(flag(f.name), help=f"corpus: {CLIMBMIX} (default) or {FINEWEB}, or a local folder of parquet/JSONL",
                             default=None)
            continue
        if f.name == "device":
            kwargs["help"] = "cpu or cuda[:N] (default: cuda if available, else cpu, as the validator)"
        spec.add_argument(flag(f.name), **kwargs)
    return parser


def resolve_model(source: str, files: list[str] | None = None) -> str:
    """A local directory as is; otherwise `repo[@revision]` downloaded (model files only, or
    the `files` patterns: a tokenizer before the weights)."""
    if os.path.isdir(source):
        return source
    if os.sep in source.lstrip(".") and source.startswith((".", os.sep)):
        raise UsageError(f"{source} is not a directory")
    from huggingface_hub import snapshot_download

    repo, _, revision = source.partition("@")
    logger.info(f"downloading {repo}@{revision or 'main'} from the hub" + (f" ({', '.join(files)})" if files else ""))
    return snapshot_download(repo_id=repo, revision=revision or None, allow_patterns=files or MODEL_FILES)


def teacher_identity(source: str, resolved: str | None = None) -> str | None:
    """What a teacher is, judged by content: `repo@revision` for a hub teacher, `local@<content
    revision>` for a directory (every copy of a directory has the same). None when a hub
    teacher's revision is not known yet (not pinned, not downloaded)."""
    if os.path.isdir(source):
        from distil.hub import directory_revision

        logger.info(f"teacher {source}: computing its content revision (reads every file)")
        return f"local@{directory_revision(source)}"
    repo, _, revision = source.partition("@")
    if not revision and resolved is not None:  # snapshot_download names a snapshot by its commit
        revision = Path(resolved).name
    return f"{repo}@{revision}" if revision else None


def recorded_teacher_identity(doc: dict) -> str | None:
    """The identity of the teacher a round was scored with, if the file lets us know it."""
    if doc.get("teacher_identity"):
        return doc["teacher_identity"]
    teacher = str(doc.get("teacher") or "")
    if re.fullmatch(r"[^@\s]+/[^@\s]+@[0-9a-f]{40}", teacher):  # a validator's pinned hub teacher
        return teacher
    if teacher and os.path.isdir(teacher):  # a directory that is on this machine too
        return teacher_identity(teacher)
    return None


def teacher_mismatch(round_file: str, teacher: str, used: str | None) -> dict | None:
    """None when `teacher` (whose identity is `used`) is the round's teacher; else {recorded, used, detail}."""
    with open(round_file, encoding="utf-8") as f:
        doc = json.load(f)
    recorded = recorded_teacher_identity(doc)
    if recorded is not None and recorded == used:
        return None
    detail = (f"--teacher {teacher} ({used}) is not the round's teacher {doc.get('teacher')!r} ({recorded})"
              if recorded is not None else
              f"the round file does not say which content its teacher {doc.get('teacher')!r} had, so --teacher "
              f"{teacher} cannot be checked against it")
    return {"recorded": recorded, "used": used, "detail": detail}


def _prepare(args):
    """(spec, seed, prompt_source_description, source_ids, prompt_ids, continuations)."""
    from distil.eval.preflight import read_round
    from distil.eval.prompts import (DatasetPromptSource, JsonlPromptSource, prompts_file_problem, seed_from_block_hash,
                                     tokenize_prompts)

    values = spec_values(args)
    if len(set(args.student)) != len(args.student):
        raise UsageError("each --student may be given once")
    if args.round:
        doc = read_round(args.round)
        fixed = sorted(set(values) - RUNTIME_FIELDS)
        if fixed:
            raise UsageError(f"--round fixes the scoring spec; cannot change {', '.join(flag(k) for k in fixed)}")
        spec = EvalSpec.from_dict({**doc["spec"], **values})
        seed = doc["seed"]
        if args.seed and seed_from_block_hash(args.seed) != seed:
            raise UsageError(f"--seed {args.seed} differs from the round's seed {seed}")
        prompts = doc["prompts"]
        if len(prompts) != spec.n_prompts:
            raise UsageError(f"round has {len(prompts)} prompts but its spec says n_prompts={spec.n_prompts}")
        ids = [p["prompt_ids"] for p in prompts]
        conts = [p["continuation_ids"] for p in prompts]
        return spec, seed, doc.get("prompt_source", {}), [p.get("source_id", str(i)) for i, p in enumerate(prompts)], ids, conts
    if not args.seed:
        raise UsageError("--seed is required (the seed block's hash, hex)")
    try:
        seed = seed_from_block_hash(args.seed)
    except ValueError:
        raise UsageError(f"--seed {args.seed}: not a hex block hash") from None
    if args.prompts_file:
        values.pop("dataset", None)
        spec = EvalSpec(**values)
        if problem := prompts_file_problem(args.prompts_file, spec.n_prompts, "--prompts-file", spec.text_column):
            raise UsageError(problem)
        source = JsonlPromptSource(args.prompts_file, spec.text_column)
    else:
        spec = EvalSpec(**values)
        source = DatasetPromptSource(spec.dataset, spec.dataset_revision, spec.text_column, spec.dataset_shards,
                                     spec.rows_per_shard, spec.dataset_data_dir, spec.prompt_cache_dir)
    sampled = source.sample(seed, spec.n_prompts)
    description = source.describe()
    tokenizer = None
    if any(p.input_ids is None for p in sampled):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.teacher), trust_remote_code=False)
    ids = tokenize_prompts(sampled, tokenizer, spec.max_prompt_chars, spec.max_prompt_tokens, spec.vocab_size)
    return spec, seed, description, [p.source_id for p in sampled], ids, None


def _refuse_teacher(mismatch: dict) -> int:
    print(f"distil-eval: error: {mismatch['detail']}. Pass the round's teacher, or --force to score anyway "
          "(the output records the mismatch).", file=sys.stderr)
    return EXIT_ERROR


def format_table(doc: dict) -> str:
    rows = [("model", "KL mean", "± se", "median", "p99", "top-1", "positions / failure")]
    for m in doc["models"]:
        if m["status"] == "ok":
            rows.append((m["key"], f"{m['kl_mean']:.6f}", f"{m['kl_se']:.6f}" if m["kl_se"] is not None else "-",
                         f"{m['kl_median']:.6f}", f"{m['kl_p99']:.6f}", f"{m['top1_agreement']:.4f}", str(m["n_positions"])))
        else:
            f = m["failure"]
            rows.append((m["key"], "-", "-", "-", "-", "-", f"{f['kind'].upper()} ({f['phase']}): {printable(f['detail'])}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    n_tokens = sum(len(p["continuation_ids"]) for p in doc["prompts"])
    head = f"seed {doc['seed']}  |  {len(doc['prompts'])} prompts, {n_tokens} teacher tokens  |  scoring v{doc['scoring_version']}"
    if doc.get("teacher_mismatch"):
        head += f"\nTEACHER MISMATCH (--force): {doc['teacher_mismatch']['detail']}"
    probes = [probe_line(m) for m in doc["models"] if m.get("probe")]
    return "\n".join([head, *lines, *probes])


def probe_line(model: dict) -> str:
    """`probe: KEY passed (loops 0/8, repeated 4-grams 0.012 vs teacher 0.010)` (+ the detail when DEGENERATE)."""
    p = model["probe"]
    if p["verdict"] == "failed":
        f = p["failure"]
        return f"probe: {model['key']} could not run ({f['kind']}, {f['phase']}): {printable(f['detail'])}"
    line = (f"probe: {model['key']} {p['verdict']} (loops {p['stats']['loops']}/{p['k']}, repeated 4-grams "
            f"{p['stats']['mean_repeated_ngram_share']:.3f} vs teacher {p['teacher_stats']['mean_repeated_ngram_share']:.3f})")
    return line + (f"\n  {printable(p['detail'])}" if p["verdict"] != "passed" else "")


def compare_with_king(doc: dict, round_file: str | None) -> list[str]:
    """Scoring spec v3's dethrone rule on the students just scored (`rules.required_gain`): one
    line each, and the same figures as each student's `dethrone` object in the JSON.

    The king is the round file's `king` (a validator's round) when there is one; otherwise,
    with several students, the first `--student`, and the others are its challengers."""
    from distil.scoring.rules import required_gain

    scored = [m for m in doc["models"] if m.get("status") == "ok"]
    king_key, king_kl, source = None, None, None
    if round_file:
        with open(round_file, encoding="utf-8") as f:
            recorded = json.load(f)
        named, models = recorded.get("king"), recorded.get("models")
        entry = next((m for m in (models if isinstance(models, list) else []) if isinstance(m, dict)
                      and named is not None and m.get("key") == named and m.get("status") == "ok"), None)
        if entry is not None:
            king_key, king_kl, source = named, entry.get("per_prompt_kl") or [], "round"
        elif len(doc["models"]) < 2:
            return ["vs king: the round file names no scored king to compare with"]
    if source is None:
        if len(doc["models"]) < 2:
            return []
        first = doc["models"][0]
        if first.get("status") != "ok":
            return [f"vs king: the first --student {printable(first['key'])} was not scored: no comparison"]
        king_key, king_kl, source = first["key"], first["per_prompt_kl"], "first_student"
    lines = []
    for m in scored:
        if source == "first_student" and m["key"] == king_key:
            continue
        try:
            need = required_gain(king_kl, m["per_prompt_kl"])
        except (TypeError, ValueError) as e:
            lines.append(f"{printable(m['key'])} vs {printable(king_key)}: cannot compare with the king's "
                         f"per-prompt KL ({printable(str(e))})")
            continue
        king_name = f"the round's king {king_key}" if source == "round" else king_key
        m["dethrone"] = {"king": king_key, "king_from": source, **need.to_dict(), "line": need.line(m["key"], king_name)}
        lines.append(m["dethrone"]["line"])
    return lines


def probe_scored(doc: dict, result, sources: dict, spec: EvalSpec) -> None:
    """Probe every scored student (the degeneration guard) and add its `probe` object to the JSON."""
    from distil.eval.probe import probe_one

    for model in doc["models"]:
        if model["status"] != "ok":
            continue
        outcome = probe_one(model["key"], sources[model["key"]].result(), result.prompt_ids, result.continuation_ids,
                            result.eos_ids, spec)
        model["probe"] = (outcome.to_dict() if outcome.ok else
                          {"verdict": "failed", "failure": {"kind": outcome.kind, "phase": outcome.phase, "detail": outcome.detail}})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error
    setup_logging(level=args.log_level)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - cosmetics only
        pass
    from distil.eval.engine import run_round
    from distil.eval.preflight import check_eval, hub_endpoint
    from distil.eval.prefetch import Prefetch
    from distil.eval.report import round_to_json
    from distil.hub.huggingface import translate_hub_error

    # device, model sources, the teacher's headers, each student's header-level pre-checks,
    # memory plan, disk: all before any teacher work
    code, checks = check_eval(args)
    if code is not None:
        return code
    failed = {c.source: c.failure for c in checks if c.failure is not None}
    fetch = {c.source: c.fetch for c in checks if c.failure is None} if checks else {s: s for s in args.student}
    if not fetch:  # every student has its verdict already: no teacher work at all
        return _report_unscored(args, [failed[s] for s in args.student])
    # Hub students download in the background from here on, while the prompts are
    # prepared and the teacher loads and generates; a usage error leaves without waiting.
    prefetch = Prefetch([(s, functools.partial(resolve_model, f)) for s, f in fetch.items()])
    try:
        devices = devices_of(args)
        spec, seed, description, source_ids, ids, conts = _prepare(args)
    except (UsageError, ValueError) as e:
        prefetch.close(wait=False)
        print(f"distil-eval: error: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:  # the dataset or the teacher's tokenizer is out of reach: say which, no traceback
        where = "" if args.round or args.prompts_file else f" from the dataset {args.dataset or CLIMBMIX} (hub {hub_endpoint()})"
        prefetch.close(wait=False)
        print(f"distil-eval: cannot get the prompts{where}: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    logger.info(f"spec: {json.dumps(spec.to_dict(), sort_keys=True)}")
    # the teacher's identity goes into the JSON (a directory's is read from all its bytes: only when needed)
    wants_identity = bool(args.round or args.json)
    pinned = os.path.isdir(args.teacher) or "@" in args.teacher
    identity = teacher_identity(args.teacher) if wants_identity and pinned else None
    mismatch = None
    if args.round and pinned:  # check before downloading anything
        mismatch = teacher_mismatch(args.round, args.teacher, identity)
        if mismatch and not args.force:
            prefetch.close(wait=False)
            return _refuse_teacher(mismatch)
    try:
        teacher_path = resolve_model(args.teacher)
    except Exception as e:
        prefetch.close(wait=False)
        why = e if isinstance(e, UsageError) else translate_hub_error(args.teacher.partition("@")[0], e, hub_endpoint())
        print(f"distil-eval: cannot get the teacher {args.teacher}: {one_line(why)}", file=sys.stderr)
        return EXIT_ERROR
    if wants_identity and not pinned:  # the hub revision is known now
        identity = teacher_identity(args.teacher, teacher_path)
    if args.round and not pinned:
        mismatch = teacher_mismatch(args.round, args.teacher, identity)
        if mismatch and not args.force:
            prefetch.close(wait=False)
            return _refuse_teacher(mismatch)
    if mismatch:
        logger.warning(f"--force: {mismatch['detail']}; the result records the mismatch")
    try:
        result = run_round(teacher_path, prefetch.sources, ids, spec, continuations=conts, devices=devices)
    except Exception as e:  # the teacher pass is ours (the teacher, the device): no verdict on a student
        prefetch.close(wait=False)
        logger.opt(exception=e).debug("teacher pass failed: traceback")
        print(f"distil-eval: teacher pass failed: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    prefetch.close()
    result.timings["download_s"] = prefetch.download_s
    # the students refused before the teacher pass take their place in the given order
    result.results = {s: result.results[s] if s in result.results else failed[s] for s in args.student}
    doc = round_to_json(seed, spec.to_dict(), description, args.teacher, source_ids, result, timings=args.timings)
    probe_scored(doc, result, dict(prefetch.sources), spec.replace(device=(devices or [spec.device])[0]))
    if identity is not None:
        doc["teacher_identity"] = identity
    if mismatch:
        doc["teacher_mismatch"] = mismatch
    comparisons = compare_with_king(doc, args.round)
    if args.json:
        print(json.dumps(doc))
    else:
        print("\n".join([format_table(doc), *comparisons]))
    return exit_status(result.results.values())


def exit_status(results) -> int:
    """0 every student scored; 1 a student got a verdict (invalid); 2 otherwise (transient only)."""
    failures = [r for r in results if not r.ok]
    if not failures:
        return EXIT_OK
    return EXIT_VERDICT if any(f.kind == INVALID for f in failures) else EXIT_ERROR


def _report_unscored(args, failures: list) -> int:
    """Every student failed its header-level checks: their verdicts, and no teacher pass."""
    for f in failures:
        print(f"distil-eval: {f.key}: {f.kind.upper()} ({f.phase}): {f.detail}", file=sys.stderr)
    if args.json:
        print(json.dumps({"models": [f.to_dict() for f in failures]}))
    return exit_status(failures)


if __name__ == "__main__":
    sys.exit(main())
