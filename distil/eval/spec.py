"""The evaluation spec: every number that decides a score, in one frozen value.

Scoring spec v1 (DESIGN.md §2), with v2's degeneration-guard fields. Each field is a `distil-eval` flag of the same name
(`n_prompts` ⇒ `--n-prompts`); `to_dict()` is the *resolved* spec that is logged and
published with every round, with the scoring version and the library versions, so anyone
can reproduce a round bit for bit on the same hardware.

Fields that change numerics on a given machine (and so belong to the spec, not to the
runtime): the device and dtype, the generation batch size (batched matmuls round
differently from unbatched ones, which can flip a near-tie argmax), the KL chunk size
(only at the 1e-7 level).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from distil import MAX_NEW_TOKENS, MAX_PROMPT_TOKENS, SCORING_VERSION, VOCAB_SIZE, __version__

CLIMBMIX = "karpathy/climbmix-400b-shuffle"
FINEWEB = "HuggingFaceFW/fineweb"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class EvalSpec:
    """The resolved settings of one evaluation round (defaults = the scoring spec, `SCORING_VERSION`)."""

    n_prompts: int = 120
    max_new_tokens: int = MAX_NEW_TOKENS
    # Prompts: raw text cut to `max_prompt_chars` characters, then to `max_prompt_tokens` ids.
    max_prompt_chars: int = 2048
    max_prompt_tokens: int = MAX_PROMPT_TOKENS
    dataset: str = CLIMBMIX
    dataset_revision: str = "main"
    dataset_data_dir: str = ""  # only files under this folder of the dataset repo ("" = all)
    text_column: str = "text"
    dataset_shards: int = 4  # data files read per round, chosen by the seed
    rows_per_shard: int = 2048  # leading rows read from each chosen file
    # Teacher pass.
    generation_batch_size: int = 16
    # KL kernel: rows (positions) per block; 16-32 is best on CPU (DESIGN.md §5).
    chunk_size: int = 32
    compile_kl: bool = False
    # Positions per forward for students scored from their own logits (soft-capped heads).
    own_logits_chunk: int = 128
    device: str = "cpu"
    dtype: str = "auto"  # auto: bfloat16 on cuda, float32 on cpu
    vocab_size: int = VOCAB_SIZE
    # The floor of a student's scoring and probe deadline, in seconds: the deadline is the larger
    # of this and a multiple of the estimate for its size on this machine (distil.checks.clock).
    student_timeout_s: float = 3600.0
    # Degeneration guard (scoring spec v2, v3): a would-be king generates greedily on the first
    # min(probe_prompts, n_prompts) prompts; DEGENERATE when it loops on ≥ max(probe_min_loops,
    # teacher loops + ⌈probe_loop_margin × K⌉) of them, or its mean repeated-4-gram share is above
    # the teacher's + probe_repeat_margin, or (v3) its mean generated length is below
    # probe_length_ratio × the teacher's (distil/scoring/degeneration.py, docs/scoring.md).
    probe_prompts: int = 16
    probe_min_loops: int = 2
    probe_loop_margin: float = 0.25
    probe_repeat_margin: float = 0.2
    probe_length_ratio: float = 0.25
    prompt_cache_dir: str = field(default="", metadata={"runtime": True})  # "" = ~/.cache/distil/prompts

    def __post_init__(self):
        for name in ("n_prompts", "max_new_tokens", "max_prompt_chars", "max_prompt_tokens",
                     "dataset_shards", "rows_per_shard", "generation_batch_size", "chunk_size",
                     "own_logits_chunk", "vocab_size", "probe_prompts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EvalSpec.{name} must be a positive integer, got {value!r}")
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"EvalSpec.dtype must be 'auto' or one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"EvalSpec.device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if not self.student_timeout_s > 0:
            raise ValueError(f"EvalSpec.student_timeout_s must be > 0, got {self.student_timeout_s!r}")
        try:
            self.degeneration_thresholds()
        except ValueError as e:
            raise ValueError(f"EvalSpec probe thresholds: {e}") from None

    @property
    def scored_length(self) -> int:
        """Positions a model must read: the prompt cap plus the continuation (the pre-checks'
        `CheckLimits.scored_length`; the probe generates that far too)."""
        return self.max_prompt_tokens + self.max_new_tokens

    @property
    def probe_count(self) -> int:
        """K, the prompts the degeneration probe generates on: the first `probe_prompts`, at most all."""
        return min(self.probe_prompts, self.n_prompts)

    def degeneration_thresholds(self):
        from distil.scoring.degeneration import DegenerationThresholds

        return DegenerationThresholds(self.probe_min_loops, self.probe_loop_margin, self.probe_repeat_margin,
                                      self.probe_length_ratio)

    @property
    def torch_dtype(self) -> torch.dtype:
        """The compute dtype: bf16 on GPU and fp32 on CPU unless `dtype` says otherwise."""
        if self.dtype == "auto":
            return torch.float32 if self.device == "cpu" else torch.bfloat16
        return DTYPES[self.dtype]

    def replace(self, **changes) -> "EvalSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The resolved spec: fields (runtime-only ones left out), dtype resolved, versions."""
        from distil.eval.prompts import SAMPLER_VERSION

        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.metadata.get("runtime")}
        fields["dtype"] = str(self.torch_dtype).removeprefix("torch.")
        return {
            "scoring_version": SCORING_VERSION,
            "sampler_version": SAMPLER_VERSION,
            **fields,
            "versions": library_versions(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "EvalSpec":
        """The spec of a published round (extra keys such as versions are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        if values.get("dtype") not in (None, "auto", *DTYPES):
            raise ValueError(f"unknown dtype {values['dtype']!r} in spec")
        return cls(**values)


# Fields that say where and how long a validator runs, not what it scores.
NOT_SCORE_FIELDS = ("device", "student_timeout_s", "prompt_cache_dir")


def score_changing_overrides(spec: EvalSpec) -> list[str]:
    """The resolved spec fields that differ from the defaults on the same device ("name:
    default → value"); runtime-only fields (device, timeout, cache folder) do not count.

    Validators whose scores must agree need the same resolved spec (docs/validators.md,
    "What must match"): each entry here makes this validator's scores incomparable with
    those of validators running the defaults.
    """
    mine = spec.to_dict()
    default = EvalSpec(device=spec.device).to_dict()
    ignored = {*NOT_SCORE_FIELDS, "versions"}
    return [f"{k}: {default.get(k)!r} → {mine[k]!r}" for k in mine if k not in ignored and mine[k] != default.get(k)]


def warn_score_changing_overrides(spec: EvalSpec, log=None) -> list[str]:
    """Log one warning naming every score-changing override (see `score_changing_overrides`)."""
    changed = score_changing_overrides(spec)
    if changed:
        from loguru import logger

        (log or logger.warning)(
            "this validator overrides scoring spec field(s) " + "; ".join(changed)
            + ": its scores and kings will not match validators that run the defaults (docs/validators.md)")
    return changed


def library_versions() -> dict:
    import transformers

    versions = {"distil": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import datasets

        versions["datasets"] = datasets.__version__
    except ImportError:  # pragma: no cover - datasets is a hard dependency
        pass
    return versions
