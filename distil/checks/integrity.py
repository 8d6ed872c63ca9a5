"""Integrity: does a scored model's pinned revision still resolve publicly?

Run on the king and on every model about to be scored. The content at a commit sha cannot
change, so resolving the revision publicly is the whole check: gone, private, gated or
disabled ⇒ REMOVED; 429, 5xx, timeouts or anything unexpected ⇒ TRANSIENT (try later; a
hub hiccup never removes a model).
"""

from __future__ import annotations

from dataclasses import dataclass

from distil.commitment import Commitment
from distil.hub.store import HubError, HubTransientError, ModelStore, RepoUnavailable

OK = "OK"
REMOVED = "REMOVED"
TRANSIENT = "TRANSIENT"


@dataclass(frozen=True)
class IntegrityResult:
    status: str  # OK, REMOVED or TRANSIENT
    detail: str

    @property
    def ok(self) -> bool:
        return self.status == OK


def check_integrity(store: ModelStore, commitment: Commitment) -> IntegrityResult:
    try:
        meta = store.probe(commitment)
    except RepoUnavailable as e:
        return IntegrityResult(REMOVED, f"{commitment}: {e} ({e.kind})")
    except HubTransientError as e:
        return IntegrityResult(TRANSIENT, f"{commitment}: {e}")
    except HubError as e:
        return IntegrityResult(TRANSIENT, f"{commitment}: unexpected hub answer: {e}")
    except Exception as e:  # a store bug must not remove a model
        return IntegrityResult(TRANSIENT, f"{commitment}: {type(e).__name__}: {e}")
    problem = meta.visibility_problem()
    if problem is not None:
        return IntegrityResult(REMOVED, f"{commitment}: {problem}")
    return IntegrityResult(OK, f"{commitment} resolves publicly")
