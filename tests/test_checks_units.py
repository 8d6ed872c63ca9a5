"""Pure pieces of the pre-checks, without a hub: files, config, headers, tensors, hashes,
the duplicate registry, the publication verdict, results and codes."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from conftest import ROOT
from distil.checks import (
    CODES,
    Claim,
    CheckFailure,
    CheckLimits,
    CheckResult,
    DuplicateRegistry,
    check_commitment,
    check_integrity,
    load_reference,
    publication_verdict,
    reason_of,
    scan_weights,
)
from distil.checks.config import check_config, parse_json_object
from distil.checks.files import check_files, check_index
from distil.checks.hashing import files_hash
from distil.checks.safetensors_header import check_tensors, header_length, parse_header
from distil.checks.tokenizer import TokenizerReference, compare_to_reference, load_tokenizer
from distil.commitment import Commitment
from distil.hub import HubError, LocalModelStore, RepoFile, RepoMetadata
from distil.hub.store import ModelStore

LIMITS = CheckLimits(max_params=1_000, vocab_size=16)
REV = "0" * 40


def code_of(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckFailure) as e:
        fn(*args, **kwargs)
    return e.value.code


# -- the ownership file (spec v3) --------------------------------------------------------


def test_owner_file_names_exactly_one_hotkey(tmp_path):
    from distil.checks.owner import check_owner, named_hotkey, owner_file_text, write_owner_file

    hk = "5GZEJAWby6mZqNgpfDeHJdvgjdYnQBtYnTHdWqMWyJdSr3vP"
    assert json.loads(owner_file_text(hk)) == {"hotkey": hk}
    path = write_owner_file(tmp_path, hk)
    assert path == tmp_path / "distil.json" and parse_json_object(path.read_bytes(), "distil.json") == {"hotkey": hk}
    assert [p.name for p in tmp_path.iterdir()] == ["distil.json"]  # no temporary file left
    assert named_hotkey({"hotkey": hk, "note": "ignored"}) == hk
    for value in ({}, {"hotkey": None}, {"hotkey": 5}, {"hotkey": ""}, {"hotkey": f" {hk}"}, {"hotkey": "x" * 129},
                  {"Hotkey": hk}):
        assert code_of(named_hotkey, value) == "OWNER_MISSING", value
    check_owner(hk, hk)
    assert code_of(check_owner, hk, hk[:-1] + "Q") == "OWNER_MISMATCH"
    assert code_of(check_owner, hk.lower(), hk) == "OWNER_MISMATCH"  # ss58 is case-sensitive
    for bad in ("", "two words", None, "x" * 129):
        with pytest.raises(ValueError):
            owner_file_text(bad)


def test_the_owner_file_is_allowed_and_capped_like_a_config():
    meta = RepoMetadata("a/b", REV, tuple(RepoFile(n, size) for n, size in {**BASE_FILES, "distil.json": 60}.items()))
    check_files(meta, CheckLimits())
    big = RepoMetadata("a/b", REV, tuple(RepoFile(n, size) for n, size in {**BASE_FILES, "distil.json": 5 << 20}.items()))
    assert code_of(check_files, big, CheckLimits()) == "FILE_SIZE"
    nested = RepoMetadata("a/b", REV, tuple(RepoFile(n, size) for n, size in {**BASE_FILES, "x/distil.json": 60}.items()))
    assert code_of(check_files, nested, CheckLimits()) == "FORBIDDEN_FILE"


# -- files -------------------------------------------------------------------------------

BASE_FILES = {"config.json": 500, "model.safetensors": 10_000, "tokenizer.json": 5_000, "tokenizer_config.json": 200}


def meta(files: dict[str, int | None] | None = None, **extra_files) -> RepoMetadata:
    names = dict(BASE_FILES if files is None else files)
    names.update(extra_files)
    return RepoMetadata("a/b", REV, tuple(RepoFile(n, s, sha256=f"{i:064x}") for i, (n, s) in enumerate(names.items())))


def test_allowed_files_pass():
    layout = check_files(
        meta(**{"README.md": 10, "LICENSE": 10, ".gitattributes": 10, "generation_config.json": 10, "chat_template.jinja": 10}),
        CheckLimits(),
    )
    assert layout.weight_files == ("model.safetensors",) and not layout.indexed


@pytest.mark.parametrize(
    "files, code",
    [
        ({**BASE_FILES, "modeling.py": 1, "weights.bin": 1}, "REMOTE_CODE"),  # code reported before other files
        ({**BASE_FILES, "tokenizer.pyc": 1}, "REMOTE_CODE"),
        ({**BASE_FILES, "model.h5": 1}, "FORBIDDEN_FILE"),
        ({**BASE_FILES, "sub/README.md": 1}, "FORBIDDEN_FILE"),
        ({**BASE_FILES, "weights/model.safetensors": 1}, "FORBIDDEN_FILE"),
        ({k: v for k, v in BASE_FILES.items() if k != "tokenizer_config.json"}, "MISSING_FILE"),
        ({k: v for k, v in BASE_FILES.items() if k != "model.safetensors"}, "MISSING_FILE"),
        ({**{k: v for k, v in BASE_FILES.items() if k != "model.safetensors"}, "model-00001-of-00002.safetensors": 5}, "MISSING_FILE"),
        ({**BASE_FILES, "README.md": None}, "FILE_SIZE"),
        ({**BASE_FILES, "config.json": 5 * 1024 * 1024}, "FILE_SIZE"),
        ({**BASE_FILES, "tokenizer.json": 65 * 1024 * 1024}, "FILE_SIZE"),
        ({**BASE_FILES, "extra.safetensors": 5}, "WEIGHT_INDEX"),
        ({**BASE_FILES, "model.safetensors.index.json": 9, **{f"s{i}.safetensors": 1 for i in range(3)}}, "WEIGHT_INDEX"),
    ],
)
def test_file_rules(files, code):
    assert code_of(check_files, meta(files), CheckLimits(max_weight_files=3)) == code


def test_weight_files_may_be_large_and_sharded():
    files = {k: v for k, v in BASE_FILES.items() if k != "model.safetensors"}
    files.update({"model.safetensors.index.json": 100, "b.safetensors": 10**10, "a.safetensors": 10**10})
    layout = check_files(meta(files), CheckLimits())
    assert layout.weight_files == ("a.safetensors", "b.safetensors") and layout.indexed


def test_symlink_inside_the_repo_is_fine_outside_is_not():
    inside = RepoFile("README.md", 3, symlink_target="LICENSE")
    outside = RepoFile("LICENSE", 3, symlink_target="/etc/passwd", symlink_escapes=True)
    base = meta()
    assert check_files(RepoMetadata("a/b", REV, base.files + (inside,)), CheckLimits())
    assert code_of(check_files, RepoMetadata("a/b", REV, base.files + (outside,)), CheckLimits()) == "SYMLINK"


def test_index_rules():
    files = {k: v for k, v in BASE_FILES.items() if k != "model.safetensors"}
    files.update({"model.safetensors.index.json": 100, "s1.safetensors": 9, "s2.safetensors": 9})
    layout = check_files(meta(files), CheckLimits())
    assert check_index({"weight_map": {"x": "s1.safetensors", "y": "s2.safetensors"}}, layout)
    for bad in ({}, {"weight_map": []}, {"weight_map": {"x": 1}}, {"weight_map": {"x": "s1.safetensors"}},
                {"weight_map": {"x": "s1.safetensors", "y": "s2.safetensors", "z": "s3.safetensors"}}):
        assert code_of(check_index, bad, layout) == "WEIGHT_INDEX"


# -- config ------------------------------------------------------------------------------


def test_parse_json_object_names_the_problem():
    assert parse_json_object(b'{"a": 1}', "config.json") == {"a": 1}
    for data, code in ((b"\xff\xfe", "MALFORMED_JSON"), (b"[1, 2]", "CONFIG_INVALID"), (b"{oops}", "MALFORMED_JSON")):
        with pytest.raises(CheckFailure) as e:
            parse_json_object(data, "config.json")
        assert e.value.code == code and "config.json" in e.value.detail


GOOD_CONFIG = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "vocab_size": 16, "hidden_size": 8}


def test_good_config_summary():
    summary = check_config(GOOD_CONFIG, LIMITS)
    assert (summary.model_type, summary.vocab_size, summary.hidden_size) == ("qwen3", 16, 8)
    nested = {"model_type": "qwen3_5", "text_config": {"vocab_size": 16, "hidden_size": 4}}
    assert check_config(nested, LIMITS).hidden_size == 4


@pytest.mark.parametrize(
    "edit, code",
    [
        ({"auto_map": {"AutoModel": "x.Y"}}, "REMOTE_CODE"),
        ({"text_config": {"vocab_size": 16, "auto_map": {}}}, "REMOTE_CODE"),
        ({"quantization_config": {"quant_method": "gptq"}}, "QUANTIZED"),
        ({"text_config": {"vocab_size": 16, "quantization_config": {}}}, "QUANTIZED"),
        ({"compression_config": {"format": "int-quantized"}}, "QUANTIZED"),
        ({"vocab_size": 15}, "VOCAB_SIZE"),
        ({"vocab_size": None}, "VOCAB_SIZE"),
        ({"text_config": {"vocab_size": 17}}, "VOCAB_SIZE"),
        ({"vocab_size": True}, "CONFIG_INVALID"),
        ({"vocab_size": "16"}, "CONFIG_INVALID"),
        ({"text_config": "yes"}, "CONFIG_INVALID"),
        ({"model_type": None}, "ARCHITECTURE"),
        ({"model_type": "my_secret_arch"}, "ARCHITECTURE"),
        ({"model_type": "clip"}, "ARCHITECTURE"),  # a transformers model, not a causal LM
        ({"architectures": "Qwen3ForCausalLM"}, "ARCHITECTURE"),
        ({"architectures": ["os.system"]}, "ARCHITECTURE"),
    ],
)
def test_config_rules(edit, code):
    assert code_of(check_config, {**GOOD_CONFIG, **edit}, LIMITS) == code


# -- safetensors headers -----------------------------------------------------------------


def entry(dtype="BF16", shape=(2,), begin=0, end=4):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


def parse(header, data_len, extra=b""):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return parse_header(raw + extra, "m.safetensors", 8 + len(raw) + len(extra) + data_len)


def test_parse_valid_header_with_padding_metadata_and_empty_tensor():
    header = {"__metadata__": {"format": "pt"}, "a": entry(), "b": entry("F16", (2, 3), 4, 16), "e": entry("BF16", (0, 4), 16, 16)}
    parsed = parse(header, 16, extra=b"   ")
    assert [t.name for t in parsed.tensors] == ["a", "b", "e"] and parsed.tensors[1].numel == 6


@pytest.mark.parametrize(
    "header, data_len, code",
    [
        (b"\xff{", 0, "HEADER_INVALID"),
        (b"[]", 0, "HEADER_INVALID"),
        (b" {}", 0, "HEADER_INVALID"),
        (b"{", 0, "HEADER_INVALID"),
        ({}, 0, "HEADER_INVALID"),
        ({"__metadata__": {"a": 1}, "a": entry()}, 4, "HEADER_METADATA"),
        ({"": entry()}, 4, "HEADER_INVALID"),
        ({"a": {**entry(), "extra": 1}}, 4, "HEADER_INVALID"),
        ({"a": entry(dtype="Q4")}, 4, "HEADER_INVALID"),
        ({"a": entry(shape=(-2,))}, 4, "HEADER_INVALID"),
        ({"a": entry(shape=(True,))}, 4, "HEADER_INVALID"),
        ({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0]}}, 4, "HEADER_INVALID"),
        ({"a": entry(begin=4, end=0)}, 4, "HEADER_INVALID"),
        ({"a": entry(end=6)}, 6, "HEADER_INVALID"),  # 2 bf16 need 4 bytes
        ({"a": entry(), "b": entry(begin=2, end=6)}, 6, "HEADER_INVALID"),  # overlap
        ({"a": entry(), "b": entry(begin=6, end=10)}, 10, "HEADER_INVALID"),  # hole
        ({"a": entry()}, 5, "HEADER_INVALID"),  # trailing byte
        ({"a": entry(), "b": entry(begin=4, end=8)}, 6, "HEADER_INVALID"),  # truncated
        (b'{"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}, "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}', 4, "DUPLICATE_TENSOR"),
    ],
)
def test_header_rules(header, data_len, code):
    assert code_of(parse, header, data_len) == code


def test_header_length_is_checked_before_reading():
    assert header_length(struct.pack("<Q", 100), "m", 200, 1000) == 100
    for prefix, size in ((struct.pack("<Q", 100), 50), (struct.pack("<Q", 1), 50), (struct.pack("<Q", 10**10), 10**11), (b"\0" * 4, 4)):
        assert code_of(header_length, prefix, "m", size, 1000) == "HEADER_INVALID"


def headers_of(*files):
    out = []
    for i, tensors in enumerate(files):
        position, header = 0, {}
        for name, dtype, shape in tensors:
            size = int(np.prod(shape)) * {"BF16": 2, "F16": 2, "F32": 4, "I8": 1, "U8": 1}[dtype]
            header[name] = entry(dtype, shape, position, position + size)
            position += size
        raw = json.dumps(header).encode()
        out.append(parse_header(raw, f"s{i}.safetensors", 8 + len(raw) + position))
    return out


EMBED = ("model.embed_tokens.weight", "BF16", (16, 8))
HEAD = ("lm_head.weight", "BF16", (16, 8))


def test_tensor_rules_pass_and_count_params():
    summary = check_tensors(headers_of([EMBED], [HEAD, ("model.norm.weight", "F16", (8,))]), LIMITS, hidden_size=8)
    assert summary.params == 16 * 8 * 2 + 8 and summary.dtypes == ("BF16", "F16")


@pytest.mark.parametrize(
    "files, weight_map, hidden, code",
    [
        ([[EMBED], [EMBED]], None, None, "DUPLICATE_TENSOR"),
        ([[EMBED], [HEAD]], {"model.embed_tokens.weight": "s1.safetensors", "lm_head.weight": "s1.safetensors"}, None, "WEIGHT_INDEX"),
        ([[EMBED]], {"model.embed_tokens.weight": "s0.safetensors", "ghost": "s0.safetensors"}, None, "WEIGHT_INDEX"),
        ([[EMBED, ("model.layers.0.q_proj.qweight", "BF16", (2,))]], None, None, "QUANTIZED"),
        ([[EMBED, ("model.layers.0.q_proj.weight.quant_state.bitsandbytes__nf4", "BF16", (2,))]], None, None, "QUANTIZED"),
        ([[EMBED, ("model.layers.0.q_proj.weight", "U8", (2,))]], None, None, "QUANTIZED"),
        ([[EMBED, ("model.norm.weight", "F32", (8,))]], None, None, "DTYPE"),
        ([[("model.embed_tokens.weight", "BF16", (16, 80))]], None, None, "TOO_MANY_PARAMS"),
        ([[("model.norm.weight", "BF16", (8,))]], None, None, "EMBEDDING_SHAPE"),
        ([[("model.embed_tokens.weight", "BF16", (15, 8))]], None, None, "EMBEDDING_SHAPE"),
        ([[("model.embed_tokens.weight", "BF16", (16,))]], None, None, "EMBEDDING_SHAPE"),
        ([[EMBED, ("lm_head.weight", "BF16", (8, 16))]], None, None, "EMBEDDING_SHAPE"),
        ([[EMBED]], None, 4, "EMBEDDING_SHAPE"),
    ],
)
def test_tensor_rules(files, weight_map, hidden, code):
    assert code_of(check_tensors, headers_of(*files), LIMITS, weight_map, hidden) == code


# -- hashes ------------------------------------------------------------------------------


def write(path, tensors, metadata=None):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


@pytest.fixture
def state():
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(64, 8, generator=g).to(torch.bfloat16),
        "b.weight": torch.randn(3, 5, generator=g).to(torch.float16),
        "c.bias": torch.randn(7, generator=g).to(torch.bfloat16),
    }


def test_content_hash_ignores_sharding_order_and_metadata(tmp_path, state):
    one = scan_weights([write(tmp_path / "one.safetensors", state)])
    two = scan_weights(
        [write(tmp_path / "x.safetensors", {"c.bias": state["c.bias"]}, {"k": "v"}),
         write(tmp_path / "y.safetensors", {k: state[k] for k in ("b.weight", "a.weight")})]
    )
    assert one.content_hash == two.content_hash and one.params == two.params == 64 * 8 + 15 + 7
    small_chunks = scan_weights([tmp_path / "one.safetensors"], chunk_bytes=64)
    assert small_chunks.content_hash == one.content_hash


@pytest.mark.parametrize("change", ["rename", "reshape", "dtype", "byte"])
def test_content_hash_sees_names_shapes_dtypes_and_bytes(tmp_path, state, change):
    base = scan_weights([write(tmp_path / "base.safetensors", state)]).content_hash
    other = dict(state)
    if change == "rename":
        other["a.weight2"] = other.pop("a.weight")
    elif change == "reshape":
        other["a.weight"] = other["a.weight"].reshape(8, 64)
    elif change == "dtype":
        other["b.weight"] = other["b.weight"].view(torch.bfloat16)  # same bytes, other dtype
    else:
        other["c.bias"] = other["c.bias"].clone()
        other["c.bias"][-1] += 1
    assert scan_weights([write(tmp_path / "other.safetensors", other)]).content_hash != base


@pytest.mark.parametrize(
    "dtype, bad",
    [
        (torch.bfloat16, float("nan")),
        (torch.bfloat16, float("-inf")),
        (torch.float16, float("inf")),
        (torch.float16, float("nan")),
        (torch.float32, float("nan")),
        (torch.float64, float("-inf")),
    ],
)
def test_nonfinite_scan_finds_the_last_element_across_chunks(tmp_path, dtype, bad):
    t = torch.full((1000,), torch.finfo(dtype).max, dtype=dtype)  # the largest finite values are fine
    t[-2] = -torch.finfo(dtype).max
    assert scan_weights([write(tmp_path / "ok.safetensors", {"t": t})], chunk_bytes=64).nonfinite == ()
    t[-1] = bad
    assert scan_weights([write(tmp_path / "bad.safetensors", {"t": t})], chunk_bytes=64).nonfinite == ("t",)


def test_scan_rejects_a_tensor_in_two_files(tmp_path, state):
    files = [write(tmp_path / "1.safetensors", state), write(tmp_path / "2.safetensors", {"c.bias": state["c.bias"]})]
    with pytest.raises(CheckFailure) as e:
        scan_weights(files)
    assert e.value.code == "DUPLICATE_TENSOR"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shapes=st.dictionaries(
        st.text(alphabet="abcdefghij._", min_size=1, max_size=8),
        st.lists(st.integers(0, 5), min_size=0, max_size=3),
        min_size=1,
        max_size=6,
    ),
    split=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_any_safetensors_file_parses_and_hashes_the_same_resharded(tmp_path_factory, shapes, split, seed):
    g = torch.Generator().manual_seed(seed)
    state = {name: torch.randn(shape or [], generator=g).to(torch.bfloat16) for name, shape in shapes.items()}
    root = tmp_path_factory.mktemp("prop")
    whole = scan_weights([write(root / "whole.safetensors", state)])
    names = sorted(state)
    parts = [names[i::split] for i in range(split)]
    files = [write(root / f"p{i}.safetensors", {n: state[n] for n in part}) for i, part in enumerate(parts) if part]
    assert scan_weights(files).content_hash == whole.content_hash
    assert whole.params == sum(t.numel() for t in state.values())


def test_files_hash_covers_the_whole_set():
    m = meta({"a.safetensors": 1, "b.safetensors": 1, "c.safetensors": 1})
    ab, ids = files_hash(m, ["a.safetensors", "b.safetensors"])
    assert files_hash(m, ["b.safetensors", "a.safetensors"])[0] == ab and len(ids) == 2
    assert files_hash(m, ["a.safetensors"])[0] != ab  # one shared shard is not the same set
    assert files_hash(m, ["a.safetensors", "b.safetensors", "c.safetensors"])[0] != ab
    git_only = RepoMetadata("a/b", REV, (RepoFile("a.safetensors", 1, blob_id="f" * 40),))
    assert files_hash(git_only, ["a.safetensors"])[1] == ("git:" + "f" * 40,)
    unknown = RepoMetadata("a/b", REV, (RepoFile("a.safetensors", 1),))
    assert files_hash(unknown, ["a.safetensors"]) == (None, ())


# -- duplicate registry ------------------------------------------------------------------


def test_registry_earliest_block_owns_a_hash():
    alice, bob, carol = Claim(100, "5Alice", "a/m@" + REV), Claim(90, "5Bob", "b/m@" + REV), Claim(120, "5Carol", "c/m@" + REV)
    r0 = DuplicateRegistry()
    r1, owner, displaced = r0.claim("h", alice)
    assert (owner, displaced) == (alice, None) and r0.owner("h") is None  # immutable
    r2, owner, displaced = r1.claim("h", carol)
    assert (owner, displaced, r2) == (alice, None, r1)
    r3, owner, displaced = r2.claim("h", bob)  # checked later, committed earlier: bob owns it
    assert (owner, displaced) == (bob, alice)
    assert r3.earlier_owner("h", alice) == bob and r3.earlier_owner("h", bob) is None
    assert r3.copy_lookup(carol)("h") == bob.commitment and r3.copy_lookup(bob)("h") is None
    assert r3.copy_lookup(carol)("other") is None
    again, owner, _ = r3.claim("h", bob)
    assert owner == bob and again.owner("h") == bob


def draw_reference(block_hash: str, hotkey: str) -> str:
    """The spec's same-block draw, written out independently of distil.precedence."""
    import hashlib

    return hashlib.sha256(("distil-tie|1|" + block_hash.lower().removeprefix("0x") + "|" + hotkey).encode()).hexdigest()


