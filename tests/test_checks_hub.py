"""The pre-checks through the real huggingface_hub client and the local hub server: the
header-only stage fetches no weight bytes, hub trouble is never a verdict, the pinned
revision is the only one read, duplicates are found from metadata, integrity."""

from __future__ import annotations

import json
import struct

import pytest

from hub_server import HubServer
from model_builders import WEIGHTS, clone, reshard
from test_checks_corpus import (
    bin_beside_decoy_safetensors,
    embedding_disagrees_with_config,
    f32_tensors,
    header_claims_gigabytes,
    int8_without_quantization_config,
)
from distil.checks import (
    Claim,
    CheckLimits,
    DuplicateRegistry,
    check_commitment,
    check_integrity,
    publication_verdict,
)
from distil.checks.cli import main as distil_check
from distil.commitment import Commitment
from distil.hub import HuggingFaceStore, LocalModelStore


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


@pytest.fixture
def store(hub, tmp_path):
    return HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")


def header_end(path) -> int:
    with open(path, "rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


def test_valid_model_through_the_hub_reads_only_headers_before_downloading(
    hub, store, valid_model, teacher_reference
):
    commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert result.ok, result.detail

    local = LocalModelStore()
    same = check_commitment(local, Commitment("x/y", local.add("x/y", valid_model)), teacher=teacher_reference)
    assert (result.content_hash, result.files_hash, result.params) == (same.content_hash, same.files_hash, same.params)
    assert str(store.cache_dir) in result.local_path

    # Requests that served safetensors bytes, in order (redirects carry none).
    weight_gets = [r for r in hub.log if r.bytes_sent and (r.filename or "").endswith(".safetensors")]
    first_full = next(i for i, r in enumerate(weight_gets) if r.range is None)
    limit = header_end(valid_model / WEIGHTS)
    for r in weight_gets[:first_full]:
        assert r.range is not None and r.start + r.bytes_sent <= limit, r
    assert sum(r.bytes_sent for r in weight_gets[:first_full]) == limit  # 8 bytes, then the header
    assert weight_gets[first_full].bytes_sent == (valid_model / WEIGHTS).stat().st_size


@pytest.mark.parametrize(
    "build, code, limits",
    [
        (f32_tensors, "DTYPE", CheckLimits()),
        (int8_without_quantization_config, "QUANTIZED", CheckLimits()),
        (embedding_disagrees_with_config, "EMBEDDING_SHAPE", CheckLimits()),
        (header_claims_gigabytes, "HEADER_INVALID", CheckLimits()),
        (lambda v, d: clone(v, d), "TOO_MANY_PARAMS", CheckLimits(max_params=1_000_000)),
    ],
    ids=["dtype", "quantized", "embedding", "gigabyte-header", "too-many-params"],
)
def test_header_failures_download_no_weight_bytes(hub, store, valid_model, teacher_reference, tmp_path, build, code, limits):
    path = tmp_path / "model"
    build(valid_model, path)
    commitment = Commitment("mallory/m", hub.add_repo("mallory/m", path))
    result = check_commitment(store, commitment, limits, teacher=teacher_reference)
    assert result.code == code, result.detail
    assert hub.weight_bytes_served() == 0
    assert not [r for r in hub.requests(filename_suffix=".safetensors") if r.method == "GET" and r.range is None]
    assert [s.status for s in result.steps if s.name in ("download", "content", "tokenizer", "load")] == ["skip"] * 4
    if code == "HEADER_INVALID":  # the 8-byte length prefix, and nothing of the claimed gigabytes
        assert sum(r.bytes_sent for r in hub.requests(method="GET", filename_suffix=".safetensors")) == 8


def test_forbidden_files_are_refused_from_metadata_alone(hub, store, valid_model, teacher_reference, tmp_path):
    bin_beside_decoy_safetensors(valid_model, tmp_path / "model")
    commitment = Commitment("mallory/bin", hub.add_repo("mallory/bin", tmp_path / "model"))
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert result.code == "FORBIDDEN_FILE" and "pytorch_model.bin" in result.detail
    assert not [r for r in hub.log if "/resolve/" in r.path or r.server == "cdn"]


@pytest.mark.parametrize(
    "status, where",
    [
        (429, dict(path_contains="/api/models/")),
        (503, dict(path_contains="/api/models/")),
        (429, dict(path_contains=".safetensors", method="GET", ranged=True)),
        (500, dict(path_contains=".safetensors", method="GET", ranged=True)),
        (502, dict(path_contains="/cdn/", ranged=False)),
    ],
    ids=["429-info", "503-info", "429-header", "500-header", "502-download"],
)
def test_transient_hub_errors_are_never_a_verdict(hub, store, valid_model, teacher_reference, status, where):
    commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    hub.fail(status, times=None, **where)
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.ok, result.reason, result.code) == (False, "TRANSIENT", "HUB_TRANSIENT"), result.detail
    hub.clear_faults()
    assert check_commitment(store, commitment, teacher=teacher_reference).ok


