"""The chain, behind one small interface.

`ChainClient` is everything the neurons need from a Bittensor chain: the current block
and block hashes, a metagraph snapshot, the commitments with the block each was made at,
writing a commitment, setting weights, serving an axon and finding validators' axons.

Two implementations:

* `BittensorChain` talks to a real subtensor through bittensor 10.5's `Subtensor`. Every
  write returns an `ExtrinsicResponse`, which is always truthy: we check `.success` and
  raise instead.
* `InMemoryChain` is the chain for `--mock` and tests (the SDK's `MockSubtensor` is
  broken in 9.x and 10.x): registered hotkeys, blocks that advance when asked,
  deterministic block hashes, the 128-byte commitment limit, a weights rate limit, a
  record of every weight set, and failures that tests can inject.

Errors are split in two: `TransientChainError` (timeouts, lost connections: retry later)
and `ChainError` / `ExtrinsicRejected` (the chain said no).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from loguru import logger

MAX_COMMITMENT_BYTES = 128
BLOCK_TIME_S = 12.0


class ChainError(Exception):
    """The chain refused or failed an operation in a way retrying will not fix by itself."""


class TransientChainError(ChainError):
    """A timeout or lost connection: nothing is known to have happened; try again later."""


class ExtrinsicRejected(ChainError):
    """An extrinsic was submitted and the chain answered `success=False`."""


class WeightsRateLimited(ExtrinsicRejected):
    """Weights were set too recently (`weights_rate_limit`): retrying before then is pointless."""


class NotRegisteredError(ChainError):
    """The wallet's hotkey is not registered on the subnet."""


@dataclass(frozen=True)
class AxonEndpoint:
    """Where a neuron serves its axon (the fields of bittensor's `AxonInfo` that matter)."""

    hotkey: str
    coldkey: str
    ip: str
    port: int
    ip_type: int = 4
    version: int = 0

    @property
    def is_serving(self) -> bool:
        return self.ip not in ("0.0.0.0", "", "::") and self.port > 0

    def to_axon_info(self):
        import bittensor as bt

        return bt.AxonInfo(
            version=self.version,
            ip=self.ip,
            port=self.port,
            ip_type=self.ip_type,
            hotkey=self.hotkey,
            coldkey=self.coldkey,
        )


@dataclass(frozen=True)
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    stake: float = 0.0
    validator_permit: bool = False
    axon: AxonEndpoint | None = None


@dataclass(frozen=True)
class MetagraphSnapshot:
    """The subnet's neurons at one block; what `ChainClient.metagraph()` returns."""

    netuid: int
    block: int
    neurons: tuple[Neuron, ...]

    @property
    def hotkeys(self) -> list[str]:
        return [n.hotkey for n in self.neurons]

    @property
    def n(self) -> int:
        return len(self.neurons)

    def uid_of(self, hotkey: str) -> int | None:
        for neuron in self.neurons:
            if neuron.hotkey == hotkey:
                return neuron.uid
        return None

    def validators(self) -> list[Neuron]:
        return [n for n in self.neurons if n.validator_permit]


@dataclass(frozen=True)
class CommitmentRecord:
    """A commitment as the chain holds it: the raw text and the block it was written at.

    `data` is the text exactly as stored (bytes that are not UTF-8 become U+FFFD, so a
    strict parser rejects them); parsing is the caller's business.
    """

    hotkey: str
    data: str
    block: int
    revealed: bool = False


@dataclass(frozen=True)
class WeightSet:
    block: int
    hotkey: str
    uids: tuple[int, ...]
    weights: tuple[float, ...]
    version_key: int


def normalize_weights(uids: Sequence[int], weights: Sequence[float]) -> tuple[list[int], list[float]]:
    """Validate a weight vector: same lengths, unique non-negative uids, finite non-negative weights."""
    uids = [int(u) for u in uids]
    weights = [float(w) for w in weights]
    if len(uids) != len(weights):
        raise ValueError(f"{len(uids)} uids but {len(weights)} weights")
    if len(set(uids)) != len(uids):
        raise ValueError("duplicate uids in weight vector")
    if any(u < 0 for u in uids):
        raise ValueError("negative uid in weight vector")
    if any(not (w >= 0.0 and w != float("inf")) for w in weights):
        raise ValueError("weights must be finite and non-negative")
    return uids, weights


