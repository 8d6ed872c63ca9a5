"""distil-check: run the validators' pre-checks on a model before committing it.

    distil-check PATH                       a local model directory
    distil-check namespace/name@REVISION    a repo on the hub at a pinned commit
    distil-check namespace/name             the repo's current commit (resolved, then pinned)

Options: --teacher PATH_OR_REPO (the tokenizer reference; default the teacher repo),
--hotkey SS58 (the hotkey that will commit: distil.json must name it), --max-params N,
--vocab-size N (default the production limits), --json (one JSON object: ok, reason, code,
detail, params, content_hash), --endpoint URL, --cache-dir DIR, --allow-private (check a
private repo you can read with your token).

Exit status: 0 valid, 1 rejected (INVALID, COPY, UNAVAILABLE, or a check the repo's own files
made fail: CHECKER_ERROR, a check over its deadline), 2 usage error or transient failure (hub
unreachable, rate limited, our disk or memory: try again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from distil import MAX_PARAMS, TEACHER_REPO, VOCAB_SIZE
from distil.checks.args import looks_like_path, source_problem
from distil.checks.codes import is_verdict
from distil.checks.owner import validate_hotkey
from distil.checks.pipeline import check_commitment, hub_failure
from distil.checks.result import STEP_FAIL, STEP_PASS, CheckLimits, CheckResult
from distil.checks.tokenizer import load_reference
from distil.commitment import Commitment, CommitmentError, validate_repo
from distil.exits import EXIT_ERROR as EXIT_USAGE
from distil.exits import EXIT_OK
from distil.exits import EXIT_VERDICT as EXIT_REJECTED
from template.args import ArgumentParser
from template.text import LINE_LIMIT, printable


def _count(text: str) -> int:
    """A positive count: 5250000000, 5_250_000_000 or 5.25e9."""
    try:
        value = float(text) if any(c in text.lower() for c in ".e") else int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != int(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive whole number")
    return int(value)


def _hotkey(text: str) -> str:
    try:
        return validate_hotkey(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="distil-check",
        description=__doc__.split("\n\n")[0],
        epilog="Check codes: see docs/checks.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("target", help="model directory, or namespace/name@<40-hex revision> on the hub")
    parser.add_argument(
        "--teacher",
        default=TEACHER_REPO,
        help="the teacher's tokenizer: a directory or a hub repo (default: %(default)s)",
    )
    parser.add_argument(
        "--hotkey",
        type=_hotkey,
        default=None,
        help="ss58 address of the hotkey that will commit the model: the repo's distil.json must name it "
        "(default: report the hotkey the file names; validators check it against the committing hotkey)",
    )
    parser.add_argument("--max-params", type=_count, default=MAX_PARAMS, help="parameter cap (default: %(default)s)")
    parser.add_argument("--vocab-size", type=_count, default=VOCAB_SIZE, help="required vocab size (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    parser.add_argument(
        "--endpoint", default=os.environ.get("HF_ENDPOINT"), help="hub endpoint (default: $HF_ENDPOINT or huggingface.co)"
    )
    parser.add_argument("--cache-dir", default=None, help="download cache (default: huggingface_hub's cache)")
    parser.add_argument(
        "--allow-private", action="store_true", help="do not fail a private repo (validators will wait for it to be public)"
    )
    parser.add_argument("--progress", action="store_true", help="show download progress")
    return parser


def resolve_target(target: str, hub_store_factory):
    """(store, commitment, description) for a directory or a hub repo; CommitmentError otherwise."""
    from distil.hub import LocalModelStore

    if not target.strip():
        raise CommitmentError("empty target: give a model directory or namespace/name[@<40-hex revision>]")
    path = Path(target).expanduser()
    if path.exists() and not path.is_dir():
        raise CommitmentError(f"{target}: not a directory (give the model's directory, not a file in it)")
    if looks_like_path(target) and not path.exists():
        raise CommitmentError(f"{target}: no such directory")
    if path.is_dir():
        store = LocalModelStore()
        try:
            revision = store.add("local/model", path)
        except OSError as e:  # a file we may not read: the argument is unusable, not the model invalid
            raise CommitmentError(f"{target}: cannot read {e.filename or 'it'}: {e.strerror or type(e).__name__}") from None
        return store, Commitment("local/model", revision), f"{path.resolve()}"
    if "@" in target:
        commitment = Commitment.parse(target)
        return hub_store_factory(), commitment, str(commitment)
    if target.count("/") == 1 and not path.exists():
        repo = validate_repo(target)
        store = hub_store_factory()
        commitment = Commitment(repo, store.resolve_revision(repo))
        return store, commitment, f"{commitment} (current commit of {repo})"
    raise CommitmentError(
        f"{target!r} is neither a model directory nor namespace/name@<40-hex revision>"
    )


def format_report(result: CheckResult, description: str) -> str:
    lines = [f"distil-check {description}"]
    width = max(len(s.name) for s in result.steps) if result.steps else 10
    for step in result.steps:
        mark = {STEP_PASS: "pass", STEP_FAIL: "FAIL"}.get(step.status, "skip")
        code = f"{step.code}: " if step.code else ""
        lines.append(f"  [{mark}] {step.name.ljust(width)}  {code}{step.detail}")
    if result.ok:
        lines.append("result: VALID: every pre-check passed")
    else:
        lines.append(f"result: {result.reason} ({result.code}): {result.detail}")
    if result.params is not None:
        lines.append(f"params: {result.params:,}")
    if result.content_hash:
        lines.append(f"content hash: {result.content_hash}")
    if result.files_hash:
        lines.append(f"files hash: {result.files_hash}")
    return "\n".join(printable(line, LINE_LIMIT) for line in lines)  # details hold the repo's names: one line each


def exit_code(result: CheckResult) -> int:
    if result.ok:
        return EXIT_OK
    return EXIT_REJECTED if is_verdict(result.code) else EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from distil.hub import HubError, HuggingFaceStore

    hub_store = None

    def hub_store_factory():
        nonlocal hub_store
        if hub_store is None:
            hub_store = HuggingFaceStore(endpoint=args.endpoint, cache_dir=args.cache_dir)
        return hub_store

    try:
        store, commitment, description = resolve_target(args.target, hub_store_factory)
    except CommitmentError as e:
        print(f"distil-check: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except HubError as e:  # resolving `namespace/name`: report it like any other hub failure
        code, detail = hub_failure(e)
        return _emit(CheckResult.failure(code, f"could not resolve {args.target}: {detail}"), args.target, args.json)

    problem = source_problem(args.teacher, "--teacher", required=())  # a typo is named as such, not sent to the hub
    if problem:
        print(f"distil-check: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        teacher = load_reference(args.teacher, store=hub_store_factory())
    except Exception as e:
        print(
            f"distil-check: error: could not load the teacher's tokenizer from {args.teacher}: "
            f"{type(e).__name__}: {e}",
            file=sys.stderr,
        )
        return EXIT_USAGE

    limits = CheckLimits(max_params=args.max_params, vocab_size=args.vocab_size, require_public=not args.allow_private)
    from loguru import logger

    # the report below says what the checks found, once: the pipeline's own log line (the
    # validator's record of a verdict) would repeat the failure in another format
    logger.disable("distil.checks.pipeline")
    try:
        result = check_commitment(store, commitment, limits, teacher=teacher, hotkey=args.hotkey, progress=args.progress)
    finally:
        logger.enable("distil.checks.pipeline")
    return _emit(result, description, args.json)


def _emit(result: CheckResult, description: str, as_json: bool) -> int:
    print(json.dumps(result.to_json()) if as_json else format_report(result, description))
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
