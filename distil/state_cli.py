"""`distil-state`: look at a validator's state, and requeue a hotkey after a wrong disqualification.

    distil-state show [--state-dir DIR] [--hotkey HK] [--json]
    distil-state check [--state-dir DIR]
    distil-state requeue HOTKEY [--state-dir DIR]

DIR is the validator's `--neuron.full_path` (where `state.json` lives); without it, the
validator's own default for `--wallet.name`, `--wallet.hotkey` and `--netuid` (as the
validator's flags: ~/.bittensor/miners/default/default/netuid97/validator). `check` lists
every problem the validator would refuse the state for (it stops at start-up on the
first, naming the field); nothing is ever repaired silently. A requeue is
picked up by the validator at the start of its next epoch: the hotkey goes back to
`pending`, is pre-checked again and, if valid, challenges the king.

Exit status (docs/cli.md): 0 done (`check`: the validator would accept the state), 2 anything
else: a missing, unreadable or empty state directory, a state the validator would refuse, a
hotkey that has no record or cannot be requeued. It judges no model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from distil import NETUID
from distil.exits import EXIT_ERROR, EXIT_OK
from distil.state import DISQUALIFIED, StateError, load_state, pending_requests, request_requeue, state_path
from distil.state_schema import problems
from template.args import ArgumentParser, default_full_path
from template.text import LINE_LIMIT, printable


def _out(line: str = "", file=None) -> None:
    """One line of a view: hotkeys, commitments and details are the chain's and the miners' text."""
    print(printable(line, LINE_LIMIT), file=file or sys.stdout)


def _format_kl(kl: dict | None) -> str:
    return f"{kl['mean']:.6f}" if kl and kl.get("mean") is not None else "-"


def show(args) -> int:
    state = load_state(args.state_dir)
    if args.json:
        data = state.to_json()
        if args.hotkey:
            data = {"king": state.king, "miners": {args.hotkey: data["miners"].get(args.hotkey)}}
        print(json.dumps(data, indent=1))
        return 0
    _out(f"state: {state_path(args.state_dir)}")
    _out(f"king: {state.king or '-'}    last epoch block: {state.last_epoch_block}    scoring version: {state.scoring_version}")
    if state.last_round:
        lr = state.last_round
        _out(f"last round: seed block {lr.get('seed_block')} seed {lr.get('seed')} models {len(lr.get('models', []))}")
    rows = sorted(state.miners.items(), key=lambda kv: (kv[1].status != "king", kv[1].kl is None, (kv[1].kl or {}).get("mean", 0), kv[1].uid))
    if args.hotkey:
        rows = [(hk, m) for hk, m in rows if hk == args.hotkey]
        if not rows:
            _out(f"error: --hotkey {args.hotkey}: no record in {state_path(args.state_dir)}", file=sys.stderr)
            return EXIT_ERROR
    _out(f"{'uid':>4}  {'status':<12} {'reason':<11} {'kl':>9}  {'commit':>8}  hotkey / commitment / detail")
    for hotkey, m in rows:
        _out(f"{m.uid:>4}  {m.status:<12} {m.reason or '-':<11} {_format_kl(m.kl):>9}  {m.commit_block:>8}  {hotkey}")
        _out(f"{'':>49}{m.commitment}")
        if m.detail:
            _out(f"{'':>49}{m.code or ''} {m.detail}".rstrip())
    requests = pending_requests(args.state_dir)
    if requests:
        _out("pending requests: " + ", ".join(f"{d['action']} {d['hotkey']}" for _, d in requests))
    return 0


def check(args) -> int:
    """Every problem of state.json, one per line; exit 0 when the validator would accept it."""
    path = state_path(args.state_dir)
    if not path.exists():
        print(f"{path}: no state file (the validator starts fresh)")
        return 0
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"error: {path}: cannot read: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_ERROR
    found = problems(data)
    try:
        load_state(args.state_dir)  # also the version checks, which come before the schema
    except StateError as e:
        found = found or [str(e)]
    if not found:
        print(f"{path}: valid ({len(data.get('miners') or {})} miners, king {data.get('king') or '-'})")
        return EXIT_OK
    for problem in found:
        _out(f"{path}: {problem}", file=sys.stderr)
    print(f"{len(found)} problem(s); fix them by hand or restore a backup ({path.name}.1 …)", file=sys.stderr)
    return EXIT_ERROR


def requeue(args) -> int:
    state = load_state(args.state_dir)
    record = state.miners.get(args.hotkey)
    if record is None:
        print(f"error: no miner record for {args.hotkey} in {state_path(args.state_dir)}", file=sys.stderr)
        return EXIT_ERROR
    if record.code == "COMMITMENT_FORMAT":
        print(f"error: {args.hotkey}'s commitment {record.commitment[:80]!r} does not parse; requeueing cannot help "
              "(the miner commits again from a new hotkey)", file=sys.stderr)
        return EXIT_ERROR
    if record.status != DISQUALIFIED:
        print(f"note: {args.hotkey} is {record.status}, not disqualified; it will be checked and scored again")
    path = request_requeue(args.state_dir, args.hotkey)
    print(f"requeue of {args.hotkey} requested ({path}); the validator applies it at the start of its next epoch")
    return 0


def _add_state_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=None,
                        help="the validator's --neuron.full_path (default: the validator's own default for "
                             "--wallet.name, --wallet.hotkey and --netuid)")
    parser.add_argument("--wallet.name", dest="wallet_name", default="default",
                        help="with no --state-dir: the validator's --wallet.name (default: %(default)s)")
    parser.add_argument("--wallet.hotkey", dest="wallet_hotkey", default="default",
                        help="with no --state-dir: the validator's --wallet.hotkey (default: %(default)s)")
    parser.add_argument("--netuid", type=int, default=NETUID,
                        help="with no --state-dir: the validator's --netuid (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="distil-state", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_show = sub.add_parser("show", help="print the validator's state")
    _add_state_dir(p_show)
    p_show.add_argument("--hotkey", default=None, help="only this hotkey")
    p_show.add_argument("--json", action="store_true", help="print the state as JSON")
    p_show.set_defaults(func=show)
    p_check = sub.add_parser("check", help="list every problem the validator would refuse state.json for")
    _add_state_dir(p_check)
    p_check.set_defaults(func=check)
    p_requeue = sub.add_parser("requeue", help="send a hotkey back to pending after a wrong disqualification")
    p_requeue.add_argument("hotkey")
    _add_state_dir(p_requeue)
    p_requeue.set_defaults(func=requeue)
    return parser


def require_state_dir(state_dir: str) -> None:
    """Refuse a --state-dir that holds no readable validator state (never show an empty one)."""
    path = Path(state_dir).expanduser()
    if not path.exists():
        raise StateError(f"--state-dir {state_dir}: no such directory (give the validator's --neuron.full_path)")
    if not path.is_dir():
        raise StateError(f"--state-dir {state_dir}: not a directory (give the validator's --neuron.full_path)")
    if not os.access(path, os.R_OK | os.X_OK):
        raise StateError(f"--state-dir {state_dir}: cannot read the directory (permission denied)")
    if not state_path(path).is_file():
        raise StateError(
            f"--state-dir {state_dir}: no {state_path(path).name} there; a validator writes it into its "
            "--neuron.full_path after its first epoch"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default = args.state_dir is None
    if default:  # where the validator keeps it with the same wallet, hotkey and netuid
        args.state_dir = default_full_path(args.wallet_name, args.wallet_hotkey, args.netuid, "validator")
    try:
        require_state_dir(args.state_dir)
        return args.func(args)
    except StateError as e:
        where = (f" [the validator's default for --wallet.name {args.wallet_name} --wallet.hotkey {args.wallet_hotkey} "
                 f"--netuid {args.netuid}; pass --state-dir DIR]") if default else ""
        print(f"error: {e}{where}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
