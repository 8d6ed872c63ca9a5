"""Exit status of every program: one table (docs/cli.md shows it).

| status | meaning |
|---|---|
| 0 | success |
| 1 | a verdict on the model(s) being judged: refused by the pre-checks (`distil-check`, the miner's commit and `--dry-run`, `distil-train`'s output), a student that got a verdict in `distil-eval` |
| 2 | everything else: a bad argument (flags, numbers, paths, the teacher, the prompts, a state directory, a wallet, a hotkey) and every transient failure (hub, chain, network, our own disk or memory): fix the argument, or try again |

A check that could not reach a verdict is transient (2), except when the repo's own files
are what failed it (`distil.checks.codes.is_verdict`: a checker crash the repo triggers,
a check that overran its deadline), which validators count as strikes until the model is
refused: 1.

The lowest module of `distil/`: it imports nothing, so every program (the neurons, every
room's CLI) can share it. `template/` knows nothing of distillation; its one command
(`python -m template.mock_chain`) follows the same table with its own literals.
"""

EXIT_OK = 0
EXIT_VERDICT = 1
EXIT_ERROR = 2