def earliest_commitments(records: Iterable[CommitmentRecord]) -> dict[str, CommitmentRecord]:
    """The earliest record per hotkey (one commitment per hotkey: later ones do not count)."""
    out: dict[str, CommitmentRecord] = {}
    for record in records:
        current = out.get(record.hotkey)
        if current is None or record.block < current.block:
            out[record.hotkey] = record
    return out


class ChainClient(ABC):
    """What a neuron needs from the chain, for one subnet (`netuid`)."""

    netuid: int

    @abstractmethod
    def block(self) -> int:
        """The current block number."""

    @abstractmethod
    def block_hash(self, block: int) -> str:
        """The hash of a past or current block, as ``0x`` + 64 hex characters."""

    @abstractmethod
    def metagraph(self) -> MetagraphSnapshot:
        """Every neuron of the subnet now."""

    @abstractmethod
    def commitment_records(self) -> list[CommitmentRecord]:
        """All commitments visible on the subnet, plain and revealed, with their blocks."""

    def commitments(self) -> dict[str, CommitmentRecord]:
        """The earliest visible commitment of each hotkey."""
        return earliest_commitments(self.commitment_records())

    def commitment_of(self, hotkey: str) -> CommitmentRecord | None:
        return self.commitments().get(hotkey)

    @abstractmethod
    def set_commitment(self, wallet, data: str) -> None:
        """Write `data` (at most 128 bytes) as the wallet hotkey's commitment."""

    @abstractmethod
    def set_weights(self, wallet, uids: Sequence[int], weights: Sequence[float], version_key: int) -> None:
        """Set the wallet hotkey's weights. Raises `ExtrinsicRejected` when the chain refuses."""

    @abstractmethod
    def serve_axon(self, wallet, axon) -> None:
        """Publish the axon's external ip and port for the wallet's hotkey."""

    def is_registered(self, hotkey: str) -> bool:
        return self.metagraph().uid_of(hotkey) is not None

    def validator_axons(self) -> list[AxonEndpoint]:
        """Axons served by neurons with a validator permit."""
        return [
            n.axon
            for n in self.metagraph().validators()
            if n.axon is not None and n.axon.is_serving
        ]

    @abstractmethod
    def wait_for_block(self, block: int) -> int:
        """Return once the chain has reached `block` (the in-memory chain jumps there)."""

    def close(self) -> None:
        pass


def _check_commitment_size(data: str) -> None:
    size = len(data.encode("utf-8"))
    if size > MAX_COMMITMENT_BYTES:
        raise ExtrinsicRejected(
            f"commitment is {size} bytes; the chain stores at most {MAX_COMMITMENT_BYTES}"
        )


# --------------------------------------------------------------------------------------
# In-memory chain
# --------------------------------------------------------------------------------------


