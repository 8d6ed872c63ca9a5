"""Model stores: the local-directory store and the Hugging Face store (real huggingface_hub
client against the local hub server), their errors, and the bounded cache."""

from __future__ import annotations

import hashlib
import os

import pytest

from hub_server import HubServer
from model_builders import clone, replace_file
from distil.commitment import Commitment
from distil.hub import (
    HubError,
    HubTransientError,
    HuggingFaceStore,
    LocalModelStore,
    RepoUnavailable,
    directory_revision,
    translate_hub_error,
)
from distil.hub.cache import CacheEntry, plan_evictions


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory):
    """A tiny non-model repo: enough to exercise the store without weights."""
    root = tmp_path_factory.mktemp("small-repo")
    (root / "config.json").write_text('{"vocab_size": 248320}')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 4)  # bytes only: nothing parses it here
    (root / "big.bin").write_bytes(os.urandom(11 * 1024 * 1024))  # over the LFS threshold
    return root


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the local store ---------------------------------------------------------------------


def test_local_store_serves_a_directory_at_its_content_revision(small_repo):
    store = LocalModelStore({"alice/small": small_repo})
    revision = store.resolve_revision("alice/small")
    assert revision == directory_revision(small_repo) and len(revision) == 40
    meta = store.repo_metadata(Commitment("alice/small", revision))
    assert sorted(meta.names) == ["big.bin", "config.json", "model.safetensors"]
    weights = meta.file("model.safetensors")
    assert weights.size == (small_repo / "model.safetensors").stat().st_size
    assert weights.sha256 == sha256(small_repo / "model.safetensors")
    assert meta.is_public and meta.visibility_problem() is None
    assert store.read_range(Commitment("alice/small", revision), "config.json", 2, 12) == b'vocab_size'
    assert store.download(Commitment("alice/small", revision)) == small_repo


def test_local_store_editing_a_directory_moves_its_revision(small_repo, tmp_path):
    path = clone(small_repo, tmp_path / "repo")
    store = LocalModelStore({"alice/m": path})
    old = Commitment("alice/m", store.resolve_revision("alice/m"))
    replace_file(path / "config.json", "{}")
    with pytest.raises(RepoUnavailable) as e:
        store.repo_metadata(old)
    assert e.value.kind == "revision"
    # An older snapshot kept on purpose stays readable at its revision.
    older = clone(small_repo, tmp_path / "older")
    assert store.add_revision("alice/m", older) == old.revision
    assert store.repo_metadata(old).revision == old.revision


def test_local_store_simulates_unavailable_and_transient_repos(small_repo):
    store = LocalModelStore({"alice/small": small_repo})
    commitment = Commitment("alice/small", directory_revision(small_repo))
    for kind in ("private", "gated", "missing"):
        store.set_unavailable("alice/small", kind)
        with pytest.raises(RepoUnavailable) as e:
            store.repo_metadata(commitment)
        assert e.value.kind == kind
    store.set_public("alice/small")
    store.fail_transient("alice/small", times=2)
    for _ in range(2):
        with pytest.raises(HubTransientError):
            store.probe(commitment)
    assert store.probe(commitment).revision == commitment.revision
    with pytest.raises(RepoUnavailable, match="not found"):
        store.resolve_revision("alice/none")
    with pytest.raises(ValueError, match="unknown kind"):
        store.set_unavailable("alice/small", "hidden")


def test_local_store_flags_symlinks_leaving_the_repo(small_repo, tmp_path):
    path = clone(small_repo, tmp_path / "links")
    (path / "inside.json").symlink_to(path / "config.json")
    (path / "outside.json").symlink_to("/etc/hostname")
    store = LocalModelStore({"alice/links": path})
    commitment = Commitment("alice/links", store.resolve_revision("alice/links"))
    meta = store.repo_metadata(commitment)
    assert meta.file("inside.json").is_symlink and not meta.file("inside.json").symlink_escapes
    assert meta.file("outside.json").symlink_escapes
    assert store.read_range(commitment, "inside.json", 0, 1) == b"{"
    with pytest.raises(HubError, match="out of the repo"):
        store.read_range(commitment, "outside.json", 0, 1)


