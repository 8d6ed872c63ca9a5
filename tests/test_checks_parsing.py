"""Bounded parsing (issue 9 §2, §6): whatever a repo's JSON files or safetensors headers
hold, the checker neither crashes nor hangs; what cannot be parsed is the repo's fault
(INVALID with a code), decided before any weight byte is downloaded.

Each case runs through the real pipeline (`check_commitment`) over the local store; the
header-level ones also through the real huggingface_hub client against the local hub
server, which must serve no weight byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loguru import logger

from hub_server import HubServer
from model_builders import WEIGHTS, clone, edit_json, header_of, raw_safetensors, replace_file, reshard
from distil.checks import CheckLimits, check_commitment
from distil.checks.bounded_json import JsonBounds, JsonRejected, load_bounded_json
from distil.checks.codes import CODES, TRANSIENT, transient_scope
from distil.checks.pipeline import STEPS
from distil.checks.result import CheckFailure
from distil.checks.safetensors_header import parse_header
from distil.commitment import Commitment
from distil.hub import HuggingFaceStore, LocalModelStore
from distil.hub.store import ModelStore

DEEP = 100_000
INDEX = "model.safetensors.index.json"


# -- builders: (valid model dir, destination dir) -> None ------------------------------


def _inject(path: Path, fragment: str) -> None:
    """Insert `"x": <fragment>,` as the first member of the JSON object in `path`."""
    text = path.read_text()
    replace_file(path, "{" + '"x": ' + fragment + "," + text.lstrip()[1:])


def _json_edit(name: str, fragment: str, reshard_first: bool = False):
    def build(v: Path, d: Path):
        reshard(v, d, shards=2) if reshard_first else clone(v, d)
        _inject(d / name, fragment)

    return build


def deep_list_in(name: str, **kw):
    return _json_edit(name, "[" * DEEP + "]" * DEEP, **kw)


def deep_dict_in_config(v: Path, d: Path):
    clone(v, d)
    _inject(d / "config.json", '{"a":' * DEEP + "1" + "}" * DEEP)


def huge_integer_in(name: str):
    return _json_edit(name, "9" * 5000)


def huge_float_in_config(v, d):
    _json_edit("config.json", "1e999")(v, d)


def nan_in_config(v, d):
    _json_edit("config.json", "NaN")(v, d)


def infinity_in_config(v, d):
    _json_edit("config.json", "-Infinity")(v, d)


def duplicate_key_in_config(v: Path, d: Path):
    """Two vocab_size keys: Python keeps the last, another parser may keep the first."""
    _json_edit("config.json", '1, "vocab_size": 5')(v, d)


def non_utf8_config(v: Path, d: Path):
    clone(v, d)
    text = (d / "config.json").read_bytes()
    replace_file(d / "config.json", text.replace(b'"qwen3', b'"\xff\xfeqwen3', 1))


def lone_surrogate_in_tokenizer_config(v, d):
    _json_edit("tokenizer_config.json", '"\\udc80"')(v, d)


def config_is_a_list(v: Path, d: Path):
    clone(v, d)
    replace_file(d / "config.json", "[1, 2, 3]")


def tokenizer_json_not_json(v: Path, d: Path):
    clone(v, d)
    replace_file(d / "tokenizer.json", "{not json")


def _header_edit(edit):
    def build(v: Path, d: Path):
        header, data = header_of(v / WEIGHTS)
        clone(v, d, skip=(WEIGHTS,))
        raw = edit(header)
        (d / WEIGHTS).write_bytes(raw_safetensors(raw if isinstance(raw, bytes) else header, data))

    return build


def _rename_norm(header: dict, new: str) -> None:
    header[new] = header.pop("model.norm.weight")


lone_surrogate_tensor_name = _header_edit(lambda h: _rename_norm(h, "model.norm.\ud800weight"))
dtype_is_a_list = _header_edit(lambda h: h["model.norm.weight"].update(dtype=["BF16"]))
huge_offset = _header_edit(lambda h: json.dumps(h).replace('"data_offsets": [0,', '"data_offsets": [1' + "0" * 5000 + ",", 1).encode())
deep_header = _header_edit(lambda h: json.dumps(h).replace("{", '{"x": ' + "[" * DEEP + "]" * DEEP + ",", 1).encode())
header_is_a_list = _header_edit(lambda h: b"[" + b" " * (len(json.dumps(h)) - 2) + b"]")
metadata_over_64k = _header_edit(lambda h: h.update(__metadata__={"format": "pt", "payload": "A" * 70_000}))
metadata_not_strings = _header_edit(lambda h: h.update(__metadata__={"format": {"nested": "pt"}}))


def _empty_tensor(shape):
    """A zero-element tensor (no data bytes) whose other dimensions overflow torch's int64
    sizes or strides: the header is consistent, but no tensor of that shape can exist."""
    def edit(header):
        end = max(e["data_offsets"][1] for k, e in header.items() if k != "__metadata__")
        header["model.extra.weight"] = {"dtype": "BF16", "shape": shape, "data_offsets": [end, end]}
    return _header_edit(edit)


empty_tensor_dim_over_int64 = _empty_tensor([0, 2**63])
empty_tensor_strides_over_int64 = _empty_tensor([0, 2**40, 2**40])


CASES = [
    (deep_list_in("config.json"), "MALFORMED_JSON"),
    (deep_list_in("tokenizer_config.json"), "MALFORMED_JSON"),
    (deep_list_in(INDEX, reshard_first=True), "MALFORMED_JSON"),
    (deep_list_in("tokenizer.json"), "MALFORMED_JSON"),
    (deep_list_in("generation_config.json"), "MALFORMED_JSON"),
    (deep_dict_in_config, "MALFORMED_JSON"),
    (huge_integer_in("config.json"), "MALFORMED_JSON"),
    (huge_integer_in("tokenizer.json"), "MALFORMED_JSON"),
    (huge_float_in_config, "MALFORMED_JSON"),
    (nan_in_config, "MALFORMED_JSON"),
    (infinity_in_config, "MALFORMED_JSON"),
    (duplicate_key_in_config, "MALFORMED_JSON"),
    (non_utf8_config, "MALFORMED_JSON"),
    (lone_surrogate_in_tokenizer_config, "MALFORMED_JSON"),
    (tokenizer_json_not_json, "MALFORMED_JSON"),
    (config_is_a_list, "CONFIG_INVALID"),
    (lone_surrogate_tensor_name, "HEADER_INVALID"),
    (dtype_is_a_list, "HEADER_INVALID"),
    (huge_offset, "HEADER_INVALID"),
    (deep_header, "HEADER_INVALID"),
    (header_is_a_list, "HEADER_INVALID"),
    (metadata_over_64k, "HEADER_METADATA"),
    (metadata_not_strings, "HEADER_METADATA"),
    (empty_tensor_dim_over_int64, "HEADER_INVALID"),
    (empty_tensor_strides_over_int64, "HEADER_INVALID"),
]
IDS = [
    "deep_list_config", "deep_list_tokenizer_config", "deep_list_index", "deep_list_tokenizer_json",
    "deep_list_generation_config", "deep_dict_config", "5000_digit_int_config", "5000_digit_int_tokenizer_json",
    "huge_float", "nan", "infinity", "duplicate_key", "non_utf8", "lone_surrogate_tokenizer_config",
    "tokenizer_json_not_json", "config_is_a_list", "lone_surrogate_tensor_name", "dtype_is_a_list",
    "5000_digit_offset", "deep_header", "header_is_a_list", "metadata_over_64k", "metadata_not_strings",
    "empty_tensor_dim_over_int64", "empty_tensor_strides_over_int64",
]


def _no_download(result) -> None:
    steps = {s.name: s for s in result.steps}
    assert steps["download"].status == "skip", steps["download"]
    failed = [s.name for s in result.steps if s.status == "fail"]
    assert len(failed) == 1 and STEPS.index(failed[0]) < STEPS.index("download"), failed


@pytest.mark.parametrize("build, code", CASES, ids=IDS)
def test_unparseable_repo_files_are_the_repos_fault_before_download(build, code, valid_model, teacher_reference, tmp_path):
    path = tmp_path / "model"
    build(valid_model, path)
    store = LocalModelStore()
    commitment = Commitment("mallory/bomb", store.add("mallory/bomb", path))
    result = check_commitment(store, commitment, teacher=teacher_reference)
    assert (result.reason, result.code) == ("INVALID", code), result.detail
    assert len(result.detail) <= 1000
    _no_download(result)
    assert ("download", "mallory/bomb") not in store.calls


HUB_CASES = [c for c, i in zip(CASES, IDS) if i in {
    "deep_list_config", "5000_digit_int_config", "deep_list_index", "deep_list_tokenizer_json",
    "lone_surrogate_tensor_name", "5000_digit_offset", "metadata_over_64k",
}]


@pytest.mark.parametrize("build, code", HUB_CASES, ids=[b.__name__ if hasattr(b, "__name__") else "" for b, _ in HUB_CASES])
def test_through_the_hub_no_weight_byte_is_served(build, code, valid_model, teacher_reference, tmp_path):
    path = tmp_path / "model"
    build(valid_model, path)
    with HubServer() as hub:
        commitment = Commitment("mallory/bomb", hub.add_repo("mallory/bomb", path))
        store = HuggingFaceStore(endpoint=hub.endpoint, token=False, cache_dir=tmp_path / "cache")
        result = check_commitment(store, commitment, teacher=teacher_reference)
        assert (result.reason, result.code) == ("INVALID", code), result.detail
        _no_download(result)
        assert hub.weight_bytes_served() == 0


def test_a_long_string_is_judged_and_the_detail_stays_short(valid_model, teacher_reference, tmp_path):
    path = clone(valid_model, tmp_path / "model")
    edit_json(path / "config.json", lambda c: c.update(model_type="q" * 3_000_000))
    store = LocalModelStore()
    result = check_commitment(store, Commitment("m/long", store.add("m/long", path)), teacher=teacher_reference)
    assert (result.reason, result.code) == ("INVALID", "ARCHITECTURE")
    assert len(result.detail) <= 1000 and all(len(s.detail) <= 1000 for s in result.steps)


def test_metadata_of_all_shards_together_is_capped(valid_model, teacher_reference, tmp_path):
    """Each shard's metadata is small; together over the cap (here lowered to 32 bytes)."""
    path = reshard(valid_model, tmp_path / "sharded", shards=3)  # each: {"format": "pt", "shard": "i"}
    store = LocalModelStore()
    commitment = Commitment("m/meta", store.add("m/meta", path))
    result = check_commitment(store, commitment, CheckLimits(max_metadata_bytes=40), teacher=teacher_reference)
    assert (result.reason, result.code) == ("INVALID", "HEADER_METADATA") and "add up to" in result.detail
    _no_download(result)