def mock_block_hash(block: int) -> str:
    """Deterministic stand-in for a block hash: sha256 of a fixed label and the number."""
    return "0x" + hashlib.sha256(f"distil-mock-chain/block/{block}".encode()).hexdigest()


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
    """A chain in one process, for `--mock` and tests.

    Blocks advance only when asked (`advance`, `wait_for_block`). Block hashes are a
    deterministic function of the block number. A commitment is stored like the real
    `Commitments.CommitmentOf` map (a new one from the same hotkey replaces the old one,
    with the new block); revealed commitments keep their history.

    Failures are injected per method name with `fail_next("set_weights", "reject")`,
    `"timeout"` raising `TransientChainError` and `"reject"` raising `ExtrinsicRejected`.

    With `path`, the chain is loaded from and saved to a JSON file after each write, so
    separate processes (`neurons/miner.py --mock`, `neurons/validator.py --mock`) share it.
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
        self.weight_sets: list[WeightSet] = []
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.RLock()
        self.path = Path(path) if path else None
        if self.path and self.path.exists():
            self._load(self.path)

    # -- test and scenario controls -------------------------------------------------

    def register(
        self,
        hotkey: str,
        coldkey: str | None = None,
        stake: float = 0.0,
        validator_permit: bool = False,
        uid: int | None = None,
    ) -> int:
        """Register `hotkey`; with `uid`, replace whoever holds that uid (deregistration)."""
        with self._lock:
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
            self._neurons[uid] = _MockNeuron(uid, hotkey, coldkey or hotkey, stake, validator_permit)
            self._save()
            return uid

    def deregister(self, hotkey: str) -> None:
        with self._lock:
            uid = self._uid_of(hotkey)
            if uid is not None:
                del self._neurons[uid]
                self._plain.pop(hotkey, None)
                self._revealed.pop(hotkey, None)
                self._save()

    def advance(self, blocks: int = 1) -> int:
        with self._lock:
            self._block += int(blocks)
            self._save()
            return self._block

    def add_revealed_commitment(self, hotkey: str, data: str, block: int | None = None) -> None:
        """A timelocked commitment that the chain has revealed (`RevealedCommitments`)."""
        with self._lock:
            _check_commitment_size(data)
            rec = CommitmentRecord(hotkey, data, self._block if block is None else int(block), True)
            self._revealed[hotkey].append(rec)
            self._save()

    def put_commitment(self, hotkey: str, data: str, block: int | None = None) -> None:
        """Place a plain commitment as if `hotkey` had written it at `block` (visible from then on)."""
        with self._lock:
            _check_commitment_size(data)
            self._plain[hotkey] = CommitmentRecord(hotkey, data, self._block if block is None else int(block))
            self._save()

    def fail_next(self, method: str, kind: str = "timeout", times: int = 1, message: str = "") -> None:
        if kind not in ("timeout", "reject"):
            raise ValueError("kind must be 'timeout' or 'reject'")
        for _ in range(times):
            self._failures[method].append(_Failure(kind, message or f"injected {kind} in {method}"))

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
        with self._lock:
            self._maybe_fail("block")
            return self._block

    def block_hash(self, block: int) -> str:
        with self._lock:
            self._maybe_fail("block_hash")
            if block < 0 or block > self._block:
                raise ChainError(f"block {block} does not exist yet (current block {self._block})")
            return mock_block_hash(block)

    def metagraph(self) -> MetagraphSnapshot:
        with self._lock:
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
        with self._lock:
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
        with self._lock:
            self._maybe_fail("set_commitment")
            self._require_registered(hotkey)
            _check_commitment_size(data)
            self._plain[hotkey] = CommitmentRecord(hotkey, data, self._block)
            self._save()

    def set_weights(self, wallet, uids, weights, version_key: int) -> None:
        hotkey = wallet.hotkey.ss58_address
        uids, weights = normalize_weights(uids, weights)
        with self._lock:
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
            self.weight_sets.append(WeightSet(self._block, hotkey, tuple(uids), tuple(weights), int(version_key)))
            self._save()

    def serve_axon(self, wallet, axon) -> None:
        hotkey = wallet.hotkey.ss58_address
        with self._lock:
            self._maybe_fail("serve_axon")
            self._require_registered(hotkey)
            uid = self._uid_of(hotkey)
            ip = getattr(axon, "external_ip", None) or "127.0.0.1"
            port = int(getattr(axon, "external_port", None) or axon.port)
            coldkey = self._neurons[uid].coldkey
            self._neurons[uid].axon = asdict(AxonEndpoint(hotkey, coldkey, ip, port))
            self._save()

    def wait_for_block(self, block: int) -> int:
        with self._lock:
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
            "weight_sets": [asdict(w) for w in self.weight_sets],
        }

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ChainError(f"cannot read mock chain state {path}: {e}") from None
        self.netuid = data["netuid"]
        self._block = data["block"]
        self.weights_rate_limit = data.get("weights_rate_limit", self.weights_rate_limit)
        self._neurons = {n["uid"]: _MockNeuron(**n) for n in data["neurons"]}
        self._plain = {r["hotkey"]: CommitmentRecord(**r) for r in data["commitments"]}
        self._revealed = defaultdict(list)
        for r in data.get("revealed", []):
            self._revealed[r["hotkey"]].append(CommitmentRecord(**r))
        self._last_weights_block = dict(data.get("last_weights_block", {}))
        self.weight_sets = [
            WeightSet(w["block"], w["hotkey"], tuple(w["uids"]), tuple(w["weights"]), w["version_key"])
            for w in data.get("weight_sets", [])
        ]

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(self.path)


# --------------------------------------------------------------------------------------
# Real chain (bittensor 10.5)
# --------------------------------------------------------------------------------------


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, ConnectionError, OSError)):
        return True
    name = type(exc).__name__.lower()
    module = type(exc).__module__.lower()
    return "timeout" in name or "connection" in name or "websocket" in module


def _decode_commitment_fields(value: Any) -> str:
    """Decode the first field of a `CommitmentOf` value, replacing bytes that are not UTF-8.

    bittensor's own `decode_metadata` silently drops invalid bytes (errors="ignore"),
    which could turn garbage into a valid-looking commitment; we keep them visible.
    """
    fields = value["info"]["fields"]
    if not fields:
        return ""
    first = fields[0]
    if isinstance(first, str):
        return ""
    if isinstance(first, (list, tuple)):
        first = first[0]
    raw = next(iter(first.values()))
    if isinstance(raw, str):
        data = bytes.fromhex(raw.removeprefix("0x"))
    elif isinstance(raw, (list, tuple)):
        # Some decoders give the bytes as a list of ints, possibly nested one level.
        if raw and isinstance(raw[0], (list, tuple)):
            raw = raw[0]
        data = bytes(raw)
    else:
        data = bytes(raw)
    return data.decode("utf-8", errors="replace")


class BittensorChain(ChainClient):
    """`ChainClient` over bittensor 10.5's synchronous `Subtensor`."""

    def __init__(self, config=None, network: str | None = None, netuid: int = 97, subtensor=None):
        import bittensor as bt

        self.netuid = int(netuid)
        if subtensor is not None:
            self.subtensor = subtensor
        else:
            try:
                if config is not None:
                    self.subtensor = bt.Subtensor(config=config)
                else:
                    self.subtensor = bt.Subtensor(network=network or "finney")
            except Exception as e:  # the SDK raises many types for "cannot connect"
                raise TransientChainError(f"cannot connect to subtensor: {e}") from e
        logger.info(f"connected to subtensor {getattr(self.subtensor, 'chain_endpoint', '?')} (netuid {self.netuid})")

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ChainError:
            raise
        except Exception as e:
            if _is_transient(e):
                raise TransientChainError(f"{what}: {type(e).__name__}: {e}") from e
            raise ChainError(f"{what}: {type(e).__name__}: {e}") from e

    @staticmethod
    def _check(what: str, response) -> None:
        # ExtrinsicResponse is always truthy: only `.success` says whether it worked.
        if not getattr(response, "success", False):
            message = getattr(response, "message", None) or str(response)
            error = getattr(response, "error", None)
            if error is not None and _is_transient(error):
                raise TransientChainError(f"{what} failed: {message}")
            raise ExtrinsicRejected(f"{what} failed: {message}")

    def block(self) -> int:
        return int(self._call("get_current_block", self.subtensor.get_current_block))

    def block_hash(self, block: int) -> str:
        value = self._call("get_block_hash", self.subtensor.get_block_hash, block)
        if not value:
            raise ChainError(f"no hash for block {block}")
        return str(value)

    def metagraph(self) -> MetagraphSnapshot:
        mg = self._call("metagraph", self.subtensor.metagraph, self.netuid, lite=True)
        neurons = []
        for uid, hotkey in enumerate(mg.hotkeys):
            axon = mg.axons[uid] if uid < len(mg.axons) else None
            endpoint = (
                AxonEndpoint(axon.hotkey, axon.coldkey, axon.ip, int(axon.port), int(axon.ip_type), int(axon.version))
                if axon is not None
                else None
            )
            neurons.append(
                Neuron(
                    uid=uid,
                    hotkey=str(hotkey),
                    coldkey=str(mg.coldkeys[uid]),
                    stake=float(mg.S[uid]),
                    validator_permit=bool(mg.validator_permit[uid]),
                    axon=endpoint,
                )
            )
        return MetagraphSnapshot(self.netuid, int(mg.block), tuple(neurons))

    def commitment_records(self) -> list[CommitmentRecord]:
        records: list[CommitmentRecord] = []
        query = self._call(
            "query CommitmentOf",
            self.subtensor.query_map,
            module="Commitments",
            name="CommitmentOf",
            params=[self.netuid],
        )
        for key, value in query:
            hotkey = str(key)
            value = getattr(value, "value", value)
            try:
                data = _decode_commitment_fields(value)
                block = int(value["block"])
            except Exception as e:  # malformed on-chain data: skip it, say so
                logger.warning(f"undecodable commitment of {hotkey}: {e}")
                continue
            records.append(CommitmentRecord(hotkey, data, block))
        revealed = self._call(
            "get_all_revealed_commitments", self.subtensor.get_all_revealed_commitments, self.netuid
        )
        for hotkey, pairs in (revealed or {}).items():
            for block, data in pairs:
                records.append(CommitmentRecord(str(hotkey), str(data), int(block), True))
        return sorted(records, key=lambda r: (r.block, r.hotkey))

    def set_commitment(self, wallet, data: str) -> None:
        _check_commitment_size(data)
        response = self._call(
            "set_commitment", self.subtensor.set_commitment, wallet=wallet, netuid=self.netuid, data=data
        )
        self._check("set_commitment", response)

    def set_weights(self, wallet, uids, weights, version_key: int) -> None:
        uids, weights = normalize_weights(uids, weights)
        self._check_weights_rate_limit(wallet)
        response = self._call(
            "set_weights",
            self.subtensor.set_weights,
            wallet=wallet,
            netuid=self.netuid,
            uids=uids,
            weights=weights,
            version_key=int(version_key),
        )
        self._check("set_weights", response)

    def _check_weights_rate_limit(self, wallet) -> None:
        """Refuse early when the chain would: the SDK only says "perhaps it is too soon"."""
        try:
            uid = self.subtensor.get_uid_for_hotkey_on_subnet(wallet.hotkey.ss58_address, self.netuid)
            if uid is None:
                return  # the extrinsic answers with the clear "not registered" message
            since = self.subtensor.blocks_since_last_update(self.netuid, uid)
            limit = self.subtensor.weights_rate_limit(self.netuid)
        except Exception as e:  # the probe is an optimisation: never fail the write because of it
            logger.debug(f"weights rate limit probe failed: {e}")
            return
        if since is not None and limit is not None and int(since) <= int(limit):
            raise WeightsRateLimited(
                f"weights were set {since} blocks ago; the subnet allows one set per {limit} blocks"
            )

    def serve_axon(self, wallet, axon) -> None:
        response = self._call("serve_axon", self.subtensor.serve_axon, netuid=self.netuid, axon=axon)
        self._check("serve_axon", response)

    def is_registered(self, hotkey: str) -> bool:
        return bool(
            self._call(
                "is_hotkey_registered", self.subtensor.is_hotkey_registered, hotkey, netuid=self.netuid
            )
        )

    def wait_for_block(self, block: int) -> int:
        while True:
            current = self.block()
            if current >= block:
                return current
            time.sleep(min(BLOCK_TIME_S, max(1.0, (block - current) * BLOCK_TIME_S / 2)))

    def close(self) -> None:
        close = getattr(self.subtensor, "close", None)
        if close:
            try:
                close()
            except Exception:
                pass
