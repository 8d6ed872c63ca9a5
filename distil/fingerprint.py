"""A scored model's functional fingerprint (scoring spec v3): the value, its inputs, its JSON form.

Content hashes catch re-uploaded weights, not a model that computes the same function with
other bits: swapped experts (and router rows), permuted MLP neurons, a norm scaled up and the
next weights scaled down, an fp16 round trip, noise far below what changes a score. Such a
copy of an earlier model would be scored as new. So every scored model leaves a
fingerprint: its log-probability of the teacher's own greedy token at each position of a
fixed set of fingerprint inputs (`FINGERPRINT_PROMPTS` prompts, `FINGERPRINT_TOKENS` teacher
tokens each: 256 numbers), computed once when the model is scored
(`distil.eval.fingerprint.compute_fingerprint`) and compared with every earlier one
(`distil.scoring.fingerprints`).

This module holds what both sides and the state schema share (it sits below all of them):

* `FingerprintInputs`: the token ids, chosen once per validator, and their digest;
* `Fingerprint`: the values, stored as float16 (base64, 684 characters for 256 values), with
  what they depend on: the fingerprint version, the inputs' digest, the device kind and the
  compute dtype (`comparison_key`), and the library versions (recorded for audit);
* `parse_fingerprint` / `Fingerprint.to_dict`, `parse_fingerprint_inputs` /
  `FingerprintInputs.to_dict`: the one strict parse and format of each (JSON, never pickle);
* pydantic schemas for `distil/state_schema.py`.

Numbers depend on the hardware and the dtype: two fingerprints are compared only when their
`comparison_key`s are equal, which in practice means a validator compares only fingerprints
it computed itself, on the same kind of device.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from distil.commitment import parse_commitment

FINGERPRINT_VERSION = 1
FINGERPRINT_PROMPTS = 8  # prompts of the fingerprint inputs
FINGERPRINT_TOKENS = 32  # teacher tokens generated per prompt: 8 × 32 = 256 positions
FINGERPRINT_PROMPT_TOKENS = 128  # a fingerprint prompt is cut to this many ids
MIN_POSITIONS = 64  # fewer positions (a teacher that stopped early everywhere) is too little to compare
MAX_POSITIONS = 4096
MAX_INPUT_TOKENS = 65_536  # all prompt + continuation ids of the inputs together
# A log-probability is stored as at least this (float16 holds it; e^-100 is impossible enough).
MIN_LOGPROB = -100.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FingerprintError(ValueError):
    """A fingerprint or fingerprint inputs that do not parse; the message names the field."""


def _id_lists(value: Any, what: str, max_len: int) -> list[list[int]]:
    if not isinstance(value, list) or not value or len(value) > 1024:
        raise FingerprintError(f"{what} must be a non-empty list of token-id lists")
    out = []
    for i, ids in enumerate(value):
        if not isinstance(ids, list) or not ids or len(ids) > max_len:
            raise FingerprintError(f"{what}[{i}] must be a list of 1 to {max_len} token ids")
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 2**31:
                raise FingerprintError(f"{what}[{i}] holds {t!r:.40}, not a token id")
        out.append(list(ids))
    return out


@dataclass(frozen=True)
class FingerprintInputs:
    """The fixed fingerprint inputs of one validator: prompts and the teacher's greedy
    continuations of them (token ids). A model's fingerprint is read at every continuation
    position: the model reads prompt + continuation[:-1] and is asked for each continuation
    token, as in scoring."""

    prompt_ids: tuple[tuple[int, ...], ...]
    continuation_ids: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        if len(self.prompt_ids) != len(self.continuation_ids):
            raise FingerprintError(f"{len(self.prompt_ids)} fingerprint prompts but {len(self.continuation_ids)} continuations")
        if not MIN_POSITIONS <= self.n_positions <= MAX_POSITIONS:
            raise FingerprintError(f"fingerprint inputs have {self.n_positions} positions; "
                                   f"{MIN_POSITIONS} to {MAX_POSITIONS} are needed")
        if sum(map(len, self.prompt_ids)) + self.n_positions > MAX_INPUT_TOKENS:
            raise FingerprintError(f"fingerprint inputs hold more than {MAX_INPUT_TOKENS} token ids")

    @classmethod
    def of(cls, prompt_ids, continuation_ids) -> "FingerprintInputs":
        return cls(tuple(tuple(int(t) for t in p) for p in prompt_ids),
                   tuple(tuple(int(t) for t in c) for c in continuation_ids))

    @property
    def n_positions(self) -> int:
        return sum(map(len, self.continuation_ids))

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of the ids: what a fingerprint says it was read on."""
        canonical = json.dumps([[list(p) for p in self.prompt_ids], [list(c) for c in self.continuation_ids]],
                               separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"version": FINGERPRINT_VERSION, "prompt_ids": [list(p) for p in self.prompt_ids],
                "continuation_ids": [list(c) for c in self.continuation_ids], "sha256": self.digest}


