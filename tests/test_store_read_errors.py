"""A read error is not a removal (issue 9 §4): when our own disk or cache cannot be read
(permissions, I/O errors), every store answers with a transient error, the integrity check
says TRANSIENT and the pre-check LOCAL_IO_ERROR; REMOVED only when the source says so (for
the local store: the directory no longer exists).

The tests run as root, and `chmod 000` does not stop root: the permission and I/O errors
are injected by monkeypatching the calls that read the directory (`os.scandir`, which
`os.walk` uses; `open`) to raise PermissionError / OSError(EIO) for the paths under test,
which is what those calls raise for an unprivileged validator on a `chmod 000` directory
or a failing disk.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
from pathlib import Path

import pytest

from hub_server import HubServer
from model_builders import clone
from distil.checks import check_commitment, check_integrity
from distil.commitment import Commitment
from distil.hub import HuggingFaceStore, LocalModelStore, LocalStorageError
import distil.hub.local as local_module


def _deny_scandir(monkeypatch, denied: Path) -> None:
    real = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)).resolve().is_relative_to(denied.resolve()):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def _failing_open(monkeypatch, module, matches, err=errno.EIO) -> None:
    real = builtins.open

    def fake_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and matches(Path(file)):
            raise OSError(err, os.strerror(err), str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(module, "open", fake_open, raising=False)


@pytest.fixture
def king(valid_model, tmp_path):
    path = clone(valid_model, tmp_path / "king")
    store = LocalModelStore()
    return store, Commitment("alice/king", store.add("alice/king", path)), path


def test_unreadable_local_directory_is_transient_not_removed(king, teacher_reference, monkeypatch):
    store, commitment, path = king
    assert check_integrity(store, commitment).ok

    with monkeypatch.context() as m:
        _deny_scandir(m, path)  # as `chmod 000 king/` does for a non-root validator
        integrity = check_integrity(store, commitment)
        assert integrity.status == "TRANSIENT", integrity.detail
        assert "Permission denied" in integrity.detail
        with pytest.raises(LocalStorageError):
            store.repo_metadata(commitment)
        result = check_commitment(store, commitment, teacher=teacher_reference)
        assert (result.reason, result.code, result.transient_scope) == ("TRANSIENT", "LOCAL_IO_ERROR", "local")

    # Readable again ("chmod back"): the same commitment passes, nothing was decided meanwhile.
    assert check_integrity(store, commitment).ok
    assert check_commitment(store, commitment, teacher=teacher_reference).ok


def test_io_error_reading_a_local_file_is_transient(king, monkeypatch):
    store, commitment, path = king
    weights = path / "model.safetensors"
    local_module._sha_cache.clear()
    with monkeypatch.context() as m:
        _failing_open(m, local_module, lambda p: p == weights)  # EIO hashing the weights
        integrity = check_integrity(store, commitment)
    assert integrity.status == "TRANSIENT", integrity.detail
    assert check_integrity(store, commitment).ok


def test_deleted_local_directory_is_removed(king):
    store, commitment, path = king
    shutil.rmtree(path)
    integrity = check_integrity(store, commitment)
    assert integrity.status == "REMOVED", integrity.detail


def test_unreadable_repo_root_itself_is_transient(king, monkeypatch):
    """stat() of the repo directory failing with EACCES (a parent chmod 000) is no removal."""
    store, commitment, path = king
    real_stat = os.stat

    def stat(p, *args, **kwargs):
        if Path(os.fsdecode(p)) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_stat(p, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "stat", stat)
        assert check_integrity(store, commitment).status == "TRANSIENT"
    assert check_integrity(store, commitment).ok


# -- the Hugging Face store's cache ------------------------------------------------------


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


def test_hf_cache_that_cannot_be_created_is_local_io_error(hub, valid_model, teacher_reference, tmp_path):
    """The cache path is a file, so nothing can be created under it (ENOTDIR, even as root)."""
    commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    blocked = tmp_path / "cache"
    blocked.write_text("not a directory")
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=blocked)
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.reason, result.code, result.transient_scope) == ("TRANSIENT", "LOCAL_IO_ERROR", "local"), result.detail
    assert check_integrity(store, commitment).ok  # the repo itself is fine


def test_hf_snapshot_file_unreadable_is_local_io_error(hub, valid_model, teacher_reference, tmp_path, monkeypatch):
    commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    cache = tmp_path / "cache"
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=cache)
    assert check_commitment(store, commitment, teacher=teacher_reference).ok

    import distil.checks.pipeline as pipeline

    for name in ("tokenizer_config.json", "tokenizer.json"):
        with monkeypatch.context() as m:
            _failing_open(m, pipeline, lambda p: "snapshots" in p.parts and p.name == name, errno.EACCES)
            result = check_commitment(store, commitment, teacher=teacher_reference)
        assert (result.reason, result.code) == ("TRANSIENT", "LOCAL_IO_ERROR"), (name, result.detail)
        assert name in result.detail or "Permission denied" in result.detail
    assert check_commitment(store, commitment, teacher=teacher_reference).ok


def test_hf_cache_that_cannot_be_scanned_for_eviction_is_local_io_error(hub, valid_model, tmp_path, monkeypatch):
    commitment = Commitment("alice/tiny", hub.add_repo("alice/tiny", valid_model))
    cache = tmp_path / "cache"
    cache.mkdir()
    store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=cache, max_cache_bytes=1 << 30)
    import distil.hub.cache as cache_module

    def scan(cache_dir):
        raise PermissionError(errno.EACCES, "Permission denied", str(cache_dir))

    monkeypatch.setattr(cache_module, "hf_cache_entries", scan)
    with pytest.raises(LocalStorageError, match="Permission denied"):
        store.download(commitment)


# -- our disk while loading: LOCAL_IO_ERROR, never the model's verdict (issue 22 §4) ----------


def _unreadable_by_mmap(path: Path) -> None:
    """Make `path` a file the safetensors library cannot map: a symlink to a /proc file (a
    regular file to stat, not to mmap), which makes it raise exactly what a failing disk
    does: OSError('No such device (os error 19)'), errno None."""
    path.unlink()
    path.symlink_to("/proc/self/status")


def _garbage(path: Path) -> None:
    """Bytes that do not parse as safetensors: the repo's fault."""
    path.unlink()
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + b"\x00" * 64)


