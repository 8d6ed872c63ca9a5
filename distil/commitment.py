"""The on-chain commitment: which model, at which pinned revision.

One value type, one parser, one formatter. The canonical form is
``namespace/name@<40 lower-case hex>`` (at most 128 bytes, the chain's commitment limit).
The parser also accepts the form the live subnet (netuid 97) already stores, a JSON
object with exactly the keys ``model`` and ``revision``, so its miners keep their
standing. Nothing else in a commitment is read: an extra JSON field was once used on the
live subnet to spoof a queue position.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_COMMITMENT_BYTES = 128

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
REPO_RE = re.compile(rf"^{_NAME}/{_NAME}$")
REVISION_RE = re.compile(r"^[0-9a-f]{40}$")
COMMITMENT_RE = re.compile(rf"^({_NAME}/{_NAME})@([0-9a-f]{{40}})$")
_JSON_KEYS = frozenset({"model", "revision"})


class CommitmentError(ValueError):
    """A commitment string that is not a valid ``repo@revision``; the message says why."""


def validate_repo(repo: str) -> str:
    """Return ``repo`` if it is a valid ``namespace/name``; raise CommitmentError otherwise."""
    if not isinstance(repo, str):
        raise CommitmentError(f"model repo must be a string, got {type(repo).__name__}")
    if repo != repo.strip() or any(c.isspace() for c in repo):
        raise CommitmentError(f"model repo {repo!r} contains whitespace")
    if repo.count("/") != 1:
        raise CommitmentError(
            f"model repo {repo!r} must be exactly 'namespace/name' (one '/')"
        )
    if not REPO_RE.match(repo):
        raise CommitmentError(
            f"model repo {repo!r} is not a valid Hugging Face repo id: each part starts "
            "with a letter or digit, then up to 95 of letters, digits, '.', '_' or '-'"
        )
    # huggingface_hub refuses these, so such a repo can never be downloaded.
    if "--" in repo or ".." in repo:
        raise CommitmentError(f"model repo {repo!r} contains '--' or '..', which the hub forbids")
    if repo.endswith(".git"):
        raise CommitmentError(f"model repo {repo!r} ends with '.git', which the hub forbids")
    return repo


def validate_revision(revision: str) -> str:
    """Return ``revision`` if it is a full 40-character lower-case commit sha."""
    if not isinstance(revision, str):
        raise CommitmentError(f"revision must be a string, got {type(revision).__name__}")
    if any(c.isspace() for c in revision):
        raise CommitmentError(f"revision {revision!r} contains whitespace")
    if REVISION_RE.match(revision):
        return revision
    if re.fullmatch(r"[0-9a-fA-F]{40}", revision):
        raise CommitmentError(
            f"revision {revision!r} has upper-case hex; use the lower-case commit sha"
        )
    if re.fullmatch(r"[0-9a-fA-F]+", revision):
        raise CommitmentError(
            f"revision {revision!r} is {len(revision)} hex characters; a full 40-character "
            "commit sha is required (branch names and short shas can move)"
        )
    raise CommitmentError(
        f"revision {revision!r} is not a commit sha: 40 lower-case hex characters required "
        "(branch and tag names are refused because they can move)"
    )


@dataclass(frozen=True, order=True)
class Commitment:
    """A model pinned at a commit: ``repo`` is ``namespace/name``, ``revision`` a 40-hex sha."""

    repo: str
    revision: str

    def __post_init__(self) -> None:
        validate_repo(self.repo)
        validate_revision(self.revision)
        if len(str(self).encode()) > MAX_COMMITMENT_BYTES:
            raise CommitmentError(
                f"commitment {str(self)!r} is {len(str(self).encode())} bytes; "
                f"the chain stores at most {MAX_COMMITMENT_BYTES}"
            )

    def __str__(self) -> str:
        return format_commitment(self)

    @classmethod
    def parse(cls, text: str) -> "Commitment":
        return parse_commitment(text)


def format_commitment(commitment: Commitment) -> str:
    """The canonical on-chain string: ``namespace/name@revision``."""
    return f"{commitment.repo}@{commitment.revision}"


def parse_commitment(text: str | bytes) -> Commitment:
    """Parse a commitment as read from the chain, strictly.

    Accepts ``namespace/name@<40 hex>`` or ``{"model": "namespace/name", "revision":
    "<40 hex>"}``. Raises CommitmentError naming the problem for anything else:
    whitespace, extra JSON keys, upper-case hex, short shas, oversize input, bad bytes.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_COMMITMENT_BYTES:
            raise CommitmentError(
                f"commitment is {len(text)} bytes; at most {MAX_COMMITMENT_BYTES} allowed"
            )
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CommitmentError(f"commitment is not valid UTF-8: {e}") from None
    if not isinstance(text, str):
        raise CommitmentError(f"commitment must be a string, got {type(text).__name__}")
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_COMMITMENT_BYTES:
        raise CommitmentError(
            f"commitment is {size} bytes; at most {MAX_COMMITMENT_BYTES} allowed"
        )
    if not text:
        raise CommitmentError("commitment is empty")
    if not text.isascii():
        raise CommitmentError(f"commitment {text!r} contains non-ASCII characters")
    if text != text.strip():
        raise CommitmentError(f"commitment {text!r} has leading or trailing whitespace")
    if any(not (c.isprintable() or c.isspace()) for c in text):
        raise CommitmentError(f"commitment {text!r} contains control characters")
    if text.startswith("{"):
        # The live subnet writes json.dumps(...), with a space after ':' and ','; that
        # whitespace between tokens is allowed, whitespace inside the values is not.
        return _parse_json(text)
    if any(c.isspace() for c in text):
        raise CommitmentError(f"commitment {text!r} contains whitespace")
    if text.count("@") != 1:
        raise CommitmentError(
            f"commitment {text!r} must be 'namespace/name@revision' with exactly one '@'"
        )
    repo, revision = text.split("@")
    commitment = Commitment(validate_repo(repo), validate_revision(revision))
    assert COMMITMENT_RE.match(text)
    return commitment


def _parse_json(text: str) -> Commitment:
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise CommitmentError(f"commitment JSON repeats a key: {keys}")
        return dict(pairs)

    try:
        value = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise CommitmentError(f"commitment looks like JSON but does not parse: {e.msg}") from None
    if not isinstance(value, dict):
        raise CommitmentError("commitment JSON must be an object")
    keys = set(value)
    if keys != _JSON_KEYS:
        extra = sorted(keys - _JSON_KEYS)
        missing = sorted(_JSON_KEYS - keys)
        parts = []
        if extra:
            parts.append(f"unexpected key(s) {extra}")
        if missing:
            parts.append(f"missing key(s) {missing}")
        raise CommitmentError(
            "commitment JSON must have exactly the keys 'model' and 'revision': "
            + "; ".join(parts)
        )
    return Commitment(validate_repo(value["model"]), validate_revision(value["revision"]))
