"""Which fast kernels a model will run, and which parts fall back to slow PyTorch code.

transformers picks its kernels silently: Qwen3.5's gated-delta-net (linear attention)
layers use `flash-linear-attention` (`fla`) and `causal-conv1d` when they import and a
CUDA device is there, and otherwise transformers' reference PyTorch code — correct, but
many times slower on a GPU. A validator must read that in its log at start-up, not guess
it from round times. What is read (transformers 5.x):

- linear attention: the functions `torch_chunk_gated_delta_rule` /
  `torch_recurrent_gated_delta_rule` (package `fla`) and `causal_conv1d_fn` /
  `causal_conv1d_update` (package `causal_conv1d`) of the model's modeling module are
  wrapped at import time by `use_kernel_func_from_hub_with_fallback`, whose closure says
  whether the package's kernel replaced the torch code (`is_new_implementation`); the
  kernel runs only where transformers' own flag (`is_flash_linear_attention_available`,
  `is_causal_conv1d_available`: package importable and CUDA present) holds too;
- attention: `config._attn_implementation` (sdpa or flash-attention: fast; eager: slow);
- MoE experts: `config._experts_implementation` (grouped_mm / batched_mm: fast; eager, a
  Python loop over experts: slow).

`assess(facts)` is pure; `facts_of(model)` reads a built model (a meta-device one is
enough: `model_on_meta(config)`), `log_fast_paths(...)` logs one line per path, with the
words "slow fallback" for each path that falls back. On a machine that runs on CPU the
linear-attention kernels cannot help (they are CUDA-only): those lines say so at INFO,
with no install hint.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass

from loguru import logger

GPU_EXTRA_HINT = "pip install -c constraints.txt -e '.[gpu]' (docs/validators.md, GPU extra)"
CAUSAL_CONV1D_HINT = "build causal-conv1d from source (docs/validators.md, GPU extra: needs nvcc)"
FAST_ATTENTION = ("sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")
FAST_EXPERTS = ("grouped_mm", "batched_mm")


@dataclass(frozen=True)
class ModelFacts:
    """What decides the kernels of one model (None: the model has no such layer)."""

    model_class: str
    attn_implementation: str | None
    experts_implementation: str | None  # None: no MoE experts
    fla_resolved: bool | None  # None: no linear-attention layers
    fla_flag: bool = False
    conv1d_resolved: bool | None = None
    conv1d_flag: bool = False


@dataclass(frozen=True)
class FastPath:
    name: str
    active: bool
    detail: str

    def line(self) -> str:
        return f"{'fast path' if self.active else 'slow fallback'}: {self.name}: {self.detail}"


CPU_ONLY = "its kernels are CUDA-only: nothing to install for a CPU run"


def _linear(name: str, package: str, resolved: bool, flag: bool, hint: str, cuda: bool = True) -> FastPath:
    if resolved and flag:
        return FastPath(name, True, f"{package} kernels")
    if not cuda:
        return FastPath(name, False, f"transformers' reference PyTorch code ({package}: {CPU_ONLY})")
    if not resolved:
        why = f"{package} is not installed (or does not import)"
    else:
        why = f"{package} is installed but transformers will not use it here (no CUDA device)"
    return FastPath(name, False, f"transformers' reference PyTorch code: {why}; {hint}")


def assess(facts: ModelFacts, cuda: bool = True) -> tuple[FastPath, ...]:
    """One FastPath per kernel family the model uses (`cuda`: the run is on CUDA devices)."""
    paths = []
    attn = facts.attn_implementation or "unknown"
    paths.append(FastPath("attention", attn in FAST_ATTENTION,
                          attn if attn in FAST_ATTENTION else f"{attn} (matmul + softmax in PyTorch, full score matrix)"))
    if facts.fla_resolved is not None:
        paths.append(_linear("linear attention (gated delta rule)", "flash-linear-attention", facts.fla_resolved,
                             facts.fla_flag, GPU_EXTRA_HINT, cuda))
        paths.append(_linear("linear attention (causal conv1d)", "causal-conv1d", bool(facts.conv1d_resolved),
                             facts.conv1d_flag, CAUSAL_CONV1D_HINT, cuda))
    if facts.experts_implementation is not None:
        experts = facts.experts_implementation
        fast = experts in FAST_EXPERTS
        paths.append(FastPath("MoE experts", fast, experts if fast else f"{experts} (a Python loop over experts)"))
    return tuple(paths)


# -- reading a model ------------------------------------------------------------------------


def _resolved(module, func_name: str) -> bool | None:
    """Did transformers replace `func_name` of `module` by the package's kernel at import?"""
    fn = getattr(module, func_name, None)
    for _ in range(8):  # the hub-kernel decorator may wrap it once more
        if fn is None:
            return None
        try:
            nonlocals = inspect.getclosurevars(fn).nonlocals
        except TypeError:
            nonlocals = {}
        if "is_new_implementation" in nonlocals:
            return bool(nonlocals["is_new_implementation"])
        fn = getattr(fn, "__wrapped__", None)
    return None


def facts_of(model) -> ModelFacts:
    from transformers.utils import import_utils

    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    module = sys.modules.get(type(model).__module__)
    has_linear = "linear_attention" in (getattr(text, "layer_types", None) or [])
    has_experts = any(type(m).__name__.endswith("Experts") for m in model.modules())
    fla = _resolved(module, "torch_chunk_gated_delta_rule") if has_linear else None
    conv = _resolved(module, "causal_conv1d_fn") if has_linear else None
    return ModelFacts(
        model_class=type(model).__name__,
        attn_implementation=getattr(config, "_attn_implementation", None),
        experts_implementation=getattr(config, "_experts_implementation", None) if has_experts else None,
        fla_resolved=(bool(fla) if has_linear else None),
        fla_flag=bool(import_utils.is_flash_linear_attention_available()),
        conv1d_resolved=bool(conv) if has_linear else None,
        conv1d_flag=bool(import_utils.is_causal_conv1d_available()),
    )


def model_on_meta(config):
    """The causal-LM of `config` on the meta device: no memory, same kernel choices."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def log_fast_paths(model, label: str, cuda: bool = True) -> tuple[FastPath, ...]:
    """Log (and return) the fast paths of `model` for a run on CUDA (`cuda`) or not; a fallback
    that an install could fix is a warning, one that nothing can fix on CPU is INFO."""
    paths = assess(facts_of(model), cuda)
    for path in paths:
        fixable = not path.active and (cuda or CPU_ONLY not in path.detail)
        (logger.warning if fixable else logger.info)(f"{label} ({type(model).__name__}): {path.line()}")
    return paths
