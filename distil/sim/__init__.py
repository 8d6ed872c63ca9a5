"""Simulations over scored rounds: how the scoring rules behave, measured (not tests).

    python -m distil.sim dethrone --round ROUND.json [--round ...] [--rule v3|v2|one-round] [--candidates]
                               [--json] [--n N] [--resamples 10000] [--seed S]

`dethrone` estimates, by resampling a round's prompts, how often the dethrone rule (scoring
spec v3's win twice, `distil.scoring.rules.WinTwice` and `distil.scoring.contender`; or
spec v2's one-round rule, `--rule v2`) crowns a challenger that is truly equal to the king
(the false-dethrone rate per round, with 1 to `max_challengers` challengers), how often it
crowns one that is truly better by 1–10 % (the power), and how often hardware-level noise
flips a decision. See docs/scoring.md, "How often the rule is wrong", and the recorded
rounds of docs/performance.md (`benchmarks/rounds/`).

A round file is the JSON of `distil-eval --json` or the validator's `round.json` (the
W&B artifact `round-<seed_block>`), of any scoring version: only the per-prompt KL
vectors are read (`distil.sim.rounds`).
"""
