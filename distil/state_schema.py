"""The one declared shape of `state.json` (pydantic v2): types, ranges and the king invariants.

`validate_state(data)` is called on every load (and before every save, so the validator
never writes a state it would refuse to read). Nothing is coerced or repaired: a string
where a block number belongs, a NaN KL, a garbage commitment, or a king that is not the
one miner with status `king` is an error naming the field, e.g.::

    last_epoch_block: Input should be a valid integer (got '200')
    miners.5F…abc.kl.mean: Input should be a finite number (got nan)

A state that fails here is left as it is on disk; `distil-state check` lists every
problem, and backups (`state.json.1` …) hold earlier states.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distil import SCORING_VERSION
from distil.commitment import CommitmentError, parse_commitment
from distil.fingerprint import FingerprintInputsSchema, FingerprintOwnerSchema

@dataclass(frozen=True)
class Contender:
    """The state's record of the model under confirmation (`state.contender`, as `to_dict()`).

    hotkey / commit_block: the contender's commitment (one per hotkey: a new commit block is
    another model); king / king_commit_block: the king it beat in the first stage (the
    record is void once another king reigns); seed_block: the round of that win (the
    confirmation must be on a later round's prompts); kl, king_kl, p_value: that round's
    evidence, for people (the confirmation does not read them).
    """

    hotkey: str
    commit_block: int
    king: str
    king_commit_block: int
    seed_block: int
    kl: float
    king_kl: float
    p_value: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "Contender":
        """The record from state JSON; ValueError naming the field that is missing or wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"contender must be an object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"contender has unknown fields {unknown}")
        values = {}
        for f in fields(cls):
            if f.name not in data:
                raise ValueError(f"contender has no {f.name}")
            v = data[f.name]
            if f.type == "str":
                ok = isinstance(v, str) and v != ""
            elif f.type == "int":
                ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
            else:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                v = float(v) if ok else v
            if not ok:
                raise ValueError(f"contender {f.name} is {v!r}: expected a {'non-empty string' if f.type == 'str' else 'number ≥ 0'}")
            values[f.name] = v
        if values["hotkey"] == values["king"]:
            raise ValueError("contender and the king it beat are the same hotkey")
        return cls(**values)


Block = Annotated[int, Field(ge=0)]  # block numbers, uids, counts: integers, never negative
BlockHash = Annotated[str, Field(pattern=r"^0x[0-9a-f]{64}$")]  # a block's hash as the chain gives it
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class KLSchema(BaseModel):
    """A model's KL summary from the round that last scored it."""

    model_config = STRICT

    mean: float = Field(ge=0)
    se: float = Field(ge=0)
    median: float = Field(ge=0)
    p99: float = Field(ge=0)
    top1: float = Field(ge=0, le=1)
    seed_block: Block | None = None


class MinerSchema(BaseModel):
    model_config = STRICT

    uid: Block
    commitment: str
    commit_block: Block
    status: Literal["king", "evaluated", "pending", "disqualified"] = "pending"
    reason: Literal["COPY", "REMOVED", "INVALID", "KL_TOO_HIGH"] | None = None
    code: str | None = None
    detail: str | None = None
    kl: KLSchema | None = None
    content_hash: str | None = None
    files_hash: str | None = None
    params: Block | None = None
    checked: bool = False
    seen_public: bool = False
    first_seen_block: Block | None = None
    strikes: Block = 0
    last_check_block: Block | None = None
    coldkey: str | None = None
    eval_strikes: Block = 0
    commit_block_hash: BlockHash | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "MinerSchema":
        if (self.status == "disqualified") != (self.reason is not None):
            raise ValueError(
                f"status {self.status!r} with reason {self.reason!r}: a disqualified miner needs a reason, "
                "and only a disqualified miner has one"
            )
        if self.status != "disqualified":
            # a malformed commitment is only ever stored on a disqualified record (COMMITMENT_FORMAT)
            try:
                parse_commitment(self.commitment)
            except CommitmentError as e:
                raise ValueError(f"commitment {self.commitment[:80]!r} does not parse: {e}") from None
        return self


class HashOwnerSchema(BaseModel):
    model_config = STRICT

    hotkey: str
    commit_block: Block
    commitment: str
    block_hash: BlockHash | None = None  # the commit block's hash: the same-block draw (spec v3)


class LastRoundSchema(BaseModel):
    """The last round's summary; informational keys beyond these are kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)

    seed_block: Block | None = None
    seed: str | None = None
    models: list[str] = []


class StateSchema(BaseModel):
    model_config = STRICT

    version: int = Field(ge=1)
    scoring_version: int = Field(default=SCORING_VERSION, ge=1)
    king: str | None = None
    last_epoch_block: Block | None = None
    miners: dict[str, MinerSchema] = {}
    hash_owners: dict[str, HashOwnerSchema] = {}
    last_round: LastRoundSchema | None = None
    legacy_king: str | None = None
    checks_version: int = Field(default=1, ge=1)
    contender: dict | None = None  # spec v3's model under confirmation (Contender)
    owner_rule_block: Block | None = None
    fingerprint_inputs: FingerprintInputsSchema | None = None  # spec v3 (distil/fingerprint.py)
    fingerprints: dict[str, FingerprintOwnerSchema] = {}

    @field_validator("fingerprints")
    @classmethod
    def _fingerprints_by_commitment(cls, fingerprints: dict) -> dict:
        for key, owner in fingerprints.items():
            if owner.commitment != key:
                raise ValueError(f"fingerprint {key[:80]!r} is keyed by another commitment than its own "
                                 f"({owner.commitment[:80]!r})")
        return fingerprints

    @field_validator("contender")
    @classmethod
    def _contender(cls, contender: dict | None) -> dict | None:
        if contender is not None:
            Contender.from_dict(contender)  # ValueError naming the field
        return contender

    @field_validator("miners")
    @classmethod
    def _hotkeys(cls, miners: dict[str, MinerSchema]) -> dict[str, MinerSchema]:
        for hotkey in miners:
            if not hotkey.strip():
                raise ValueError("a miner's hotkey is empty")
        return miners

    @model_validator(mode="after")
    def _king_invariants(self) -> "StateSchema":
        crowned = sorted(hk for hk, m in self.miners.items() if m.status == "king")
        if self.king is None:
            if crowned:
                raise ValueError(f"king is null but miner(s) {crowned} have status 'king'")
            return self._legacy_king_valid()
        record = self.miners.get(self.king)
        if record is None:
            raise ValueError(f"king {self.king} has no miner record")
        if record.status != "king":
            raise ValueError(f"king {self.king} has status {record.status!r}, not 'king'")
        if crowned != [self.king]:
            raise ValueError(f"king is {self.king} but miners {crowned} have status 'king'")
        return self._legacy_king_valid()

    def _legacy_king_valid(self) -> "StateSchema":
        if self.legacy_king is not None and self.legacy_king not in self.miners:
            raise ValueError(f"legacy_king {self.legacy_king} has no miner record")
        return self


def _where(loc: tuple) -> str:
    # pydantic puts the failing model-validator's name in `loc` only for unions; keep the path
    return ".".join(str(part) for part in loc) or "(whole state)"


def problems(data: Any) -> list[str]:
    """Every problem of `data` as a state, one line each (empty: the state is valid)."""
    try:
        StateSchema.model_validate(data)
    except ValidationError as e:
        out = []
        for error in e.errors(include_url=False):
            message = error["msg"].removeprefix("Value error, ")
            got = error.get("input")
            shown = "" if error["type"] in ("value_error", "missing") or isinstance(got, (dict, list)) else f" (got {got!r:.80})"
            out.append(f"{_where(error['loc'])}: {message}{shown}")
        return out
    return []


def validate_state(data: Any) -> None:
    """Raise ValueError with one line naming the first bad field (and how many more there are)."""
    found = problems(data)
    if found:
        more = f" (and {len(found) - 1} more problem(s); `distil-state check` lists them)" if len(found) > 1 else ""
        raise ValueError(found[0] + more)
