"""The in-memory chain for `--mock` and tests (the SDK's `MockSubtensor` is broken in 9.x
and 10.x): registered hotkeys with their coldkeys, blocks that advance when asked,
deterministic block hashes, the 128-byte commitment limit, a weights rate limit, a record
of every weight set, and failures that tests can inject.

With a file (`--mock.chain_state FILE`) the chain is shared between processes, a miner
committing while a validator advances blocks: every operation takes an exclusive lock on
`FILE.lock`, re-reads `FILE`, and writes it back (atomically) after a change, so no
process loses another's writes.

It is also a small command for the mock world, the stand-in for `btcli subnets register`:

    python -m template.mock_chain register --mock.chain_state chain.json \\
        --wallet.name me --wallet.hotkey m1
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import sys
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from loguru import logger

from template.args import ArgumentParser
from template.chain import (
    AxonEndpoint,
    ChainClient,
    ChainError,
    CommitmentRecord,
    ExtrinsicRejected,
    MetagraphSnapshot,
    Neuron,
    TransientChainError,
    WeightSet,
    WeightsRateLimited,
    check_commitment_size,
    normalize_weights,
)


def mock_block_hash(block: int) -> str:
    """Deterministic stand-in for a block hash: sha256 of a fixed label and the number."""
    return "0x" + hashlib.sha256(f"distil-mock-chain/block/{block}".encode()).hexdigest()


def mock_coldkey(hotkey: str) -> str:
    """A coldkey of its own for a hotkey registered without one: a real SS58 address,
    derived from the hotkey so it is the same in every process."""
    from bittensor_wallet import Keypair

    return Keypair.create_from_uri(f"//distil-mock/coldkey-of/{hotkey}").ss58_address


@dataclass
class _MockNeuron:
    uid: int
    hotkey: str
    coldkey: str
    stake: float = 0.0
    validator_permit: bool = False
    axon: dict | None = None


@dataclass
class _Failure:
    kind: str  # "timeout" | "reject"
    message: str


class InMemoryChain(ChainClient):
    """A chain in one process, or shared between processes through a file.

    Blocks advance only when asked (`advance`, `wait_for_block`). Block hashes are a
    deterministic function of the block number. A commitment is stored like the real
    `Commitments.CommitmentOf` map (a new one from the same hotkey replaces the old one,
    with the new block); revealed commitments keep their history.

    Failures are injected per method name with `fail_next("set_weights", "reject")`,
    `"timeout"` raising `TransientChainError` and `"reject"` raising `ExtrinsicRejected`.
    They, and the `calls` counters, belong to this instance, never to the file.

    With `path`, the file is the chain: each operation locks it, re-reads it and, after a
    change, writes it back, so separate processes (`neurons/miner.py --mock`,
    `neurons/validator.py --mock`) share one chain without losing each other's writes.
    """

    def __init__(
        self,
        netuid: int = 97,
        start_block: int = 0,
        weights_rate_limit: int = 0,
        max_uids: int = 256,
        path: str | Path | None = None,
    ):
        self.netuid = netuid
        self._block = int(start_block)
        self.weights_rate_limit = int(weights_rate_limit)
        self.max_uids = max_uids
        self._neurons: dict[int, _MockNeuron] = {}
        self._plain: dict[str, CommitmentRecord] = {}
        self._revealed: dict[str, list[CommitmentRecord]] = defaultdict(list)
        self._last_weights_block: dict[str, int] = {}
        self._weight_sets: list[WeightSet] = []
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.RLock()
        self._depth = 0  # nesting of _synced: only the outermost one locks, reads and writes
        self._dirty = False
        self.path = Path(path) if path else None
        # seconds a block takes while someone waits for one; 0: the chain jumps there at once
        self.block_time_s = 0.0
        if self.path and self.path.exists():
            self._load(self.path)

    # -- sharing through the file ----------------------------------------------------------

    @contextmanager
    def _synced(self) -> Iterator[None]:
        """One operation on the chain: with a file, under its lock, on its latest contents."""
        with self._lock:
            if self._depth or self.path is None:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the lock file is closed
                if self.path.exists():
                    self._load(self.path)
                self._depth, self._dirty = 1, False
                try:
                    yield
                finally:
                    self._depth = 0
                if self._dirty:  # only after the operation succeeded
                    self._write(self.path)
                    self._dirty = False

    def _save(self) -> None:
        """Mark the chain changed: the operation's `_synced` writes the file when it ends."""
        self._dirty = True

    # -- test and scenario controls -------------------------------------------------

    def register(
        self,
        hotkey: str,
        coldkey: str | None = None,
        stake: float = 0.0,
        validator_permit: bool = False,
        uid: int | None = None,
    ) -> int:
        """Register `hotkey` (owned by `coldkey`, default a coldkey of its own); with `uid`,
        replace whoever holds that uid (deregistration)."""
        coldkey = coldkey or mock_coldkey(hotkey)
        with self._synced():
            existing = self._uid_of(hotkey)
            if existing is not None:
                return existing
            if uid is None:
                if len(self._neurons) >= self.max_uids:
                    raise ChainError("subnet is full; pass uid= to replace a neuron")
                uid = next(i for i in range(self.max_uids + 1) if i not in self._neurons)
            else:
                old = self._neurons.get(uid)
                if old is not None:
                    self._plain.pop(old.hotkey, None)
                    self._revealed.pop(old.hotkey, None)
            self._neurons[uid] = _MockNeuron(uid, hotkey, coldkey, stake, validator_permit)
            logger.debug(f"mock chain: registered {hotkey} as uid {uid} at block {self._block}")
            self._save()
            return uid

    def deregister(self, hotkey: str) -> None:
        with self._synced():
            uid = self._uid_of(hotkey)
            if uid is not None:
                del self._neurons[uid]
                self._plain.pop(hotkey, None)
                self._revealed.pop(hotkey, None)
                self._save()

    def advance(self, blocks: int = 1) -> int:
        with self._synced():
            self._block += int(blocks)
            self._save()
            return self._block

    def add_revealed_commitment(self, hotkey: str, data: str, block: int | None = None) -> None:
        """A timelocked commitment that the chain has revealed (`RevealedCommitments`)."""
        with self._synced():
            check_commitment_size(data)
            rec = CommitmentRecord(hotkey, data, self._block if block is None else int(block), True)
            self._revealed[hotkey].append(rec)
            self._save()

    def put_commitment(self, hotkey: str, data: str, block: int | None = None) -> None:
        """Place a plain commitment as if `hotkey` had written it at `block` (visible from then on)."""
        with self._synced():
            check_commitment_size(data)
            self._plain[hotkey] = CommitmentRecord(hotkey, data, self._block if block is None else int(block))
            self._save()

    def fail_next(self, method: str, kind: str = "timeout", times: int = 1, message: str = "") -> None:
        if kind not in ("timeout", "reject"):
            raise ValueError("kind must be 'timeout' or 'reject'")
        for _ in range(times):
            self._failures[method].append(_Failure(kind, message or f"injected {kind} in {method}"))

    @property
    def weight_sets(self) -> list[WeightSet]:
        """Every weight set so far, oldest first."""
        with self._synced():
            return list(self._weight_sets)

    def _maybe_fail(self, method: str) -> None:
        self.calls[method] += 1
        queue = self._failures.get(method)
        if queue:
            failure = queue.popleft()
            if failure.kind == "timeout":
                raise TransientChainError(failure.message)
            raise ExtrinsicRejected(failure.message)

    def _uid_of(self, hotkey: str) -> int | None:
        for uid, neuron in self._neurons.items():
            if neuron.hotkey == hotkey:
                return uid
        return None

    def _require_registered(self, hotkey: str) -> None:
        if self._uid_of(hotkey) is None:
            raise ExtrinsicRejected(f"hotkey {hotkey} is not registered on netuid {self.netuid}")

    # -- ChainClient -------------------------------------------------------------------

    def block(self) -> int:
        with self._synced():
            self._maybe_fail("block")
            return self._block

    def block_hash(self, block: int) -> str:
        with self._synced():
            self._maybe_fail("block_hash")
            if block < 0 or block > self._block:
                raise ChainError(f"block {block} does not exist yet (current block {self._block})")
            return mock_block_hash(block)

    def metagraph(self) -> MetagraphSnapshot:
        with self._synced():
            self._maybe_fail("metagraph")
            neurons = tuple(
                Neuron(
                    uid=n.uid,
                    hotkey=n.hotkey,
                    coldkey=n.coldkey,
                    stake=n.stake,
                    validator_permit=n.validator_permit,
                    axon=AxonEndpoint(**n.axon) if n.axon else None,
                )
                for n in sorted(self._neurons.values(), key=lambda n: n.uid)
            )
            return MetagraphSnapshot(self.netuid, self._block, neurons)

    def commitment_records(self) -> list[CommitmentRecord]:
        with self._synced():
            self._maybe_fail("commitment_records")
            registered = {n.hotkey for n in self._neurons.values()}
            records = [r for r in self._plain.values() if r.hotkey in registered]
            for hotkey, revealed in self._revealed.items():
                if hotkey in registered:
                    records.extend(revealed)
            # a commitment placed at a future block (a scenario) appears when the chain gets there
            records = [r for r in records if r.block <= self._block]
            return sorted(records, key=lambda r: (r.block, r.hotkey))

    def set_commitment(self, wallet, data: str) -> None:
        hotkey = wallet.hotkey.ss58_address
        with self._synced():
            self._maybe_fail("set_commitment")
            self._require_registered(hotkey)
            check_commitment_size(data)
            self._plain[hotkey] = CommitmentRecord(hotkey, data, self._block)
            logger.debug(f"mock chain: {hotkey} committed {data!r} at block {self._block}")
            self._save()

    def set_weights(self, wallet, uids, weights, version_key: int) -> None:
        hotkey = wallet.hotkey.ss58_address
        uids, weights = normalize_weights(uids, weights)
        with self._synced():
            self._maybe_fail("set_weights")
            self._require_registered(hotkey)
            if any(u not in self._neurons for u in uids):
                raise ExtrinsicRejected(f"weights name uids that do not exist: {uids}")
            last = self._last_weights_block.get(hotkey)
            if last is not None and self._block - last < self.weights_rate_limit:
                raise WeightsRateLimited(
                    f"weights rate limit: last set at block {last}, now {self._block}, "
                    f"limit {self.weights_rate_limit} blocks"
                )
            self._last_weights_block[hotkey] = self._block
            self._weight_sets.append(WeightSet(self._block, hotkey, tuple(uids), tuple(weights), int(version_key)))
            logger.debug(f"mock chain: {hotkey} set weights {dict(zip(uids, weights))} at block {self._block}")
            self._save()

    def serve_axon(self, wallet, axon) -> None:
        hotkey = wallet.hotkey.ss58_address
        with self._synced():
            self._maybe_fail("serve_axon")
            self._require_registered(hotkey)
            uid = self._uid_of(hotkey)
            ip = getattr(axon, "external_ip", None) or "127.0.0.1"
            port = int(getattr(axon, "external_port", None) or axon.port)
            coldkey = self._neurons[uid].coldkey
            self._neurons[uid].axon = asdict(AxonEndpoint(hotkey, coldkey, ip, port))
            self._save()

    def wait_for_block(self, block: int) -> int:
        while self.block_time_s > 0 and self.block() < block:  # paced: one block per block_time_s
            time.sleep(self.block_time_s)
            with self._synced():
                self._block += 1
                self._save()
        with self._synced():
            if block > self._block:
                self._block = int(block)
                self._save()
            return self._block

    # -- persistence -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "netuid": self.netuid,
            "block": self._block,
            "weights_rate_limit": self.weights_rate_limit,
            "neurons": [asdict(n) for n in sorted(self._neurons.values(), key=lambda n: n.uid)],
            "commitments": [asdict(r) for r in self._plain.values()],
            "revealed": [asdict(r) for rs in self._revealed.values() for r in rs],
            "last_weights_block": dict(self._last_weights_block),
            "weight_sets": [asdict(w) for w in self._weight_sets],
        }

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON {type(data).__name__}, not a mock chain's object")
            neurons = {n["uid"]: _MockNeuron(**n) for n in data["neurons"]}
            plain = {r["hotkey"]: CommitmentRecord(**r) for r in data["commitments"]}
            revealed: dict[str, list[CommitmentRecord]] = defaultdict(list)
            for r in data.get("revealed", []):
                revealed[r["hotkey"]].append(CommitmentRecord(**r))
            weight_sets = [
                WeightSet(w["block"], w["hotkey"], tuple(w["uids"]), tuple(w["weights"]), w["version_key"])
                for w in data.get("weight_sets", [])
            ]
            netuid, block = int(data["netuid"]), int(data["block"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ChainError(f"cannot read mock chain state {path}: {type(e).__name__}: {e}") from None
        self.netuid, self._block = netuid, block
        self.weights_rate_limit = data.get("weights_rate_limit", self.weights_rate_limit)
        self._neurons, self._plain, self._revealed = neurons, plain, revealed
        self._last_weights_block = dict(data.get("last_weights_block", {}))
        self._weight_sets = weight_sets

    def _write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")  # only the lock holder writes it
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)


# -- `python -m template.mock_chain register ...` ---------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m template.mock_chain",
        description="Work on a --mock chain file, as btcli does on the real chain.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    register = commands.add_parser(
        "register",
        help="register a mock wallet's hotkey (the file is created if it does not exist)",
        description="Register the hotkey of the mock wallet --wallet.name/--wallet.hotkey on the mock chain "
        "and print its uid. Registering a registered hotkey prints the uid it already has.",
        allow_abbrev=False,
    )
    register.add_argument("--mock.chain_state", dest="chain_state", required=True, help="the mock chain's JSON file")
    register.add_argument("--wallet.name", dest="wallet_name", default="default", help="mock wallet name (default: %(default)s)")
    register.add_argument("--wallet.hotkey", dest="wallet_hotkey", default="default", help="mock hotkey name (default: %(default)s)")
    register.add_argument("--netuid", type=int, default=97, help="netuid of a new chain file (default: %(default)s)")
    register.add_argument("--start-block", dest="start_block", type=int, default=0,
                          help="current block of a new chain file (default: %(default)s)")
    register.add_argument("--validator-permit", dest="validator_permit", action="store_true",
                          help="give the hotkey a validator permit (and 1000 stake), as a validator needs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from template.wallet import MockWallet

    from template.log import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()  # INFO on stderr, the neurons' format: loguru's default would print our DEBUG lines
    wallet = MockWallet(args.wallet_name, args.wallet_hotkey)
    where = Path(args.chain_state)
    try:
        if where.is_dir():  # the lock file would go beside it and the chain "file" never be written
            raise ChainError(f"--mock.chain_state {args.chain_state}: a directory, not a chain file")
        chain = InMemoryChain(netuid=args.netuid, start_block=args.start_block, path=args.chain_state)
        uid = chain.register(
            wallet.hotkey.ss58_address,
            coldkey=wallet.coldkey.ss58_address,
            stake=1000.0 if args.validator_permit else 0.0,
            validator_permit=args.validator_permit,
        )
    except (ChainError, OSError) as e:  # exit 2 as every program's bad argument (distil/exits.py)
        print(f"error: {e}" if isinstance(e, ChainError) else f"error: --mock.chain_state {args.chain_state}: "
              f"{e.strerror or type(e).__name__}", file=sys.stderr)
        return 2
    print(f"registered {args.wallet_name}/{args.wallet_hotkey} ({wallet.hotkey.ss58_address}) as uid {uid} "
          f"on netuid {chain.netuid} of {args.chain_state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