def block_where_the_draw_reverses(first: str, second: str) -> str:
    """A mock block hash whose draw puts `second` before `first` (the reverse of their ss58 order)."""
    from template.mock_chain import mock_block_hash

    return next(h for h in map(mock_block_hash, range(1000))
                if draw_reference(h, second) < draw_reference(h, first))


def test_registry_ties_in_one_block_go_by_the_blocks_draw_not_the_ss58_order():
    """Spec v3 (issue 23 §2): a thief's hotkey ground to sort first gains nothing in the same block."""
    block_hash = block_where_the_draw_reverses("5Aaa", "5Bbb")
    thief, victim = Claim(100, "5Aaa", "x/m@" + REV, block_hash), Claim(100, "5Bbb", "y/m@" + REV, block_hash)
    assert "5Aaa" < "5Bbb"  # spec v2 would have given the hash to the thief
    registry, _, _ = DuplicateRegistry().claim("h", victim)
    after, owner, displaced = registry.claim("h", thief)
    assert (owner, displaced, after) == (victim, None, registry)
    registry, _, _ = DuplicateRegistry().claim("h", thief)  # checked in the other order: the same owner
    registry, owner, displaced = registry.claim("h", victim)
    assert (owner, displaced) == (victim, thief)
    assert victim.precedes(thief) and not thief.precedes(victim)
    # the earlier block still owns, whatever the draw
    earlier = Claim(99, "5Zzz", "z/m@" + REV, block_where_the_draw_reverses("5Zzz", "5Aaa"))
    assert earlier.precedes(victim) and earlier.precedes(thief)
    # the draw moves with the block's hash: neither hotkey is always first
    from template.mock_chain import mock_block_hash

    wins = sum(Claim(7, "5Aaa", "x/m@" + REV, mock_block_hash(b)).precedes(Claim(7, "5Bbb", "y/m@" + REV, mock_block_hash(b)))
               for b in range(200))
    assert wins == sum(draw_reference(mock_block_hash(b), "5Aaa") < draw_reference(mock_block_hash(b), "5Bbb")
                       for b in range(200))
    assert 60 < wins < 140