def parse_fingerprint_inputs(data: Any) -> FingerprintInputs:
    """The inputs of `FingerprintInputs.to_dict()`; FingerprintError names what is wrong."""
    if not isinstance(data, dict) or set(data) != {"version", "prompt_ids", "continuation_ids", "sha256"}:
        raise FingerprintError("fingerprint inputs must be an object with exactly version, prompt_ids, "
                               "continuation_ids and sha256")
    if data["version"] != FINGERPRINT_VERSION or isinstance(data["version"], bool):
        raise FingerprintError(f"fingerprint inputs version {data['version']!r:.20}; this code reads {FINGERPRINT_VERSION}")
    inputs = FingerprintInputs.of(_id_lists(data["prompt_ids"], "prompt_ids", MAX_INPUT_TOKENS),
                                  _id_lists(data["continuation_ids"], "continuation_ids", MAX_POSITIONS))
    if data["sha256"] != inputs.digest:
        raise FingerprintError("fingerprint inputs sha256 does not match their token ids")
    return inputs


def encode_logprobs(values) -> str:
    """float16 little-endian bytes of `values`, base64 (standard alphabet, padded). Values are
    clamped to [MIN_LOGPROB, 0] first; NaN is refused (a model that produces it is broken)."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or np.isnan(array).any():
        raise FingerprintError("log-probabilities must be a flat sequence of numbers, none NaN")
    return base64.b64encode(np.clip(array, MIN_LOGPROB, 0.0).astype("<f2").tobytes()).decode("ascii")


def decode_logprobs(text: Any) -> np.ndarray:
    """The float64 values of `encode_logprobs` output; FingerprintError when it is not that."""
    if not isinstance(text, str) or len(text) > 4 * MAX_POSITIONS:
        raise FingerprintError("logprobs must be a base64 string of float16 values")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise FingerprintError("logprobs is not valid base64") from None
    if len(raw) % 2:
        raise FingerprintError("logprobs holds an odd number of bytes, not float16 values")
    values = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    if not (np.isfinite(values).all() and (values <= 0.0).all() and (values >= MIN_LOGPROB).all()):
        raise FingerprintError(f"logprobs holds a value outside [{MIN_LOGPROB}, 0]")
    return values


@dataclass(frozen=True)
class Fingerprint:
    """A model's log-probabilities of the teacher's tokens at the inputs' positions (float16,
    base64 in `logprobs`), with what they depend on. Immutable; `values()` decodes them."""

    inputs: str  # FingerprintInputs.digest
    device: str  # "cpu", or the CUDA device name ("NVIDIA H200")
    dtype: str  # the compute dtype ("bfloat16")
    logprobs: str
    n: int
    torch: str = ""
    transformers: str = ""
    version: int = FINGERPRINT_VERSION

    @classmethod
    def of(cls, values, inputs: str, device: str, dtype: str, torch: str = "", transformers: str = "") -> "Fingerprint":
        encoded = encode_logprobs(values)
        return cls(inputs, device, dtype, encoded, len(np.asarray(values).reshape(-1)), torch, transformers)

    @property
    def comparison_key(self) -> tuple:
        """Two fingerprints are compared only when these are equal: the same fingerprint version
        and inputs, on the same kind of device, in the same dtype. Library versions are not part
        of it: what they change is rounding, which can only make a copy look less alike, never
        make two different models look like one, so comparing across an upgrade risks a missed
        copy, not a false COPY (and an upgrade does not wipe the history a thief would wait for)."""
        return (self.version, self.inputs, self.device, self.dtype)

    @property
    def reference_key(self) -> tuple:
        """What a reference (the teacher's fingerprint) must share with the fingerprints it is
        the centre for: version, inputs, device kind. Not the dtype: the teacher is fingerprinted
        in its own dtype (a 35B model is not upcast), the students in float32."""
        return (self.version, self.inputs, self.device)

    def values(self) -> np.ndarray:
        return decode_logprobs(self.logprobs)

    def to_dict(self) -> dict:
        return {"version": self.version, "inputs": self.inputs, "device": self.device, "dtype": self.dtype,
                "torch": self.torch, "transformers": self.transformers, "n": self.n, "logprobs": self.logprobs}


_FIELDS = {"version", "inputs", "device", "dtype", "torch", "transformers", "n", "logprobs"}


def parse_fingerprint(data: Any) -> Fingerprint:
    """The fingerprint of `Fingerprint.to_dict()`; FingerprintError names the first bad field."""
    if not isinstance(data, dict) or set(data) != _FIELDS:
        raise FingerprintError(f"a fingerprint is an object with exactly the keys {sorted(_FIELDS)}")
    if data["version"] != FINGERPRINT_VERSION or isinstance(data["version"], bool):
        raise FingerprintError(f"fingerprint version {data['version']!r:.20}; this code reads {FINGERPRINT_VERSION}")
    if not isinstance(data["inputs"], str) or not _SHA256.match(data["inputs"]):
        raise FingerprintError("fingerprint inputs must be a lower-case sha256 hex digest")
    for key in ("device", "dtype", "torch", "transformers"):
        if not isinstance(data[key], str) or len(data[key]) > 128 or not data[key].isprintable():
            raise FingerprintError(f"fingerprint {key} must be a printable string of at most 128 characters")
    if not data["device"] or not data["dtype"]:
        raise FingerprintError("fingerprint device and dtype must not be empty")
    n = data["n"]
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_POSITIONS <= n <= MAX_POSITIONS:
        raise FingerprintError(f"fingerprint n must be an integer from {MIN_POSITIONS} to {MAX_POSITIONS}")
    values = decode_logprobs(data["logprobs"])
    if values.size != n:
        raise FingerprintError(f"fingerprint logprobs holds {values.size} values, n says {n}")
    return Fingerprint(data["inputs"], data["device"], data["dtype"], data["logprobs"], n, data["torch"],
                       data["transformers"], data["version"])


# ---- schemas for distil/state_schema.py (strict: nothing coerced, unknown keys refused) ----

_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class FingerprintSchema(BaseModel):
    """A `Fingerprint.to_dict()` in state; the whole record is checked by `parse_fingerprint`."""

    model_config = _STRICT

    version: int
    inputs: str
    device: str
    dtype: str
    torch: str
    transformers: str
    n: int
    logprobs: str

    @model_validator(mode="after")
    def _parses(self) -> "FingerprintSchema":
        parse_fingerprint(self.model_dump())
        return self


class FingerprintInputsSchema(BaseModel):
    """A `FingerprintInputs.to_dict()` in state, checked by `parse_fingerprint_inputs`."""

    model_config = _STRICT

    version: int
    prompt_ids: list[list[int]]
    continuation_ids: list[list[int]]
    sha256: str

    @model_validator(mode="after")
    def _parses(self) -> "FingerprintInputsSchema":
        parse_fingerprint_inputs(self.model_dump())
        return self


class FingerprintOwnerSchema(BaseModel):
    """One scored commitment's fingerprint, kept after its miner record is gone (a thief could
    wait for the original to deregister): who committed what, when, and the fingerprint."""

    model_config = _STRICT

    hotkey: str = Field(min_length=1)
    commitment: str
    commit_block: int = Field(ge=0)
    block_hash: str | None = Field(default=None, max_length=130)  # the commit block's hash: the same-block draw
    fingerprint: FingerprintSchema

    @model_validator(mode="after")
    def _commitment_parses(self) -> "FingerprintOwnerSchema":
        parse_commitment(self.commitment)  # CommitmentError is a ValueError: pydantic reports it
        return self
