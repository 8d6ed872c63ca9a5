"""The validator's command line: its flags, and the objects they configure.

`add_validator_args` adds everything the validator reads beyond the template's wallet,
chain, axon, logging and W&B flags: the evaluation spec (`--eval.*`), the pre-checks
(`--checks.*`), the fan-out devices, the status rate limit, the round files and the mock
world (`--mock.*`). The helpers below turn a parsed config into the spec, limits, dethrone
parameters and model store, so `neurons/validator.py` only wires them together.
"""

from __future__ import annotations

import argparse
import os

from distil import TEACHER_REPO
from distil.checks import CheckLimits
from distil.checks.args import add_check_args
from distil.eval.args import spec_error
from distil.eval.spec import EvalSpec, warn_score_changing_overrides
from distil.hub import HuggingFaceStore
from distil.scoring import epoch as ep
from distil.scoring.coldkeys import MAX_PER_COLDKEY
from distil.checks.clock import DEFAULT_FLOOR_S, DEFAULT_MULTIPLE, Deadlines, default_deadlines
from distil.scoring.prechecks import DEFAULT_EPOCH_BUDGET_S, DEFAULT_MAX_STRIKES
from distil.scoring.rules import CONFIRM_ALPHA, COPY_COSINE, KL_LIMIT, MAX_CHALLENGERS, V3_ALPHA, V3_EPSILON

# EvalSpec fields the validator exposes as --eval.<field> (the rest keep the spec's defaults).
EVAL_SPEC_FLAGS = (
    "n_prompts", "max_new_tokens", "max_prompt_chars", "max_prompt_tokens", "dataset", "dataset_revision",
    "dataset_data_dir", "text_column", "dataset_shards", "rows_per_shard", "generation_batch_size", "chunk_size",
    "dtype", "student_timeout_s", "prompt_cache_dir",
    "probe_prompts", "probe_min_loops", "probe_loop_margin", "probe_repeat_margin", "probe_length_ratio",  # degeneration guard
)


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation (scoring spec defaults)")
    defaults = EvalSpec()
    for name in EVAL_SPEC_FLAGS:
        default = getattr(defaults, name)
        group.add_argument(f"--eval.{name}", type=type(default), default=default, help="default: %(default)s")
    group.add_argument("--eval.teacher", default=TEACHER_REPO, help="teacher directory or hub repo (default: %(default)s)")
    group.add_argument("--eval.teacher_revision", default=None, help="teacher commit to pin (default: the repo's current one, logged)")
    group.add_argument("--eval.prompts_file", default=None, help="JSONL prompts instead of the dataset (offline runs)")
    group.add_argument("--eval.max_challengers", type=int, default=MAX_CHALLENGERS,
                       help="challengers per round, earliest commit first; spec v3 divides the first stage's level by it "
                            "(default: %(default)s)")
    group.add_argument("--eval.max_per_coldkey", type=int, default=MAX_PER_COLDKEY,
                       help="challengers of one owner coldkey per round; the rest wait for a later round (default: %(default)s)")
    group.add_argument("--eval.commit_delay", type=int, default=ep.DEFAULT_COMMIT_DELAY,
                       help="spec v3: a round seeded by block S scores only commitments made before block "
                            "S − commit_delay; later ones wait for a later round (default: %(default)s blocks)")
    group.add_argument("--eval.rematch", type=int, default=4, help="evaluated models re-scored in a round without a king (default: %(default)s)")
    group.add_argument("--eval.epsilon", type=float, default=V3_EPSILON,
                       help="dethrone margin, both stages of win twice (default: %(default)s)")
    group.add_argument("--eval.alpha", type=float, default=V3_ALPHA,
                       help="the first stage's paired t-test level per round: each challenger is tested at "
                            "alpha / --eval.max_challengers (default: %(default)s)")
    group.add_argument("--eval.confirm_alpha", type=float, default=CONFIRM_ALPHA,
                       help="spec v3: paired t-test level of the contender's confirmation on a later round's prompts "
                            "(default: %(default)s)")
    group.add_argument("--eval.kl_limit", type=float, default=KL_LIMIT, help="KL above this is KL_TOO_HIGH (default: %(default)s)")
    group.add_argument("--eval.copy_cosine", type=float, default=COPY_COSINE, help="functional-copy cosine threshold (default: %(default)s)")
    group.add_argument("--eval.max_strikes", type=int, default=ep.DEFAULT_MAX_EVAL_STRIKES,
                       help="evaluation failures of a model's own (load, score, probe, deadline, worker death, while the "
                            "round scored others) before it is INVALID EVAL_FAILED_REPEATEDLY (default: %(default)s)")


