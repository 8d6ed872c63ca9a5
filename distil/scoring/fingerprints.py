"""Is a new model a functional copy of an earlier one? (scoring spec v3), pure: fingerprints in, matches out.

A fingerprint (`distil.fingerprint`) holds a model's log-probabilities a_j of the teacher's
own tokens at N fixed positions; the teacher's fingerprint t on the same positions is the
reference. Two models a and b are compared by how far apart they are relative to how far
each is from the teacher:

    distance(a, b) = rms(a − b) / max(min(rms(a − t), rms(b − t)), DISTANCE_FLOOR)

A functional copy (experts or neurons permuted, a norm scaled and the next weights
unscaled, an fp16 round trip, noise far below what changes a score) computes the same
function up to rounding: its distance to the original is rounding over a distance to the
teacher. Two models made independently differ from each other about as much as each
differs from the teacher (distance near √2 when their errors are unrelated, lower as they
share them). A copy is a distance below `COPY_DISTANCE`, chosen by measurement
(`python -m distil.bench fingerprint`, docs/performance.md). Scale-free: it does not
depend on how good the models are, only on how alike they are for their quality.

Only fingerprints with the same `comparison_key` (fingerprint version, inputs, device kind,
dtype) are compared; the reference must share their inputs and device kind (`reference_key`;
the teacher is fingerprinted in its own dtype, students in float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from distil.fingerprint import Fingerprint

# Measured with `python -m distil.bench fingerprint` (docs/performance.md, "Functional copies"),
# students fingerprinted in float32: every copy made by the transformations above was at most
# 0.09 from its original; the closest honest pair, two students distilled from the same start
# with different data orders, 0.34; independently made students of equal KL 1.25 or more.
# 0.15 leaves a factor 1.7 over the copies and 2.2 under the closest honest pair: a missed copy
# is only scored like any model (the dethrone rule still judges it), a false COPY is final.
COPY_DISTANCE = 0.15
# rms distances (nats) below this are rounding of the float16 storage, not a difference of models.
DISTANCE_FLOOR = 1e-2


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def comparable(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether two fingerprints may be compared at all (same version, inputs, device kind, dtype)."""
    return a.comparison_key == b.comparison_key


def fingerprint_distance(a: Fingerprint, b: Fingerprint, reference: Fingerprint) -> float:
    """distance(a, b) of the module docstring. Raises ValueError when a and b are not comparable,
    or the reference is not of their inputs and device kind."""
    if not comparable(a, b):
        raise ValueError(f"fingerprints from different settings are never compared: {a.comparison_key}, "
                         f"{b.comparison_key}")
    _check_reference(a, reference)
    va, vb, vt = a.values(), b.values(), reference.values()
    scale = max(min(_rms(va - vt), _rms(vb - vt)), DISTANCE_FLOOR)
    return _rms(va - vb) / scale


def _check_reference(fingerprint: Fingerprint, reference: Fingerprint) -> None:
    if fingerprint.reference_key != reference.reference_key:
        raise ValueError(f"the reference fingerprint {reference.reference_key} is not of the inputs and device kind "
                         f"of {fingerprint.reference_key}: recompute it with the teacher before comparing")


@dataclass(frozen=True)
class CopyMatch:
    """An earlier fingerprint that a new one copies: its owner (the caller's key) and the distance."""

    owner: str
    distance: float


def copies_of(new: Fingerprint, earlier: Iterable[tuple[str, Fingerprint]], reference: Fingerprint,
              threshold: float = COPY_DISTANCE) -> list[CopyMatch]:
    """Every earlier fingerprint that `new` copies (distance < threshold), in the order given.

    `earlier` is (owner, fingerprint) of every model scored before, in the caller's order of
    ownership (commit block, then the one tie rule for copies): the first match is the
    original, the model `new` is a COPY of. Fingerprints that are not comparable with `new`
    (another device kind or dtype, older inputs or version) are skipped: they could only miss a
    copy, never invent one. The reference must share `new`'s inputs and device kind (ValueError
    otherwise: recompute it with the teacher on this device before comparing).
    """
    _check_reference(new, reference)
    if not threshold > 0:
        raise ValueError(f"the copy threshold must be > 0, got {threshold!r}")
    matches = []
    for owner, fingerprint in earlier:
        if comparable(new, fingerprint):
            distance = fingerprint_distance(new, fingerprint, reference)
            if distance < threshold:
                matches.append(CopyMatch(owner, distance))
    return matches