def test_a_tokenizer_regex_that_panics_the_tokenizers_library_is_the_repos_fault(valid_model, teacher_reference, tmp_path):
    """A pre-tokeniser regex with catastrophic backtracking hits Oniguruma's retry limit on the
    battery's "aaaa..." string, and the Rust tokenizers library panics: a pyo3 PanicException,
    a BaseException that no `except Exception` catches. The pipeline now refuses the file
    before anything runs it (its pre-tokenizer is not the teacher's: TOKENIZER_PIPELINE); the
    battery itself still turns the panic into the repo's verdict, not an exception out of the
    check (which would stop the validator, on every restart)."""
    from distil.checks.tokenizer import compare_to_reference, load_tokenizer

    path = clone(valid_model, tmp_path / "model", skip=("tokenizer.json",))
    tok = json.loads((valid_model / "tokenizer.json").read_text())
    bomb = {"type": "Split", "pattern": {"Regex": "((a+)+)+[bc]"}, "behavior": "Isolated", "invert": False}
    tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [bomb, tok["pre_tokenizer"]]}
    (path / "tokenizer.json").write_text(json.dumps(tok))
    store = LocalModelStore()
    result = check_commitment(store, Commitment("m/regex", store.add("m/regex", path)), teacher=teacher_reference)
    assert (result.reason, result.code) == ("INVALID", "TOKENIZER_PIPELINE"), result.detail
    _no_download(result)
    with pytest.raises(CheckFailure) as e:
        compare_to_reference(load_tokenizer(path), teacher_reference)
    assert e.value.code == "TOKENIZER_INVALID" and "panic" in e.value.detail