# -- the Hugging Face store against the local hub ----------------------------------------


def test_hf_store_metadata_ranges_and_download_at_the_pinned_revision(hub, small_repo, tmp_path):
    revision = hub.add_repo("alice/small", small_repo)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
    assert store.resolve_revision("alice/small") == revision
    commitment = Commitment("alice/small", revision)

    meta = store.repo_metadata(commitment)
    weights = meta.file("model.safetensors")
    assert (weights.size, weights.sha256) == ((small_repo / "model.safetensors").stat().st_size, sha256(small_repo / "model.safetensors"))
    assert meta.file("config.json").sha256 is None and meta.file("config.json").blob_id  # not LFS: git id only
    assert meta.is_public

    hub.clear_log()
    assert store.read_range(commitment, "big.bin", 5, 25) == (small_repo / "big.bin").read_bytes()[5:25]
    served = [r for r in hub.requests(method="GET") if r.filename == "big.bin"]
    assert sum(r.bytes_sent for r in served) == 20  # exactly the range, through the CDN redirect
    assert any(r.server == "cdn" and r.range == "bytes=5-24" for r in served)

    path = store.download(commitment)
    assert path.name == revision and sorted(p.name for p in path.iterdir()) == sorted(meta.names)
    assert sha256(path / "big.bin") == sha256(small_repo / "big.bin")
    assert store.fetch_file(commitment, "config.json").read_text() == '{"vocab_size": 248320}'
    assert store.probe(commitment).revision == revision


def test_hf_store_reads_the_pinned_revision_not_main(hub, small_repo, tmp_path):
    first = hub.add_repo("alice/m", small_repo)
    later = clone(small_repo, tmp_path / "later")
    replace_file(later / "config.json", '{"vocab_size": 1}')
    hub.add_repo("alice/m", later)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
    assert store.resolve_revision("alice/m") != first
    assert store.fetch_file(Commitment("alice/m", first), "config.json").read_text() == '{"vocab_size": 248320}'


@pytest.mark.parametrize(
    "visibility, kind",
    [("private", "missing"), ("missing", "missing"), ("gated", "gated"), ("disabled", "disabled")],
)
def test_hf_store_unavailable_repos(hub, small_repo, tmp_path, visibility, kind):
    revision = hub.add_repo("alice/small", small_repo)
    hub.set_visibility("alice/small", visibility)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
    commitment = Commitment("alice/small", revision)
    if visibility == "gated":  # the hub shows gated repos' metadata, but not their files
        assert store.repo_metadata(commitment).visibility_problem()
        with pytest.raises(RepoUnavailable) as e:
            store.read_range(commitment, "config.json", 0, 1)
    else:
        with pytest.raises(RepoUnavailable) as e:
            store.repo_metadata(commitment)
    assert e.value.kind == kind


@pytest.mark.parametrize("status, kind", [(401, "private"), (403, "private"), (404, "missing")])
def test_hf_store_401_403_404_on_demand(hub, small_repo, tmp_path, status, kind):
    revision = hub.add_repo("alice/small", small_repo)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
    hub.fail(status, path_contains="/api/models/")
    with pytest.raises(RepoUnavailable) as e:
        store.repo_metadata(Commitment("alice/small", revision))
    assert e.value.kind == kind


def test_hf_store_unknown_revision(hub, small_repo, tmp_path):
    hub.add_repo("alice/small", small_repo)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
    with pytest.raises(RepoUnavailable) as e:
        store.repo_metadata(Commitment("alice/small", "1" * 40))
    assert e.value.kind == "revision"