@pytest.mark.parametrize("damage, reason, code", [(_unreadable_by_mmap, "TRANSIENT", "LOCAL_IO_ERROR"),
                                                  (_garbage, "INVALID", "HEADER_INVALID")])
def test_the_load_step_tells_our_disk_from_the_repos_bytes(king, teacher_reference, monkeypatch, damage, reason, code):
    """The snapshot's weights become unreadable after the content check (a failing disk under
    the load step): LOCAL_IO_ERROR, transient, never a strike. Bytes that do not parse are
    still the repo's: HEADER_INVALID."""
    import distil.checks.pipeline as pipeline

    store, commitment, path = king
    real = pipeline._Run.load

    def damaged_then_loaded(run):  # the disk fails after the content check; the load's worker meets it
        damage(Path(run.path) / "model.safetensors")
        return real(run)

    monkeypatch.setattr(pipeline._Run, "load", damaged_then_loaded)
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.reason, result.code) == (reason, code), result.detail
    if code == "LOCAL_IO_ERROR":
        assert result.transient_scope == "local" and "No such device" in result.detail


@pytest.mark.parametrize("damage, kind, code", [(_unreadable_by_mmap, "transient", "LOCAL_IO_ERROR"),
                                                (_garbage, "invalid", None)])
def test_scoring_tells_our_disk_from_the_repos_bytes(king, damage, kind, code):
    """The engine's load (the king's, say) on a disk that fails: transient LOCAL_IO_ERROR,
    which the round keeps apart from the model's own failures; garbage stays invalid."""
    from distil import VOCAB_SIZE
    from distil.eval.engine import with_loaded_model
    from distil.eval.spec import EvalSpec

    _, _, path = king
    damage(path / "model.safetensors")
    failure = with_loaded_model("king", str(path), EvalSpec(), VOCAB_SIZE, "score", lambda model: "scored")
    assert (failure.kind, failure.phase, failure.code) == (kind, "load", code), failure.detail
    assert failure.ours == (code == "LOCAL_IO_ERROR")  # ours: never the model's strike
    assert failure.to_dict()["failure"]["code"] == (code or "EVAL_LOAD")


_EMFILE_SCRIPT = """
import os, resource, sys
from distil.checks.loading import read_tensor_headers
from distil.checks.tokenizer import load_tokenizer
from distil.hub.store import LocalStorageError
import safetensors
path = sys.argv[1]
load_tokenizer(path)  # every module it needs imported before the file table is full
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
for name, step in (("headers", lambda: read_tensor_headers([os.path.join(path, "model.safetensors")])),
                   ("tokenizer", lambda: load_tokenizer(path))):
    try:
        step()
        print(name, "loaded")
    except LocalStorageError as e:
        print(name, "LOCAL_IO_ERROR", e)
    except Exception as e:
        print(name, type(e).__name__, getattr(e, "code", ""), e)
"""


def test_a_full_file_table_is_ours_not_the_repos(valid_model):
    """EMFILE (RLIMIT_NOFILE exhausted, in a child process): safetensors says FileNotFoundError
    and the tokenizers library a plain Exception('Too many open files (os error 24)'); neither
    is HEADER_INVALID or TOKENIZER_INVALID."""
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, "-c", _EMFILE_SCRIPT, str(valid_model)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=300)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("headers ", "tokenizer ")))
    assert set(lines) == {"headers", "tokenizer"}, done.stdout + done.stderr[-2000:]
    assert all(v.startswith("LOCAL_IO_ERROR") for v in lines.values()), lines
    assert "Too many open files (errno 24)" in lines["tokenizer"]