def test_registry_ties_without_a_block_hash_keep_spec_v2s_hotkey_order():
    x, y = Claim(100, "5Bbb", "x/m@" + REV), Claim(100, "5Aaa", "y/m@" + REV)
    registry, _, _ = DuplicateRegistry().claim("h", x)
    registry, owner, displaced = registry.claim("h", y)
    assert (owner, displaced) == (y, x)
    z = Claim(100, "5Aaa", "a/m@" + REV)
    assert z.precedes(y) and not y.precedes(z)


def test_registry_json_round_trip_and_bad_claims():
    registry, _, _ = DuplicateRegistry().claim("sha256:1", Claim(5, "5K", "a/b@" + REV))
    registry, _, _ = registry.claim("sha256:2", Claim(6, "5L", "c/d@" + REV, "0x" + "ab" * 32))
    data = json.loads(json.dumps(registry.to_json()))
    assert DuplicateRegistry.from_json(data).owners == registry.owners
    data["owners"]["sha256:1"] = data["owners"]["sha256:1"][:3]  # written before spec v3: no block hash
    assert DuplicateRegistry.from_json(data).owner("sha256:1") == Claim(5, "5K", "a/b@" + REV)
    with pytest.raises(ValueError):
        DuplicateRegistry.from_json({"version": 2, "owners": {}})
    for bad in ((-1, "5K", "c"), (True, "5K", "c"), (1, "", "c"), (1, "5K", ""), (1, "5K", "c", ""), (1, "5K", "c", 7)):
        with pytest.raises(ValueError):
            Claim(*bad)