def test_hf_store_owner_token_sees_a_private_repo_as_private(small_repo, tmp_path):
    with HubServer(owner_tokens={"hf_owner": {"alice/small"}}) as hub:
        revision = hub.add_repo("alice/small", small_repo)
        hub.set_visibility("alice/small", "private")
        store = HuggingFaceStore(endpoint=hub.endpoint, token="hf_owner", cache_dir=tmp_path / "cache")
        meta = store.repo_metadata(Commitment("alice/small", revision))
        assert meta.private and "private" in meta.visibility_problem()


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_hf_store_rate_limits_and_server_errors_are_transient(hub, small_repo, tmp_path, status):
    revision = hub.add_repo("alice/small", small_repo)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
    commitment = Commitment("alice/small", revision)
    hub.fail(status, path_contains="/api/models/")
    with pytest.raises(HubTransientError):
        store.repo_metadata(commitment)
    hub.fail(status, path_contains="/resolve/")
    with pytest.raises(HubTransientError):
        store.read_range(commitment, "config.json", 0, 4)
    if status != 429:  # the client retries a 429 on a file GET with backoff; a 5xx fails at once
        hub.fail(status, times=None, path_contains="/cdn/")
        with pytest.raises(HubTransientError):
            store.download(commitment)
    hub.clear_faults()
    assert store.download(commitment).is_dir()


def test_hf_store_download_rides_out_one_server_error(hub, small_repo, tmp_path):
    """snapshot_download retries a failed HEAD with backoff (1 s, 2 s, ... ~23 s in all):
    a blip is absorbed; only a persistent outage surfaces (as HubTransientError)."""
    revision = hub.add_repo("alice/small", small_repo)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
    hub.fail(503, times=1, path_contains="config.json", method="HEAD")
    path = store.download(Commitment("alice/small", revision))
    assert (path / "config.json").is_file()
    assert [r.status for r in hub.requests(method="HEAD") if r.filename == "config.json"] == [503, 200]


def test_hf_store_timeouts_and_unreachable_hub_are_transient(hub, small_repo, tmp_path):
    revision = hub.add_repo("alice/small", small_repo)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache", timeout=0.3)
    hub.fail(None, path_contains="/api/models/", delay=1.0)
    with pytest.raises(HubTransientError):
        store.repo_metadata(Commitment("alice/small", revision))
    from conftest import free_port

    nowhere = HuggingFaceStore(endpoint=f"http://127.0.0.1:{free_port()}", token=False, cache_dir=tmp_path / "c2")
    with pytest.raises(HubTransientError):
        nowhere.repo_metadata(Commitment("alice/small", revision))


# -- an overall deadline on every call (issue 22 §5) -------------------------------------------

TRICKLE = 0.25  # seconds between bytes: every read gets a byte long before `timeout`, the answer never ends


@pytest.mark.parametrize("where, call", [
    ("/api/models/", lambda store, c: store.repo_metadata(c)),
    ("/api/models/", lambda store, c: store.resolve_revision(c.repo)),
    ("/cdn/", lambda store, c: store.read_range(c, "model.safetensors", 0, 8)),  # after the hub's redirect
    ("/resolve/", lambda store, c: store.fetch_file(c, "config.json")),
    ("/cdn/", lambda store, c: store.download(c)),  # snapshot_download's worker threads, its retries
], ids=["metadata", "resolve", "range-via-redirect", "file", "snapshot"])
def test_a_trickling_hub_ends_at_the_calls_deadline(hub, small_repo, tmp_path, where, call):
    """A hub, CDN or proxy that trickles its answer one byte at a time never trips the
    per-read timeout (30 s); each call ends at its overall deadline (here 1 s) with a
    transient error naming it, instead of waiting for ever."""
    from distil.hub import HubDeadlineExceeded

    revision = hub.add_repo("alice/small", small_repo)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache", request_deadline_s=1.0)
    commitment = Commitment("alice/small", revision)
    hub.fail(None, times=None, path_contains=where, trickle=TRICKLE)
    with pytest.raises(HubDeadlineExceeded, match=r"no complete answer within 1s") as e:
        call(store, commitment)
    assert isinstance(e.value, HubTransientError)
    hub.clear_faults()
    assert store.repo_metadata(commitment).revision == revision  # the same client, healthy again


