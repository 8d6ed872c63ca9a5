"""Distil: a Bittensor subnet for competitive distillation of Qwen/Qwen3.5-35B-A3B.

`distil/` holds the subnet's own logic as plain, testable pieces (commitments, model
stores, pre-checks, the evaluation engine, king-of-the-hill decisions, state, metrics).
It never imports `neurons/`; the neurons only wire these pieces together.
"""

__version__ = "0.1.0"

# Bumped whenever anything that changes a score changes: prompt sampling, the KL
# definition, the dethrone rule, a default in the scoring spec. State and W&B rounds
# record it, so scores from different versions are never compared.
SCORING_VERSION = 3  # v3: commitments close before the seed, ownership, win twice, copies across rounds (docs/scoring.md)

# Bumped whenever the pre-checks change what they refuse. State records the version its
# checks ran under; a validator that finds another one checks every record again, the king
# included (distil.scoring.prechecks.migrate_checks_version), so old verdicts meet new rules.
CHECKS_VERSION = 2  # v2: context length, the tokenizer's sections, deadlines (issue 22)

# Sent as `version_key` with every weight set (bittensor convention: an int that grows
# with each release that validators must run together).
SPEC_VERSION = 1

NETUID = 97
TEACHER_REPO = "Qwen/Qwen3.5-35B-A3B"
VOCAB_SIZE = 248_320
MAX_PARAMS = 5_250_000_000
# The scored window (scoring spec defaults, `EvalSpec`): a prompt of at most MAX_PROMPT_TOKENS
# ids, then at most MAX_NEW_TOKENS teacher tokens. A model must accept SCORED_LENGTH positions
# (the pre-checks refuse one that cannot: ARCH_CONTEXT).
MAX_PROMPT_TOKENS = 512
MAX_NEW_TOKENS = 512
SCORED_LENGTH = MAX_PROMPT_TOKENS + MAX_NEW_TOKENS
