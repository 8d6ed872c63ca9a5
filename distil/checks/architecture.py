"""The architecture guard: does `config.json` describe exactly the tensors the files hold?

`from_pretrained` builds the model from `config.json` and creates every weight the files
lack, so without this guard memory grows with the config, not with the repo (a 64 MB repo
whose config says 48 layers, or the multimodal `qwen3_5_moe` wrapper, allocates gigabytes).
Before any weight exists, the guard

1. bounds the config itself: a layer count larger than the number of tensors in the files
   is refused before the config object is built (config classes expand per-layer lists);
2. builds the model on the `meta` device (shapes only, no storage) while counting what it
   registers, and stops early when the build outgrows the files or the cap;
3. refuses a model above the parameter cap (ARCH_TOO_LARGE);
4. maps the checkpoint's tensor names and shapes through transformers' own conversion
   mapping (the one `from_pretrained` uses: per-expert MoE tensors fused, the multimodal
   `model.language_model.` prefix removed), on meta tensors, and refuses tensors the model
   expects but the files lack (ARCH_MISSING_TENSORS), tensors the files hold but the model
   does not use (ARCH_UNUSED_TENSORS) and shapes that differ (ARCH_SHAPE_MISMATCH), then
   checks the parameter totals agree. Tied embeddings may be stored once or twice.

Unused tensors are refused even where transformers would ignore them silently (its
`_keys_to_ignore_on_load_unexpected`, e.g. `model.visual.*` and `mtp.*` for Qwen3.5): data
the scored model never reads must not ride along. The only allow-list is the teacher's
(`TEACHER_EXTRA_PREFIXES`): the hub checkpoint of Qwen3.5-35B-A3B is the multimodal model,
whose vision and multi-token-prediction weights the causal LM does not load.

Memory: the guard holds the config, the meta model (Python objects only, at most
`MAX_BUILD_OBJECTS` registrations) and one meta tensor per file tensor; about 100 MiB for
the real teacher, a few MiB for a student.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from math import prod
from typing import Mapping

from distil.checks.bounded_json import clip
from distil.checks.result import CheckFailure

# The teacher's hub checkpoint is the multimodal Qwen3_5MoeForConditionalGeneration; the
# causal LM does not load its vision tower nor its multi-token-prediction head.
TEACHER_EXTRA_PREFIXES = ("model.visual.", "mtp.")
# Config entries that count layers (or blocks, or experts built one module each): each
# layer needs at least one tensor in the files, so a count above the file's tensor count is
# a config asking for weights that do not exist. Checked before the config object is built.
LAYER_COUNT_KEYS = frozenset({
    "num_hidden_layers", "num_layers", "n_layer", "n_layers", "depth", "num_decoder_layers", "num_encoder_layers",
})
# The meta build registers modules, parameters and buffers; an honest model registers a few
# per tensor in its files. Above this, the config asks for structure the files do not hold.
MAX_BUILD_OBJECTS = 100_000
_BUILD_OBJECTS_BASE = 10_000
_BUILD_OBJECTS_PER_TENSOR = 4

# safetensors dtype names → torch dtypes (only the shapes matter on meta; the dtype is kept
# so that the stored dtype can be reported).
_TORCH_DTYPE_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
    "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32", "I64": "int64", "U64": "uint64",
    "F64": "float64", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
}

Tensors = Mapping[str, "tuple[str, tuple[int, ...]]"]  # name → (safetensors dtype, shape)


@dataclass(frozen=True)
class ArchitectureReport:
    """What the guard found: the model class, its parameter count, the tensors it maps."""

    model_class: str
    params: int
    tensors: int
    ignored: tuple[str, ...]  # allowed extra tensors (the teacher's vision / MTP weights)
    stored_dtype: str  # the safetensors dtype holding most of the bytes


def _listing(keys, limit: int = 5) -> str:
    keys = sorted(str(k) for k in keys)
    return ", ".join(clip(k) for k in keys[:limit]) + (f" and {len(keys) - limit:,} more" if len(keys) > limit else "")


def check_config_sizes(raw: Mapping, tensor_count: int) -> None:
    """ARCH_TOO_LARGE when a layer count in config.json (any nesting) exceeds the number of
    tensors in the files. Runs on the parsed JSON, before a config class expands it."""

    def walk(obj, where: str) -> None:
        if isinstance(obj, Mapping):
            for key, value in obj.items():
                if key in LAYER_COUNT_KEYS and isinstance(value, int) and not isinstance(value, bool):
                    if value > tensor_count:
                        raise CheckFailure(
                            "ARCH_TOO_LARGE",
                            f"config.json {where}{key}={value:,} asks for more layers than the {tensor_count:,} "
                            "tensors in the weight files hold",
                        )
                walk(value, f"{where}{key}.")
        elif isinstance(obj, list):
            for item in obj:
                walk(item, where)

    walk(raw, "")


_EXPERT_INDEX = re.compile(r"^(.*\.experts\.)([^.]+)(\..*)$")


def check_expert_numbering(names) -> None:
    """ARCH_UNUSED_TENSORS unless per-expert tensors (`...experts.<i>.<rest>`) are numbered
    0..n-1 in plain decimal. transformers' conversion fuses them in index order whatever the
    numbers are, so `experts.01`, or experts 0, 1, 2, 7, would load the very model that
    0, 1, 2, 3 loads under other tensor names: the same weights with a new content hash."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name in names:
        m = _EXPERT_INDEX.match(name)
        if m is not None:
            groups.setdefault((m.group(1), m.group(3)), []).append(m.group(2))
    for (head, tail), indices in groups.items():
        plain = sorted(int(i) for i in indices if i.isdecimal() and i.isascii() and str(int(i)) == i)
        if len(plain) != len(indices) or plain != list(range(len(plain))):
            odd = sorted(set(indices) - {str(i) for i in range(len(indices))}, key=lambda i: (len(i), i))
            raise CheckFailure(
                "ARCH_UNUSED_TENSORS",
                f"the per-expert tensors {clip(head)}<i>{clip(tail)} must be numbered 0..{len(indices) - 1}; "
                f"found {', '.join(clip(i, 30) for i in odd[:5])}",
            )