def test_a_trickling_hub_is_the_hubs_transient_in_the_pipeline_and_the_budget_is_ours(hub, valid_model,
                                                                                          teacher_reference, tmp_path):
    """Through the pre-check pipeline: a call past its own deadline is HUB_TRANSIENT (a strike
    only when the hub answered other repos); one cut by the epoch's budget (`deadline_at`)
    is PRECHECK_BUDGET, never the repo's; with no budget left nothing is asked of the hub."""
    import time

    from distil.checks import check_commitment

    revision = hub.add_repo("alice/valid", valid_model)
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache", request_deadline_s=1.0)
    commitment = Commitment("alice/valid", revision)
    hub.fail(None, times=None, path_contains="/api/models/", trickle=TRICKLE)
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.reason, result.code, result.transient_scope) == ("TRANSIENT", "HUB_TRANSIENT", "hub"), result.detail
    assert "within 1s" in result.detail

    store.request_deadline_s = 600.0  # the call's own deadline is far: the epoch's budget cuts it
    with store.deadline_at(time.monotonic() + 1.0):
        result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.code, result.transient_scope) == ("PRECHECK_BUDGET", "local"), result.detail
    hub.clear_faults()
    hub.clear_log()
    with store.deadline_at(time.monotonic() - 1):
        result = check_commitment(store, commitment, teacher=teacher_reference)
    assert result.code == "PRECHECK_BUDGET" and hub.requests() == []


def test_translate_hub_error_never_calls_an_unknown_failure_unavailable():
    assert isinstance(translate_hub_error("a/b", ValueError("odd")), HubError)
    assert not isinstance(translate_hub_error("a/b", ValueError("odd")), (HubTransientError, RepoUnavailable))
    assert isinstance(translate_hub_error("a/b", TimeoutError("slow")), HubTransientError)


# -- the bounded cache -------------------------------------------------------------------


def test_plan_evictions_least_recently_used_first_never_kept():
    entries = [CacheEntry("a", 40, 1.0), CacheEntry("b", 40, 3.0), CacheEntry("c", 40, 2.0)]
    assert plan_evictions(entries, 200) == []
    assert plan_evictions(entries, 80) == ["a"]
    assert plan_evictions(entries, 40) == ["a", "c"]
    assert plan_evictions(entries, 40, keep={"a"}) == ["c", "b"]
    assert plan_evictions(entries, 100, incoming=50) == ["a", "c"]
    assert plan_evictions(entries, 0, keep={"a", "b", "c"}) == []
    ties = [CacheEntry("y", 10, 1.0), CacheEntry("x", 10, 1.0)]
    assert plan_evictions(ties, 10) == ["x"]
    with pytest.raises(ValueError):
        plan_evictions(entries, -1)


def test_hf_store_cache_stays_within_its_budget(hub, small_repo, tmp_path):
    first, second = Commitment("alice/one", hub.add_repo("alice/one", small_repo)), None
    other = clone(small_repo, tmp_path / "other")
    replace_file(other / "big.bin", os.urandom(11 * 1024 * 1024))
    second = Commitment("bob/two", hub.add_repo("bob/two", other))
    size = sum(f.stat().st_size for f in small_repo.iterdir())
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache", max_cache_bytes=int(size * 1.5))
    one = store.download(first)
    assert one.is_dir()
    two = store.download(second)
    assert two.is_dir() and not one.exists()  # the least recently used snapshot made room
    store.pin(second)
    store.download(first)
    assert two.exists()  # pinned: kept even over budget