# -- publication verdict -----------------------------------------------------------------


@pytest.mark.parametrize(
    "commit, now, grace, seen, verdict",
    [
        (1000, 1000, 7200, False, "PENDING"),
        (1000, 8199, 7200, False, "PENDING"),
        (1000, 8200, 7200, False, "INVALID"),
        (1000, 100_000, 7200, False, "INVALID"),
        (1000, 900, 7200, False, "PENDING"),  # the chain view lags the commit block
        (1000, 1000, 0, False, "INVALID"),  # no grace at all
        (1000, 1001, 7200, True, "REMOVED"),
        (1000, 100_000, 7200, True, "REMOVED"),
        (0, 0, 1, False, "PENDING"),
    ],
)
def test_publication_verdict(commit, now, grace, seen, verdict):
    assert publication_verdict(commit, now, grace, seen) == verdict


def test_publication_verdict_default_grace_is_one_day_and_inputs_are_checked():
    assert publication_verdict(0, 7199) == "PENDING" and publication_verdict(0, 7200) == "INVALID"
    for args in ((-1, 0), (0, -1), (0, 0, -5), (1.5, 2), (0, 0, 10, "yes")):
        with pytest.raises(ValueError):
            publication_verdict(*args)


# -- results and codes -------------------------------------------------------------------