@pytest.mark.parametrize("visibility", ["private", "missing", "gated"])
def test_not_public_repos_are_unavailable_then_pending_invalid_or_removed(
    hub, store, valid_model, teacher_reference, visibility
):
    commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    hub.set_visibility("alice/tiny", visibility)
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.reason, result.code, result.seen_public) == ("UNAVAILABLE", "NOT_PUBLIC", False)
    assert publication_verdict(commit_block=1000, now_block=1500, grace_blocks=7200) == "PENDING"
    assert publication_verdict(commit_block=1000, now_block=8200, grace_blocks=7200) == "INVALID"
    assert publication_verdict(1000, 1500, 7200, seen_public_before=True) == "REMOVED"
    # Published later within the grace period: it passes.
    hub.set_visibility("alice/tiny", "public")
    assert check_commitment(store, commitment, teacher=teacher_reference).ok


def test_unpushed_revision_is_unavailable(hub, store, valid_model, teacher_reference):
    hub.add_repo("alice/tiny", valid_model)
    result = check_commitment(store, Commitment("alice/tiny", "a" * 40), teacher=teacher_reference)
    assert (result.reason, result.code) == ("UNAVAILABLE", "REVISION_NOT_FOUND")


def test_owner_can_check_a_private_repo_before_publishing(valid_model, teacher_reference, tmp_path):
    with HubServer(owner_tokens={"hf_alice": {"alice/tiny"}}) as hub:
        commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
        hub.set_visibility("alice/tiny", "private")
        store = HuggingFaceStore(endpoint=hub.endpoint, token="hf_alice", cache_dir=tmp_path / "cache")
        strict = check_commitment(store, commitment, teacher=teacher_reference)
        assert strict.code == "NOT_PUBLIC" and "private" in strict.detail
        relaxed = check_commitment(store, commitment, CheckLimits(require_public=False), teacher=teacher_reference)
        assert relaxed.ok and not relaxed.seen_public


def test_weights_pushed_after_the_commitment_are_not_read(hub, store, valid_model, teacher_reference, tmp_path):
    committed = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    f32_tensors(valid_model, tmp_path / "swapped")
    hub.add_repo("alice/tiny", tmp_path / "swapped")  # the new main
    assert store.resolve_revision("alice/tiny") != committed.revision
    result = check_commitment(store, committed, teacher=teacher_reference)
    assert result.ok and result.params is not None
    assert check_commitment(store, Commitment("alice/tiny", store.resolve_revision("alice/tiny")), teacher=teacher_reference).code == "DTYPE"


