"""The chain, behind one small interface.

`ChainClient` is everything the neurons need from a Bittensor chain: the current block
and block hashes, a metagraph snapshot, the commitments with the block each was made at,
writing a commitment, setting weights, serving an axon and finding validators' axons.

Two implementations:

* `BittensorChain` (here) talks to a real subtensor through bittensor 10.5's `Subtensor`.
  Every write returns an `ExtrinsicResponse`, which is always truthy: we check `.success`
  and raise instead.
* `InMemoryChain` (`template.mock_chain`) is the chain for `--mock` and tests (the SDK's
  `MockSubtensor` is broken in 9.x and 10.x).

Errors are split in two: `TransientChainError` (timeouts, lost connections: retry later)
and `ChainError` / `ExtrinsicRejected` (the chain said no).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
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
    def coldkeys(self) -> list[str]:
        """The owning coldkey of each uid, like the real metagraph's `coldkeys`."""
        return [n.coldkey for n in self.neurons]

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


def check_commitment_size(data: str) -> None:
    """Refuse what the chain would: a commitment over 128 bytes of UTF-8."""
    size = len(data.encode("utf-8"))
    if size > MAX_COMMITMENT_BYTES:
        raise ExtrinsicRejected(
            f"commitment is {size} bytes; the chain stores at most {MAX_COMMITMENT_BYTES}"
        )


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


def _where(config, network: str | None) -> str:
    """The network and endpoint a Subtensor would dial (`--subtensor.network` / `.chain_endpoint`), for errors."""
    try:
        import bittensor as bt

        if config is not None:
            endpoint, name = bt.Subtensor.setup_config(network, config)
        else:
            name, endpoint = bt.utils.determine_chain_endpoint_and_network(network or "finney")
        return f"network {name!r} at {endpoint}"
    except Exception:  # only an error message depends on it
        return repr(network or getattr(getattr(config, "subtensor", None), "network", None))


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
                raise TransientChainError(f"cannot connect to subtensor {_where(config, network)}: "
                                          f"{type(e).__name__}: {e}") from e
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
        check_commitment_size(data)
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