# Config entries that bound the positions a model reads. transformers' attribute maps send
# `max_position_embeddings` to the name an architecture stores (GPT-2's `n_positions`,
# DBRX's `max_seq_len`, ...); the others are read as they are named.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "max_sequence_length",
                "model_max_length")


def check_context(config, scored_length: int) -> None:
    """ARCH_CONTEXT when the (text) config declares a context shorter than `scored_length`, the
    positions a round makes every model read (prompt cap + max_new_tokens). From config.json
    alone (class defaults included); the load step then runs a forward at the window's end,
    which catches what no config key says."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in CONTEXT_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value < scored_length:
            raise CheckFailure(
                "ARCH_CONTEXT",
                f"config.json gives {type(text).__name__}.{key} = {value:,}; every model reads {scored_length:,} "
                "positions (the prompt cap plus max_new_tokens)",
            )


# Settings that choose how a model computes, not what it computes: the validator's, never the
# repo's. A config.json naming `experts_implementation: "eager"` made a 4,096-expert model's
# 64-token forward take 183 s on CPU; `return_dict: false` breaks every caller that reads an
# output by name. Each is reset on the built config and its sub-configs (`apply_validator_settings`).
VALIDATOR_SETTINGS = {
    "_attn_implementation": None,  # transformers' default for the class: sdpa, eager where it has none
    "_experts_implementation": None,  # transformers' default: grouped_mm where the class can, else eager
    "output_attentions": False,  # would force eager attention and keep every layer's attention map
    "output_hidden_states": False,  # would keep every layer's hidden states
    "return_dict": True,  # callers read outputs by name
    "chunk_size_feed_forward": 0,  # a Python loop over positions in some architectures
}
# The names config.json writes them under (transformers maps them onto the settings above).
_SETTING_KEYS = {"attn_implementation": "_attn_implementation", "experts_implementation": "_experts_implementation"}


def _configs(config, where: str = ""):
    """(path, config) for `config` and its sub-configs (text_config, vision_config, ...), nested."""
    from transformers import PretrainedConfig

    yield where, config
    for name in getattr(config, "sub_configs", None) or ():
        sub = getattr(config, name, None)
        if isinstance(sub, PretrainedConfig) and sub is not config:
            yield from _configs(sub, f"{where}{name}.")


def apply_validator_settings(config) -> None:
    """Set VALIDATOR_SETTINGS on `config` and every sub-config."""
    for _, cfg in _configs(config):
        for name, value in VALIDATOR_SETTINGS.items():
            setattr(cfg, name, value)


def settings_overridden(raw: Mapping) -> list[str]:
    """The settings a parsed config.json asks for that the validator overrides ("key=value",
    at any nesting), for the log."""
    asked = []

    def walk(obj, where: str) -> None:
        if isinstance(obj, Mapping):
            for key, value in obj.items():
                name = _SETTING_KEYS.get(key, key)
                if name in VALIDATOR_SETTINGS and value != VALIDATOR_SETTINGS[name]:
                    asked.append(f"{where}{clip(str(key), 40)}={clip(json.dumps(value), 40)}")
                walk(value, f"{where}{clip(str(key), 40)}.")

    walk(raw, "")
    return asked


def implementations_of(model) -> dict[str, str | None]:
    """The attention and experts implementations a loaded model runs (as resolved by
    transformers from the validator's settings), for logs and the round report."""
    config = model.config
    return {"attn_implementation": getattr(config, "_attn_implementation", None),
            "experts_implementation": getattr(config, "_experts_implementation", None)}


def config_from_dict(raw: Mapping):
    """The transformers config of a parsed config.json (its own class, no remote code), with
    the validator's settings (VALIDATOR_SETTINGS) in place of any the repo chose."""
    from transformers import CONFIG_MAPPING

    if "transformers_weights" in raw:  # it would choose which file from_pretrained reads
        raise CheckFailure("CONFIG_INVALID", "config.json names its own weights file (transformers_weights)")
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise CheckFailure("ARCHITECTURE", f"model_type {model_type!r} is not an architecture transformers ships")
    try:
        config = CONFIG_MAPPING[model_type].from_dict(dict(raw))
        apply_validator_settings(config)
    except Exception as e:  # the repo's config: any failure to build it is its own
        raise CheckFailure("LOAD_FAILED", f"config.json does not build a {model_type} config: "
                                          f"{type(e).__name__}: {str(e)[:300]}") from None
    return config


class _BuildTooLarge(Exception):
    pass


@contextmanager
def _bounded_build(max_objects: int, max_numel: int | None):
    """Count what module construction registers on this thread; raise _BuildTooLarge past
    either bound (so a config asking for millions of modules stops early)."""
    import torch

    me = threading.get_ident()
    state = {"objects": 0, "numel": 0}

    def count(numel: int = 0) -> None:
        if threading.get_ident() != me:
            return
        state["objects"] += 1
        state["numel"] += numel
        if state["objects"] > max_objects:
            raise _BuildTooLarge(f"more than {max_objects:,} modules, parameters and buffers")
        if max_numel is not None and state["numel"] > max_numel:
            raise _BuildTooLarge(f"more than {max_numel:,} parameters")

    hooks = [
        torch.nn.modules.module.register_module_module_registration_hook(lambda m, n, s: count()),
        torch.nn.modules.module.register_module_buffer_registration_hook(lambda m, n, b: count()),
        torch.nn.modules.module.register_module_parameter_registration_hook(
            lambda m, n, p: count(0 if p is None else p.numel())),
    ]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def build_meta_model(config, tensor_count: int, max_params: int | None):
    """The causal LM of `config` on the meta device (no storage), bounded by the files'
    tensor count and (when given) the parameter cap."""
    import torch
    from transformers import AutoModelForCausalLM

    max_objects = min(MAX_BUILD_OBJECTS, _BUILD_OBJECTS_BASE + _BUILD_OBJECTS_PER_TENSOR * tensor_count)
    # Registration counts a tied embedding twice (it is tied after construction): the early
    # stop is a safety valve at twice the cap; the exact cap is checked on the built model.
    max_numel = None if max_params is None else 2 * max_params
    try:
        with _bounded_build(max_objects, max_numel), torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, trust_remote_code=False)
    except _BuildTooLarge as e:
        raise CheckFailure("ARCH_TOO_LARGE", f"config.json describes a model with {e} "
                                             f"(the weight files hold {tensor_count:,} tensors)") from None
    except Exception as e:  # the config is the repo's: a model it cannot build is its fault
        raise CheckFailure("LOAD_FAILED", f"AutoModelForCausalLM cannot build config.json's model: "
                                          f"{type(e).__name__}: {str(e)[:300]}") from None