def test_check_result_invariants_and_json():
    ok = CheckResult(ok=True, reason=None, code=None, detail="fine", params=3, content_hash="sha256:" + "0" * 64)
    assert ok.to_json() == {"ok": True, "reason": None, "code": None, "detail": "fine", "params": 3, "content_hash": "sha256:" + "0" * 64}
    bad = CheckResult.failure("DTYPE", "F32")
    assert (bad.reason, bad.code) == ("INVALID", "DTYPE")
    with pytest.raises(ValueError):
        CheckResult(ok=True, reason="INVALID", code="DTYPE", detail="")
    with pytest.raises(ValueError):
        CheckResult(ok=False, reason=None, code=None, detail="")
    with pytest.raises(ValueError):
        CheckResult(ok=False, reason="COPY", code="DTYPE", detail="")
    with pytest.raises(KeyError):
        CheckFailure("NO_SUCH_CODE", "x")
    with pytest.raises(ValueError):
        CheckLimits(max_params=0)


def test_every_code_is_upper_case_and_documented():
    docs = (ROOT / "docs" / "checks.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (\w+) \|", docs, re.M))
    assert rows == {code: c.reason for code, c in CODES.items()}
    for code in CODES:
        assert re.fullmatch(r"[A-Z][A-Z_]+", code) and reason_of(code)


