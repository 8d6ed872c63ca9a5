"""The evaluation engine: block-seeded prompts, the teacher pass, the KL kernel, scoring.

Shared by the validator and `distil-eval`, so a miner's local score is the validator's
score on the same hardware. Public entry points:

- `EvalSpec` (spec.py): every setting of a round, resolved with versions by `to_dict()`.
- `seed_block`, `seed_from_block_hash`, `JsonlPromptSource`, `DatasetPromptSource`,
  `tokenize_prompts` (prompts.py).
- `build_teacher_cache`, `TeacherCache` (teacher.py).
- `kl_from_hidden`, `kl_from_logits` (kl.py).
- `head_of`, `final_hidden`, `own_logits_reason` (models.py); models are loaded by
  `distil.checks.loading.load_causal_lm`, beside its guards.
- `score_models`, `run_round`, `ModelScore`, `ModelFailure` (engine.py).
- `round_to_json`, `round_from_json` (report.py).
"""