def stored_dtype(tensors: Tensors) -> str:
    """The safetensors dtype holding the most elements ("BF16" for an empty mapping)."""
    weight: dict[str, int] = {}
    for dtype, shape in tensors.values():
        weight[dtype] = weight.get(dtype, 0) + prod(shape)
    return max(sorted(weight), key=weight.get) if weight else "BF16"


def _meta_state_dict(tensors: Tensors) -> dict:
    import torch

    out = {}
    for name, (dtype, shape) in tensors.items():
        torch_dtype = getattr(torch, _TORCH_DTYPE_NAMES.get(dtype, "uint8"))
        out[name] = torch.empty(tuple(shape), dtype=torch_dtype, device="meta")
    return out


@contextmanager
def _quiet_progress():
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _map_checkpoint(model, tensors: Tensors):
    """transformers' own loading pass, on meta tensors: which model keys the checkpoint
    fills, which it leaves missing, which file tensors find no place, which shapes differ."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import convert_and_load_state_dict_in_model
    from transformers.modeling_utils import LoadStateDictConfig

    config = LoadStateDictConfig(device_map={"": "meta"}, weight_mapping=get_model_conversion_mapping(model))
    with _quiet_progress():
        info, _ = convert_and_load_state_dict_in_model(model, _meta_state_dict(tensors), config)
    return info


def check_architecture(
    config,
    tensors: Tensors,
    *,
    max_params: int | None,
    allowed_extra: tuple[str, ...] = (),
) -> ArchitectureReport:
    """Refuse (CheckFailure with an ARCH_* code) unless the causal LM `config` describes is
    within `max_params` (None: no cap) and loads exactly `tensors`, up to tied embeddings and
    tensors under `allowed_extra` prefixes. Reads no weight; builds nothing but meta tensors."""
    extras = sorted(n for n in tensors if allowed_extra and n.startswith(allowed_extra))
    if extras:  # declared extras (the teacher's) are set aside: if the model needed one, it shows as missing
        tensors = {n: t for n, t in tensors.items() if not n.startswith(allowed_extra)}
    if not tensors:
        raise CheckFailure("ARCH_MISSING_TENSORS", "the weight files hold no tensors the model could load")
    check_expert_numbering(tensors)
    model = build_meta_model(config, len(tensors) + len(extras), max_params)
    params = sum(p.numel() for p in model.parameters())  # tied parameters counted once
    if max_params is not None and params > max_params:
        raise CheckFailure(
            "ARCH_TOO_LARGE",
            f"config.json describes a {type(model).__name__} of {params:,} parameters; at most {max_params:,} allowed",
        )
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = dict(getattr(model, "all_tied_weights_keys", None) or {})
    ignore_missing = list(getattr(model, "_keys_to_ignore_on_load_missing", None) or ())
    name = type(model).__name__

    info = _map_checkpoint(model, tensors)
    if info.conversion_errors:
        keys = list(info.conversion_errors)
        first = str(info.conversion_errors[keys[0]]).strip().splitlines()[-1][:200]
        raise CheckFailure("ARCH_SHAPE_MISMATCH", f"{name}: the tensors for {_listing(keys)} cannot be converted "
                                                  f"to the model's layout ({first})")
    if info.mismatched_keys:
        shown = sorted(info.mismatched_keys, key=lambda m: m[0])[:5]
        detail = "; ".join(f"{k} is {list(got)} in the files, {list(want)} in the model" for k, got, want in shown)
        more = len(info.mismatched_keys) - len(shown)
        raise CheckFailure("ARCH_SHAPE_MISMATCH", f"{name}: {detail}" + (f" and {more:,} more" if more > 0 else ""))

    missing = set(info.missing_keys)
    for target, source in tied.items():  # either side of a tied pair may be the stored one
        if target in missing and source not in missing:
            missing.discard(target)
        elif source in missing and target not in missing:
            missing.discard(source)
    missing = {k for k in missing if not any(re.search(p, k) for p in ignore_missing)}
    if missing:
        raise CheckFailure(
            "ARCH_MISSING_TENSORS",
            f"config.json describes a {name} that needs {len(missing):,} tensor(s) the weight files do not hold: "
            f"{_listing(missing)}",
        )
    if info.unexpected_keys:
        raise CheckFailure(
            "ARCH_UNUSED_TENSORS",
            f"the weight files hold {len(info.unexpected_keys):,} tensor(s) {name} does not load: "
            f"{_listing(info.unexpected_keys)}",
        )

    # Every key matched; the totals must agree too (a tied pair stored twice counts twice).
    stored = sum(prod(shape) for _, shape in tensors.values())
    both_tied = sum(prod(expected_shapes[t]) for t, s in tied.items()
                    if t in expected_shapes and t not in info.missing_keys and s not in info.missing_keys)
    if stored != params + both_tied:
        raise CheckFailure(
            "ARCH_SHAPE_MISMATCH", f"the weight files hold {stored:,} parameters for a {name} of {params + both_tied:,}"
        )
    return ArchitectureReport(
        model_class=name,
        params=params,
        tensors=len(tensors),
        ignored=tuple(extras),
        stored_dtype=stored_dtype(tensors),
    )


def architecture_step(raw: Mapping, tensors: Tensors, max_params: int | None, scored_length: int) -> str:
    """The pre-check's architecture step (run in a sandbox child): config.json's context against
    the scored window, then its model built on the meta device against the headers; its report
    line, or a CheckFailure."""
    check_config_sizes(raw, len(tensors))
    config = config_from_dict(raw)
    check_context(config, scored_length)
    report = check_architecture(config, tensors, max_params=max_params)
    return (f"config.json describes a {report.model_class} of {report.params:,} parameters "
            f"that uses exactly the {report.tensors} tensors of the weight files, "
            f"context at least {scored_length:,} positions")