# -- tokenizer ---------------------------------------------------------------------------


def test_tokenizer_reference_comparisons(teacher_dir, teacher_reference):
    tokenizer = load_tokenizer(teacher_dir)
    compare_to_reference(tokenizer, teacher_reference)
    longer = TokenizerReference("t", teacher_reference.vocab_length + 1, teacher_reference.encodings)
    assert code_of(compare_to_reference, tokenizer, longer) == "TOKENIZER_MISMATCH"
    shifted = TokenizerReference("t", teacher_reference.vocab_length, ((1, 2, 3),) + teacher_reference.encodings[1:])
    with pytest.raises(CheckFailure) as e:
        compare_to_reference(tokenizer, shifted)
    assert e.value.code == "TOKENIZER_MISMATCH" and "Hello, world!" in e.value.detail


def test_load_reference_from_a_store(teacher_dir, teacher_reference):
    store = LocalModelStore({"Qwen/teacher": teacher_dir})
    assert load_reference("Qwen/teacher", store=store).encodings == teacher_reference.encodings
    pinned = f"Qwen/teacher@{store.resolve_revision('Qwen/teacher')}"
    assert load_reference(pinned, store=store).source == pinned
    with pytest.raises(ValueError, match="no model store"):
        load_reference("Qwen/teacher")


