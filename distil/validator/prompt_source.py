"""The validator's prompt source, built from `--eval.*` and checked once at start-up.

A prompts file that cannot give a round its `--eval.n_prompts` prompts (missing, not
UTF-8, a line that is not a JSON object with text or input_ids, too few usable lines)
would fail every round; a mock run whose dataset cannot be reached would fail every epoch
with a connection error. Both are refused before the first epoch with one clear line.
"""

from __future__ import annotations

from distil.eval.prompts import DatasetPromptSource, JsonlPromptSource, PromptSource, prompts_file_problem
from distil.eval.spec import EvalSpec


class PromptSourceError(ValueError):
    """The prompt source cannot serve rounds; the message names the flag to fix."""


def make_prompt_source(spec: EvalSpec, prompts_file: str | None) -> PromptSource:
    if prompts_file:
        return JsonlPromptSource(prompts_file)
    return DatasetPromptSource(
        spec.dataset, spec.dataset_revision, spec.text_column, spec.dataset_shards,
        spec.rows_per_shard, spec.dataset_data_dir, spec.prompt_cache_dir or None,
    )


def check_prompt_source(source: PromptSource, n_prompts: int, offline: bool) -> None:
    """Raise PromptSourceError unless `source` can serve `n_prompts` prompts per round.

    A prompts file is read in full and sampled once. A dataset is only listed (its rows
    are streamed by the rounds), and only when `offline` (mock runs): a live validator
    whose dataset is briefly unreachable keeps going and retries each round.
    """
    if isinstance(source, JsonlPromptSource):
        problem = prompts_file_problem(source.path, n_prompts, "--eval.prompts_file", source.text_column)
        if problem:
            raise PromptSourceError(f"{problem} (--eval.n_prompts is {n_prompts})")
        return
    if offline and isinstance(source, DatasetPromptSource):
        try:
            source.list_files()
        except Exception as e:  # any failure to reach the dataset: no round could ever run
            from huggingface_hub import constants

            detail = " ".join(f"{type(e).__name__}: {e}".split())[:300]
            raise PromptSourceError(
                f"cannot reach the prompt dataset {source.name!r} on the hub at {constants.ENDPOINT} ({detail}); "
                "mock and offline runs need "
                "--eval.prompts_file FILE (JSONL, one {\"text\": ...} per line; `python -m distil.demo build` writes one)"
            ) from None