# -- the bounded loader itself ---------------------------------------------------------


BOUNDS = JsonBounds(max_bytes=1 << 20)


@pytest.mark.parametrize(
    "data, why",
    [
        (b"[" * 65 + b"]" * 65, "nested 65 levels"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "nested 65 levels"),
        (b"[" * DEEP, "nested 100,000 levels"),  # unterminated too
        (b"[" + b"1" * 101 + b"]", "101-character number"),
        (b"[-" + b"0" * 50 + b"." + b"5" * 60 + b"]", "112-character number"),
        (b"[1e400]", "overflows"),
        (b"[NaN]", "NaN"),
        (b'{"a": 1, "a": 2}', "repeats the key 'a'"),
        (b'["\\ud800"]', "lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
        (b"\xc3\x28", "not UTF-8"),
        (b'{"a": [1, 2}', "not valid JSON"),
        (b"x" * ((1 << 20) + 1), "at most 1,048,576"),
    ],
)
def test_bounded_loader_refuses_with_a_reason(data, why):
    with pytest.raises(JsonRejected) as e:
        load_bounded_json(data, BOUNDS)
    assert why in e.value.reason


def test_bounded_loader_is_exact_on_strings_that_look_like_structure():
    """Brackets, quotes and digits inside strings do not count; escaped quotes do not end them."""
    tricky = {"a": "[[[[" * 100 + '\\"' + "9" * 500, "b": ['"]]]]}}'] * 3, "emoji": "\U0001f600 \u00e9", "n": -1.5e-300}
    data = json.dumps(tricky).encode()
    assert load_bounded_json(data, BOUNDS) == tricky
    assert load_bounded_json(json.dumps(tricky, ensure_ascii=False).encode(), BOUNDS) == tricky
    nested = json.loads("[" * 64 + "]" * 64)
    assert load_bounded_json(b"[" * 64 + b"]" * 64, BOUNDS) == nested


def test_bounded_loader_value_count_and_an_unterminated_string_stay_linear():
    with pytest.raises(JsonRejected, match="values"):
        load_bounded_json(b"[" + b"0," * 2000 + b"0]", JsonBounds(max_bytes=1 << 20, max_values=1000))
    # A quote that never closes, followed by many escaped quotes: rejected, not retried per quote.
    with pytest.raises(JsonRejected, match="not valid JSON"):
        load_bounded_json(b'"' + b'\\"' * 500_000, JsonBounds(max_bytes=1 << 21))


def test_header_rank_and_offsets_are_bounded():
    entry = {"dtype": "BF16", "shape": [1] * 9, "data_offsets": [0, 2]}
    raw = json.dumps({"a": entry}).encode()
    with pytest.raises(CheckFailure, match="at most 8 dimensions") as e:
        parse_header(raw, "m.safetensors", 8 + len(raw) + 2)
    assert e.value.code == "HEADER_INVALID"
    big = {"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 1 << 64]}}
    raw = json.dumps(big).encode()
    with pytest.raises(CheckFailure, match="invalid data_offsets"):
        parse_header(raw, "m.safetensors", 8 + len(raw) + 4)


# -- what the validator learns from a transient failure --------------------------------


def test_every_transient_code_says_whose_trouble_it_is():
    scopes = {code: transient_scope(code) for code, c in CODES.items() if c.reason == TRANSIENT}
    assert scopes == {
        "HUB_TRANSIENT": "hub",
        "HUB_ERROR": "hub",
        "CHECKER_ERROR": "repo",
        "LOCAL_IO_ERROR": "local",
        "PRECHECK_BUDGET": "local",  # our schedule: never a strike
        "CHECKER_OUT_OF_MEMORY": "local",
        "CHECK_TIMEOUT": "repo",
        "CHECKER_STOPPED": "local",
    }
    assert transient_scope("MALFORMED_JSON") is None


class _CrashingStore(ModelStore):
    def resolve_revision(self, repo):
        raise AssertionError

    def repo_metadata(self, commitment):
        raise RuntimeError("a bug the repo triggers")

    def read_range(self, commitment, filename, start, end):
        raise AssertionError

    def download(self, commitment, allow_patterns=None, progress=False, expected_bytes=0):
        raise AssertionError


def test_a_checker_crash_logs_one_line_and_the_traceback_only_at_debug(teacher_reference):
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, str(m))), level="DEBUG", format="{message}")
    try:
        result = check_commitment(_CrashingStore(), Commitment("a/b", "0" * 40), teacher=teacher_reference)
    finally:
        logger.remove(sink)
    assert (result.reason, result.code, result.transient_scope) == ("TRANSIENT", "CHECKER_ERROR", "repo")
    from distil.checks.cli import exit_code
    from distil.checks.result import CheckResult

    # the repo's own files made the check fail and validators strike it until the model is refused:
    # a verdict, exit 1 (docs/cli.md); the hub's or our own trouble is not one, exit 2
    assert exit_code(result) == 1
    assert [exit_code(CheckResult.failure(code, "x")) for code in ("HUB_TRANSIENT", "LOCAL_IO_ERROR", "NOT_PUBLIC")] == [2, 2, 1]
    above_debug = [text for level, text in lines if level != "DEBUG"]
    assert not any("Traceback" in text for text in above_debug), above_debug
    assert sum("crashed: RuntimeError: a bug the repo triggers" in text for text in above_debug) == 1
    assert any("Traceback" in text for level, text in lines if level == "DEBUG")


class PanicException(BaseException):
    """Named as pyo3's: a Rust library's panic reaches Python as a BaseException."""


class _PanickingStore(_CrashingStore):
    def repo_metadata(self, commitment):
        raise PanicException("a Rust library panicked")


def test_a_rust_panic_in_any_step_is_a_checker_error_not_an_escape(teacher_reference):
    result = check_commitment(_PanickingStore(), Commitment("a/b", "0" * 40), teacher=teacher_reference)
    assert (result.reason, result.code) == ("TRANSIENT", "CHECKER_ERROR")
    assert "PanicException: a Rust library panicked" in result.detail