# -- pipeline and integrity failure handling with a local store --------------------------


class BrokenStore(ModelStore):
    def __init__(self, exc):
        self.exc = exc

    def resolve_revision(self, repo):
        raise self.exc

    def repo_metadata(self, commitment):
        raise self.exc

    def read_range(self, commitment, filename, start, end):
        raise self.exc

    def download(self, commitment, allow_patterns=None, progress=False, expected_bytes=0):
        raise self.exc


@pytest.mark.parametrize(
    "exc, reason, code",
    [
        (RuntimeError("bug"), "TRANSIENT", "CHECKER_ERROR"),
        (MemoryError(), "TRANSIENT", "CHECKER_OUT_OF_MEMORY"),
        (HubError("odd answer"), "TRANSIENT", "HUB_ERROR"),
        (PermissionError(13, "Permission denied", "/cache/x"), "TRANSIENT", "LOCAL_IO_ERROR"),
    ],
)
def test_checker_failures_are_transient_never_invalid(teacher_reference, exc, reason, code):
    result = check_commitment(BrokenStore(exc), Commitment("a/b", REV), teacher=teacher_reference)
    assert (result.ok, result.reason, result.code) == (False, reason, code)
    assert check_integrity(BrokenStore(exc), Commitment("a/b", REV)).status == "TRANSIENT"