def add_validator_args(parser: argparse.ArgumentParser) -> None:
    add_eval_args(parser)
    add_check_args(parser)
    parser.add_argument("--checks.max_per_epoch", type=int, default=16,
                        help="commitments pre-checked per epoch, never-checked ones first (default: %(default)s)")
    parser.add_argument("--checks.max_strikes", type=int, default=DEFAULT_MAX_STRIKES,
                        help="pre-checks failing for the repo alone before it is INVALID CHECK_FAILED_REPEATEDLY "
                             "(default: %(default)s; outages never count)")
    parser.add_argument("--checks.epoch_budget_s", type=float, default=DEFAULT_EPOCH_BUDGET_S,
                        help="seconds of pre-checks an epoch may spend: no new check starts after it, and a hub call or "
                             "download still running at its end stops (PRECHECK_BUDGET: resumed next epoch, never a "
                             "strike); the rest wait for the next epoch in the queue's order (default: %(default)s)")
    parser.add_argument("--checks.deadline_multiple", type=float, default=DEFAULT_MULTIPLE,
                        help="each untrusted step (tokenizer, meta build, load, scoring, probe) may take this many times "
                             "its estimate for the model's size on this machine's measured speed (default: %(default)s)")
    parser.add_argument("--checks.deadline_floor_s", type=float, default=DEFAULT_FLOOR_S,
                        help="the least seconds a pre-check step is given (default: %(default)s; scoring and the probe "
                             "use --eval.student_timeout_s)")
    parser.add_argument("--neuron.devices", default=None,
                        help="score students in parallel, one worker process per device, e.g. cuda:0,cuda:1 "
                             "(the teacher runs on the first; overrides --neuron.device)")
    parser.add_argument("--neuron.keep_rounds", type=int, default=100,
                        help="round files kept under <full_path>/rounds/, newest first (default: %(default)s)")
    parser.add_argument("--mock.scenario", dest="mock_scenario", default=None, help="with --mock: scenario JSON (see docs/validators.md)")
    parser.add_argument("--mock.models_dir", dest="mock_models_dir", default=None,
                        help="with --mock: also serve every <dir>/<namespace>/<name> directory as the repo namespace/name "
                             "(the miner's --mock.models_dir), found when a commitment names it")
    parser.add_argument("--mock.block_time", dest="mock_block_time", type=float, default=0.0,
                        help="with --mock: seconds per block while waiting for the next epoch, so the validator keeps "
                             "running (and answering --status) without --neuron.epochs (default: 0, jump at once)")
    parser.add_argument("--status.rate_limit", dest="status_rate_limit", type=int, default=30, help="DistilStatus requests per caller per minute")


def eval_spec(config, devices: list[str] | None) -> EvalSpec:
    """The round's evaluation spec; with `--neuron.devices` the teacher runs on the first.
    A value the spec refuses is a ValueError naming the validator's flag."""
    flags = {"device": "--neuron.device", "vocab_size": "--checks.vocab_size"}
    try:
        spec = EvalSpec(
            **{name: getattr(config.eval, name) for name in EVAL_SPEC_FLAGS},
            device=devices[0] if devices else config.neuron.device,
            vocab_size=int(config.checks.vocab_size),
        )
    except ValueError as e:
        raise ValueError(spec_error(e, lambda name: flags.get(name, f"--eval.{name}"))) from None
    warn_score_changing_overrides(spec)  # scores are comparable across validators only on the same spec
    return spec


def round_params(config) -> ep.RoundParams:
    """The dethrone parameters; first refuses round sizes no epoch could work with (ValueError
    at start, naming the flag, rather than every epoch failing without weights)."""
    for flag, value, least in (("max_per_coldkey", config.eval.max_per_coldkey, 1),
                               ("max_challengers", config.eval.max_challengers, 1), ("rematch", config.eval.rematch, 0)):
        if value < least:
            raise ValueError(f"--eval.{flag} must be at least {least}, got {value}")
    if config.eval.commit_delay < 0:
        raise ValueError(f"--eval.commit_delay must be at least 0, got {config.eval.commit_delay}")
    if config.eval.max_strikes < 1:
        raise ValueError(f"--eval.max_strikes must be at least 1, got {config.eval.max_strikes}")
    for flag in ("alpha", "confirm_alpha"):
        if not 0.0 < getattr(config.eval, flag) < 1.0:
            raise ValueError(f"--eval.{flag} must be in (0, 1), got {getattr(config.eval, flag)}")
    if not 0.0 <= config.eval.epsilon < 1.0:
        raise ValueError(f"--eval.epsilon must be in [0, 1), got {config.eval.epsilon}")
    return ep.RoundParams(config.eval.epsilon, config.eval.alpha, config.eval.kl_limit, config.eval.copy_cosine,
                          int(config.eval.max_strikes), config.eval.confirm_alpha, config.eval.max_challengers)


def deadlines(config) -> Deadlines:
    """Deadlines of the untrusted steps: this machine's baseline (measured now, once) and the flags."""
    if not (config.checks.deadline_multiple > 0 and config.checks.deadline_floor_s > 0):
        raise ValueError("--checks.deadline_multiple and --checks.deadline_floor_s must be > 0")
    return default_deadlines(float(config.checks.deadline_multiple), float(config.checks.deadline_floor_s))


def check_limits(config) -> CheckLimits:
    """The pre-checks' limits; the scored window is the spec's (`--eval.max_prompt_tokens` +
    `--eval.max_new_tokens`), so no model is checked for a shorter window than it is scored on."""
    spec = EvalSpec(max_prompt_tokens=int(config.eval.max_prompt_tokens), max_new_tokens=int(config.eval.max_new_tokens))
    return CheckLimits(max_params=int(config.checks.max_params), vocab_size=int(config.checks.vocab_size),
                       scored_length=spec.scored_length)


def hub_store(config) -> HuggingFaceStore:
    """The Hugging Face hub (`HF_ENDPOINT` if set), cached under `--checks.cache_dir`, bounded by `--checks.max_cache_gb`."""
    return HuggingFaceStore(
        endpoint=os.environ.get("HF_ENDPOINT"),
        cache_dir=config.checks.cache_dir,
        max_cache_bytes=int(config.checks.max_cache_gb * 2**30) if config.checks.max_cache_gb else None,
    )
