"""The commitment value type: one parser, one formatter, strict rejection with reasons."""

import json
import re
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from distil.commitment import (
    COMMITMENT_RE,
    MAX_COMMITMENT_BYTES,
    Commitment,
    CommitmentError,
    parse_commitment,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
NAME_START = string.ascii_letters + string.digits
NAME_REST = NAME_START + "._-"

names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(NAME_START),
    st.text(alphabet=NAME_REST, max_size=40),
).filter(lambda n: "--" not in n and ".." not in n and not n.endswith(".git"))
shas = st.text(alphabet="0123456789abcdef", min_size=40, max_size=40)


@st.composite
def commitments(draw):
    ns, name, sha = draw(names), draw(names), draw(shas)
    assume(len(f"{ns}/{name}@{sha}") <= MAX_COMMITMENT_BYTES)
    return ns, name, sha


@given(commitments())
def test_round_trip(parts):
    ns, name, sha = parts
    text = f"{ns}/{name}@{sha}"
    parsed = parse_commitment(text)
    assert parsed == Commitment(f"{ns}/{name}", sha)
    assert str(parsed) == text
    assert parse_commitment(str(parsed)) == parsed
    assert COMMITMENT_RE.match(text)


@given(commitments())
def test_live_json_form_round_trips_to_canonical(parts):
    ns, name, sha = parts
    text = json.dumps({"model": f"{ns}/{name}", "revision": sha})
    assume(len(text) <= MAX_COMMITMENT_BYTES)
    assert parse_commitment(text) == Commitment(f"{ns}/{name}", sha)
    compact = json.dumps({"revision": sha, "model": f"{ns}/{name}"}, separators=(",", ":"))
    assert parse_commitment(compact) == parse_commitment(text)


@given(st.text(max_size=200))
def test_arbitrary_text_parses_only_if_it_matches_the_spec(text):
    try:
        parsed = parse_commitment(text)
    except CommitmentError as e:
        assert str(e)  # every rejection says why
        return
    if text.startswith("{"):
        value = json.loads(text)
        assert set(value) == {"model", "revision"}
    else:
        assert COMMITMENT_RE.match(text) and str(parsed) == text
    assert len(text.encode()) <= MAX_COMMITMENT_BYTES


@given(commitments(), st.sampled_from([" ", "\t", "\n", "\r"]), st.integers(min_value=0, max_value=200))
def test_whitespace_anywhere_is_rejected(parts, ws, position):
    ns, name, sha = parts
    text = f"{ns}/{name}@{sha}"
    position %= len(text) + 1
    with pytest.raises(CommitmentError, match="whitespace"):
        parse_commitment(text[:position] + ws + text[position:])


@given(commitments(), st.integers(min_value=0, max_value=39))
def test_upper_case_hex_is_rejected(parts, index):
    ns, name, sha = parts
    sha = sha[:index] + "A" + sha[index + 1 :]
    with pytest.raises(CommitmentError, match="upper-case"):
        parse_commitment(f"{ns}/{name}@{sha}")


@given(st.integers(min_value=MAX_COMMITMENT_BYTES + 1, max_value=1000))
def test_oversize_is_rejected(size):
    text = "a/" + "b" * (size - 43) + "@" + SHA
    assert len(text) == size
    with pytest.raises(CommitmentError, match=f"{size} bytes"):
        parse_commitment(text)


@settings(max_examples=50)
@given(st.dictionaries(st.sampled_from(["model", "revision", "block", "hotkey", "queue_block", "Model"]), st.just("x"), min_size=1))
def test_json_keys_must_be_exactly_model_and_revision(keys):
    value = {k: ("ns/m" if k == "model" else SHA if k == "revision" else 1) for k in keys}
    text = json.dumps(value)
    if set(value) == {"model", "revision"}:
        assert parse_commitment(text) == Commitment("ns/m", SHA)
    else:
        with pytest.raises(CommitmentError, match="exactly the keys"):
            parse_commitment(text)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty"),
        ("ns/model", "exactly one '@'"),
        (f"ns/model@{SHA}@{SHA}", "exactly one '@'"),
        (f"model@{SHA}", "one '/'"),
        (f"a/b/c@{SHA}", "one '/'"),
        (f"ns/model@{SHA[:7]}", "7 hex characters"),
        ("ns/model@main", "not a commit sha"),
        (f"-ns/model@{SHA}", "not a valid Hugging Face repo id"),
        (f"ns/mo del@{SHA}", "whitespace"),
        (f"ns/mo--del@{SHA}", "'--'"),
        (f"ns/model.git@{SHA}", ".git"),
        (f"ns/modél@{SHA}", "non-ASCII"),
        (f"ns/model@{SHA}\x00", "control characters"),
        ('{"model": "ns/m"}', "missing key"),
        ('{"model": "ns/m", "revision": "' + SHA + '", "block": 1}', "unexpected key"),
        ('{"model": "ns/m", "model": "x/y", "revision": "' + SHA + '"}', "repeats a key"),
        ('{"model": "ns/m", "revision": ' + "1" * 40 + "}", "must be a string"),
        ('{"model": "ns/m ", "revision": "' + SHA + '"}', "whitespace"),
        ('["ns/m","' + SHA + '"]', "exactly one '@'"),
        ("{not json", "does not parse"),
    ],
)
def test_rejections_name_the_problem(text, reason):
    with pytest.raises(CommitmentError, match=reason):
        parse_commitment(text)


def test_bytes_input():
    assert parse_commitment(f"ns/m@{SHA}".encode()) == Commitment("ns/m", SHA)
    with pytest.raises(CommitmentError, match="UTF-8"):
        parse_commitment(b"ns/m@\xff" + SHA.encode()[1:])


def test_value_type_is_frozen_and_validated():
    c = Commitment("ns/m", SHA)
    with pytest.raises(Exception):
        c.repo = "x/y"
    with pytest.raises(CommitmentError):
        Commitment("ns/m", "HEAD")
    with pytest.raises(CommitmentError, match="bytes"):
        Commitment("n" * 60 + "/" + "m" * 60, SHA)
    assert re.fullmatch(r"[^@]+@[0-9a-f]{40}", str(c))