def test_local_store_unavailability_through_the_pipeline(valid_model, teacher_reference):
    store = LocalModelStore()
    commitment = Commitment("alice/tiny", store.add("alice/tiny", valid_model))
    store.set_unavailable("alice/tiny", "private")
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.reason, result.code) == ("UNAVAILABLE", "NOT_PUBLIC")
    assert check_integrity(store, commitment).status == "REMOVED"
    store.set_public("alice/tiny")
    store.fail_transient("alice/tiny")
    assert check_commitment(store, commitment, teacher=teacher_reference).code == "HUB_TRANSIENT"
    assert check_integrity(store, commitment).ok
    with pytest.raises(TypeError):
        check_commitment(store, commitment, teacher="Qwen/Qwen3.5-35B-A3B")


def test_check_flags_parse_into_limits():
    import argparse

    from distil.checks.args import add_check_args, limits_from_config
    from template.config import parse_config

    parser = argparse.ArgumentParser()
    add_check_args(parser)
    config = parse_config(parser, ["--checks.max_params", "1000", "--checks.public_grace_blocks", "10"])
    assert limits_from_config(config) == CheckLimits(max_params=1000)
    assert config.checks.public_grace_blocks == 10 and config.checks.teacher == "Qwen/Qwen3.5-35B-A3B"
    assert limits_from_config(parser.parse_args([])) == CheckLimits()
