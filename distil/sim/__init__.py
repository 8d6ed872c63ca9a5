"""Simulations over scored rounds: how the scoring rules behave, measured (not tests).

    python -m distil.sim dethrone --round ROUND.json [--json] [--n N] [--resamples 10000] [--seed S]

`dethrone` estimates, by resampling a round's prompts, how often the dethrone rule
(`distil.scoring.rules.dethrones`) crowns a challenger that is truly equal to the king
(the false-dethrone rate) and how often it crowns one that is truly better by 1–10 %
(the power). See docs/scoring.md, "How often the rule is wrong".

A round file is the JSON of `distil-eval --json` or the validator's `round.json` (the
W&B artifact `round-<seed_block>`), of any scoring version: only the per-prompt KL
vectors are read (`distil.sim.rounds`).
"""