def test_squatting_an_empty_repo_pins_the_empty_revision(hub, store, valid_model, teacher_reference, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("coming soon\n")
    squatted = Commitment("mallory/soon", hub.add_repo("mallory/soon", empty))
    hub.add_repo("mallory/soon", valid_model)  # weights arrive after the commitment
    result = check_commitment(store, squatted, teacher=teacher_reference)
    assert result.code == "MISSING_FILE"


def test_recommitting_the_same_files_is_a_copy_found_without_any_download(hub, store, valid_model, teacher_reference):
    original = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    copy = Commitment("mallory/tiny", hub.add_repo("mallory/tiny", valid_model))
    first = check_commitment(store, original, teacher=teacher_reference)
    alice, mallory = Claim(100, "5Alice", str(original)), Claim(105, "5Mallory", str(copy))
    registry = DuplicateRegistry()
    for digest in (first.files_hash, first.content_hash):
        registry, owner, displaced = registry.claim(digest, alice)
        assert owner == alice and displaced is None

    hub.clear_log()
    result = check_commitment(store, copy, teacher=teacher_reference, owner_of=registry.copy_lookup(mallory))
    assert (result.reason, result.code, result.copy_of) == ("COPY", "DUPLICATE_FILES", str(original))
    # nothing downloaded but the ownership file (spec v3: read first, a few bytes of JSON)
    fetched = [r for r in hub.log if "/resolve/" in r.path or r.server == "cdn"]
    assert fetched and all(r.path.endswith("/distil.json") for r in fetched), fetched

    # Mallory's earlier commitment would own the hash instead: not a copy.
    earlier = Claim(99, "5Mallory", str(copy))
    assert check_commitment(store, copy, teacher=teacher_reference, owner_of=registry.copy_lookup(earlier)).ok


def test_resharded_copy_on_the_hub_is_a_content_copy(hub, store, valid_model, teacher_reference, tmp_path):
    original = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    copy = Commitment("mallory/tiny", hub.add_repo("mallory/tiny", reshard(valid_model, tmp_path / "re", 2)))
    first = check_commitment(store, original, teacher=teacher_reference)
    registry, _, _ = DuplicateRegistry().claim(first.content_hash, Claim(100, "5Alice", str(original)))
    result = check_commitment(
        store, copy, teacher=teacher_reference, owner_of=registry.copy_lookup(Claim(101, "5Mallory", str(copy)))
    )
    assert (result.reason, result.code) == ("COPY", "DUPLICATE_CONTENT")
    assert result.content_hash == first.content_hash and result.files_hash != first.files_hash


def test_integrity_ok_removed_transient(hub, store, valid_model):
    commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    assert check_integrity(store, commitment).status == "OK"
    hub.fail(503, path_contains="/api/models/")
    assert check_integrity(store, commitment).status == "TRANSIENT"
    hub.fail(429, path_contains="/api/models/")
    assert check_integrity(store, commitment).status == "TRANSIENT"
    for visibility in ("private", "gated", "missing"):
        hub.set_visibility("alice/tiny", visibility)
        result = check_integrity(store, commitment)
        assert result.status == "REMOVED" and not result.ok, visibility
    hub.set_visibility("alice/tiny", "public")
    assert check_integrity(store, Commitment("alice/tiny", "b" * 40)).status == "REMOVED"
    # Integrity reads metadata only: no file was fetched.
    assert not [r for r in hub.log if "/resolve/" in r.path]


def test_distil_check_cli_against_the_hub(hub, valid_model, teacher_dir, tmp_path, capsys):
    revision = hub.add_repo("alice/tiny", valid_model)
    common = ["--endpoint", hub.endpoint, "--cache-dir", str(tmp_path / "cache"), "--teacher", str(teacher_dir), "--json"]
    assert distil_check([f"alice/tiny@{revision}", *common]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert distil_check(["alice/tiny", *common]) == 0  # resolves main, then pins it
    capsys.readouterr()
    hub.fail(429, times=None, path_contains="/api/models/")
    assert distil_check([f"alice/tiny@{revision}", *common]) == 2
    out = json.loads(capsys.readouterr().out)
    assert (out["reason"], out["code"]) == ("TRANSIENT", "HUB_TRANSIENT")
    assert distil_check(["alice/tiny", *common]) == 2  # resolving main fails the same way
    out = json.loads(capsys.readouterr().out)
    assert (out["reason"], out["code"]) == ("TRANSIENT", "HUB_TRANSIENT")
    hub.clear_faults()
    hub.set_visibility("alice/tiny", "private")
    assert distil_check([f"alice/tiny@{revision}", *common]) == 1
    assert json.loads(capsys.readouterr().out)["code"] == "NOT_PUBLIC"
