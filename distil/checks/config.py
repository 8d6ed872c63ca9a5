"""config.json and tokenizer_config.json: no remote code, no quantisation, the teacher's
vocabulary, an architecture transformers ships. Pure functions over parsed JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from distil.checks.bounded_json import JsonBounds, JsonRejected, clip, load_bounded_json
from distil.checks.result import CheckFailure, CheckLimits

_QUANT_KEYS = ("quantization_config", "compression_config")


def parse_json(data: bytes, name: str, max_bytes: int | None = None) -> Any:
    """Any JSON value from a repo file's bytes, parsed within bounds (see bounded_json);
    MALFORMED_JSON naming the file and the problem otherwise."""
    bounds = JsonBounds(max_bytes=len(data) if max_bytes is None else max_bytes)
    try:
        return load_bounded_json(data, bounds)
    except JsonRejected as e:
        raise CheckFailure("MALFORMED_JSON", f"{name} {e.reason}") from None


def parse_json_object(data: bytes, name: str, max_bytes: int | None = None) -> dict:
    """A JSON object from bytes: MALFORMED_JSON when it does not parse, CONFIG_INVALID when
    it parses to something else than an object."""
    value = parse_json(data, name, max_bytes)
    if not isinstance(value, dict):
        raise CheckFailure("CONFIG_INVALID", f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, key, value) for every key of every object nested in `value`."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield path, k, v
            yield from _walk(v, f"{path}.{k}" if path else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def _where(path: str, key: str) -> str:
    return clip(f"{path}.{key}" if path else key)


def check_no_remote_code(obj: dict, name: str) -> None:
    found = [_where(p, k) for p, k, _ in _walk(obj) if k == "auto_map"]
    if found:
        raise CheckFailure(
            "REMOTE_CODE",
            f"{name} has {', '.join(found)}: it points transformers at code in the repo; remove it "
            "(models load with trust_remote_code=False)",
        )


@dataclass(frozen=True)
class ConfigSummary:
    model_type: str
    vocab_size: int
    hidden_size: int | None
    architectures: tuple[str, ...]


def _int_field(obj: dict, key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise CheckFailure("CONFIG_INVALID", f"config.json {key} must be an integer, got {clip(repr(value))}")
    return value


def check_config(config: dict, limits: CheckLimits) -> ConfigSummary:
    """REMOTE_CODE (auto_map), QUANTIZED (quantization_config), VOCAB_SIZE, ARCHITECTURE."""
    check_no_remote_code(config, "config.json")

    quant = [_where(p, k) for p, k, v in _walk(config) if k in _QUANT_KEYS and v is not None]
    if quant:
        raise CheckFailure(
            "QUANTIZED", f"config.json has {', '.join(quant)}: publish unquantised BF16 or F16 weights"
        )

    text = config.get("text_config")
    if text is not None and not isinstance(text, dict):
        raise CheckFailure("CONFIG_INVALID", "config.json text_config must be an object")
    text = text or {}
    top_vocab, text_vocab = _int_field(config, "vocab_size"), _int_field(text, "vocab_size")
    if top_vocab is not None and text_vocab is not None and top_vocab != text_vocab:
        raise CheckFailure(
            "VOCAB_SIZE", f"config.json vocab_size {top_vocab:,} disagrees with text_config.vocab_size {text_vocab:,}"
        )
    vocab = top_vocab if top_vocab is not None else text_vocab
    if vocab is None:
        raise CheckFailure("VOCAB_SIZE", "config.json declares no vocab_size (top level or text_config)")
    if vocab != limits.vocab_size:
        raise CheckFailure(
            "VOCAB_SIZE", f"vocab_size is {vocab:,}; the teacher's vocabulary has {limits.vocab_size:,} tokens"
        )
    hidden = _int_field(text, "hidden_size") if text else None
    if hidden is None:
        hidden = _int_field(config, "hidden_size")

    model_type, architectures = check_architecture(config)
    return ConfigSummary(model_type=model_type, vocab_size=vocab, hidden_size=hidden, architectures=architectures)


def check_architecture(config: dict) -> tuple[str, tuple[str, ...]]:
    """model_type is a transformers config that AutoModelForCausalLM maps to a class, and every
    name in `architectures` is a class transformers ships."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise CheckFailure("ARCHITECTURE", "config.json has no model_type")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise CheckFailure(
            "ARCHITECTURE",
            f"model_type {clip(repr(model_type))} is not an architecture transformers {transformers.__version__} ships",
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckFailure(
            "ARCHITECTURE", f"model_type {clip(repr(model_type))} has no causal-LM class for AutoModelForCausalLM"
        )
    architectures = config.get("architectures")
    if architectures is None:
        return model_type, ()
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise CheckFailure("ARCHITECTURE", "config.json architectures must be a list of class names")
    unknown = [clip(a, 60) for a in architectures if not _ships_class(transformers, a)]
    if unknown:
        raise CheckFailure("ARCHITECTURE", f"architectures {unknown[:5]} are not classes transformers ships")
    return model_type, tuple(architectures)


def _ships_class(transformers, name: str) -> bool:
    """transformers exports `name` as a class. Its lazy module imports on attribute access,
    which can raise more than AttributeError (a backend missing here); a name it cannot
    give us is not an architecture we can load."""
    if not name.isidentifier() or name.startswith("_"):
        return False
    try:
        return isinstance(getattr(transformers, name), type)
    except Exception:
        return False


def check_tokenizer_config(tokenizer_config: dict) -> None:
    check_no_remote_code(tokenizer_config, "tokenizer_config.json")
