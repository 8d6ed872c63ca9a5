"""Check codes: stable upper-case identifiers, the reason class each one implies, and what it
means for a miner. `docs/checks.md` carries the same table (a test keeps them in step).

Reason classes:

* ``INVALID`` — the model fails a pre-check; final for that commitment.
* ``COPY`` — the same weights as an earlier commitment; final.
* ``REMOVED`` — the repo or pinned revision was public once and is gone now; final.
* ``UNAVAILABLE`` — not public (yet): missing, private, gated, or the pinned revision not
  pushed. Not a verdict by itself: the validator re-checks each epoch and
  `publication_verdict` turns it into pending, INVALID (grace period over) or REMOVED.
* ``TRANSIENT`` — the hub or the checker could not answer (429, 5xx, timeout, out of
  memory): retry later, never a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

INVALID = "INVALID"
COPY = "COPY"
REMOVED = "REMOVED"
UNAVAILABLE = "UNAVAILABLE"
TRANSIENT = "TRANSIENT"
REASONS = (INVALID, COPY, REMOVED, UNAVAILABLE, TRANSIENT)


@dataclass(frozen=True)
class Code:
    code: str
    reason: str
    meaning: str
    action: str


_TABLE = [
    # -- the repo ---------------------------------------------------------------------
    Code("NOT_PUBLIC", UNAVAILABLE, "The repo is missing, private, gated or disabled.",
         "Make the repo public (not gated) before the grace period ends (one day by default)."),
    Code("REVISION_NOT_FOUND", UNAVAILABLE, "The committed revision does not exist in the repo.",
         "Push the commit you pinned before the grace period ends; the commitment cannot be changed."),
    Code("REMOVED", REMOVED, "A repo or revision once seen public is gone, private or gated now.",
         "Nothing: the commitment is disqualified. Keep scored repos public and unchanged."),
    Code("HUB_TRANSIENT", TRANSIENT, "The hub answered 429/5xx, timed out, or did not finish answering within "
         "the call's overall deadline (a hub or proxy trickling its answer).",
         "Nothing: the check is retried later."),
    Code("HUB_ERROR", TRANSIENT, "The hub gave an answer the checker did not understand.",
         "Nothing usually; if it persists, report it with the detail."),
    Code("CHECKER_ERROR", TRANSIENT, "The checker crashed on this repo (a bug the repo's files trigger).",
         "Nothing: the check is retried; report persistent failures."),
    # -- files ------------------------------------------------------------------------
    Code("SYMLINK", INVALID, "A file is a symlink leading out of the repo (or nowhere).",
         "Commit real files, not links (copy with `cp -L`)."),
    Code("REMOTE_CODE", INVALID, "Python files, or `auto_map` in config.json / tokenizer_config.json.",
         "Remove `*.py` files and `auto_map`; use an architecture transformers ships."),
    Code("FORBIDDEN_FILE", INVALID, "A file outside the allow-list (pickle/.bin, .pt, numpy, GGUF, ONNX, "
         "subdirectories, anything else).", "Delete it: only config, safetensors, tokenizer files, distil.json, "
         "README, LICENSE and .gitattributes are allowed."),
    Code("MISSING_FILE", INVALID, "config.json, the weights or the tokenizer files are missing.",
         "Upload config.json, model.safetensors (or shards and index), tokenizer.json and "
         "tokenizer_config.json."),
    Code("FILE_SIZE", INVALID, "A non-weight file is larger than allowed, or a file's size is unknown.",
         "Keep configs, tokenizer and README small; weights go in safetensors."),
    Code("WEIGHT_INDEX", INVALID, "Safetensors shards and model.safetensors.index.json disagree "
         "(stray or missing shard, tensor mapped to the wrong shard).",
         "Re-save with `save_pretrained`; upload exactly the shards the index lists."),
    # -- ownership (spec v3) ------------------------------------------------------------
    Code("OWNER_MISSING", INVALID, "The repo has no distil.json at the pinned revision, or it names no hotkey "
         "(it must be {\"hotkey\": \"<ss58>\"}). Every commitment since spec v3 names its committing hotkey; "
         "commitments from before the rule are exempt.",
         "Write it with `python neurons/miner.py --write-owner DIR` (or `distil-train --hotkey`), upload, commit "
         "the new revision from a new hotkey."),
    Code("OWNER_MISMATCH", INVALID, "distil.json names another hotkey than the one that committed this "
         "repo@revision (a copied commitment string is worth nothing).",
         "Commit only repos whose distil.json names your own hotkey: `python neurons/miner.py --write-owner DIR`."),
    Code("DUPLICATE_FILES", COPY, "The weight files are byte-identical to an earlier commitment's.",
         "Nothing: submit your own model."),
    # -- config -----------------------------------------------------------------------
    Code("CONFIG_INVALID", INVALID, "A JSON file of the repo parses but is not a JSON object, or a config "
         "field has the wrong type.",
         "Re-save the config with transformers."),
    Code("QUANTIZED", INVALID, "quantization_config in config.json, quantisation tensors (qweight, absmax, "
         "SCB, weight_scale, ...) or integer / FP8 weights.", "Publish unquantised BF16 (or F16) weights."),
    Code("VOCAB_SIZE", INVALID, "config.json's vocab_size (top level or text_config) is not the teacher's 248,320.",
         "Keep the teacher's vocabulary: vocab_size 248320."),
    Code("ARCHITECTURE", INVALID, "model_type / architectures are not an architecture transformers ships "
         "for AutoModelForCausalLM.", "Use a transformers causal-LM architecture (e.g. qwen3_5, qwen3)."),
    # -- safetensors headers ----------------------------------------------------------
    Code("HEADER_INVALID", INVALID, "A safetensors header is malformed, oversized, or its byte ranges do not "
         "match the file (holes, overlaps, trailing bytes, wrong lengths).",
         "Re-save with the `safetensors` library."),
    Code("DUPLICATE_TENSOR", INVALID, "The same tensor name appears twice (in one header or across shards).",
         "Re-save with `save_pretrained`."),
    Code("DTYPE", INVALID, "A tensor is not BF16 or F16 (F32, F64, BOOL, ...).",
         "Cast to bfloat16 before saving."),
    Code("TOO_MANY_PARAMS", INVALID, "Total parameters counted from the safetensors headers exceed the cap "
         "(5.25B).", "Make the student smaller."),
    Code("EMBEDDING_SHAPE", INVALID, "No input embedding, or the embedding / lm_head rows are not the "
         "vocabulary size (or columns not hidden_size).", "Keep embed_tokens and lm_head at 248,320 rows."),
    # -- architecture guard (config.json against the safetensors headers, meta device) --
    Code("ARCH_TOO_LARGE", INVALID, "The model config.json describes exceeds the parameter cap (5.25B), or asks "
         "for more layers or modules than the weight files could hold; refused before any weight is created.",
         "Make config.json describe the model you saved (save it with `save_pretrained`)."),
    Code("ARCH_MISSING_TENSORS", INVALID, "The model config.json describes needs tensors the weight files do not "
         "hold (e.g. more layers, or the multimodal qwen3_5_moe wrapper).",
         "Save the config and the weights together with `save_pretrained`; keep num_hidden_layers and model_type."),
    Code("ARCH_UNUSED_TENSORS", INVALID, "The weight files hold tensors the model does not load (e.g. model.visual.*, "
         "mtp.*, leftovers), or per-expert tensors not numbered 0..n-1; data the scored model never reads is refused, "
         "and one model has one set of tensor names.",
         "Save the causal LM alone (`AutoModelForCausalLM` + `save_pretrained`); drop vision and MTP weights."),
    Code("ARCH_SHAPE_MISMATCH", INVALID, "A tensor's shape differs from the one config.json implies (or the "
         "per-expert tensors cannot be fused, or the parameter totals differ).",
         "Save the config and the weights together with `save_pretrained`."),
    Code("ARCH_CONTEXT", INVALID, "The model cannot read the whole scored window (the prompt cap plus "
         "max_new_tokens: 1,024 positions by default): config.json declares a shorter context "
         "(max_position_embeddings, n_positions, ...), or a short forward at the window's last positions fails or "
         "gives non-finite logits.", "Use an architecture and config.json that take at least 1,024 positions "
         "(`distil-check` runs the same forward)."),
    # -- after download ---------------------------------------------------------------
    Code("NONFINITE", INVALID, "A weight is NaN or infinite.", "Fix the training run; publish finite weights."),
    Code("DUPLICATE_CONTENT", COPY, "The tensors (names, dtypes, shapes, bytes) equal an earlier "
         "commitment's, however sharded.", "Nothing: submit your own model."),
    Code("TOKENIZER_INVALID", INVALID, "The tokenizer does not load with AutoTokenizer (no remote code).",
         "Copy the teacher's tokenizer files unchanged."),
    Code("TOKENIZER_VOCAB", INVALID, "The tokenizer's vocabulary (token → id), merges or added/special tokens "
         "differ from the teacher's.", "Copy the teacher's tokenizer files unchanged."),
    Code("TOKENIZER_PIPELINE", INVALID, "tokenizer.json's normalizer, pre_tokenizer, decoder or post_processor "
         "differ from the teacher's file (compared as parsed JSON, before anything loads or runs them).",
         "Copy the teacher's tokenizer.json unchanged (a re-save that rebuilds the pre-tokenizer can change it)."),
    Code("TOKENIZER_MISMATCH", INVALID, "The tokenizer encodes the fixed test strings differently from the "
         "teacher's.", "Copy the teacher's tokenizer files unchanged."),
    Code("LOAD_FAILED", INVALID, "AutoModelForCausalLM.from_pretrained (trust_remote_code=False) fails.",
         "Check the model loads locally with `distil-check PATH`."),
    Code("LOAD_KEYS", INVALID, "Loading reports missing, unexpected or mismatched weights.",
         "Save with `save_pretrained` from the class transformers loads."),
    # -- bounded parsing, our own disk (issue 9 §2, §4, §6) -----------------------------
    Code("MALFORMED_JSON", INVALID, "A JSON file of the repo (config, generation config, tokenizer files, the "
         "index) cannot be parsed within bounds: invalid JSON, not UTF-8, nested deeper than 64, a number "
         "longer than 100 characters or overflowing, more than 4 million values, NaN/Infinity, a repeated key, "
         "a lone surrogate escape.",
         "Re-save the file with transformers / `json.dump` (standard JSON, UTF-8)."),
    Code("HEADER_METADATA", INVALID, "A safetensors `__metadata__` is not a string-to-string map, or the "
         "metadata of all shards together is larger than 64 KiB.",
         "Save with `save_pretrained` (it writes only {\"format\": \"pt\"}); carry no data in metadata."),
    Code("LOCAL_IO_ERROR", TRANSIENT, "The validator's own disk, cache or file table failed while reading or "
         "writing (permissions, I/O error, disk full, too many open files, a file that cannot be mapped), whatever "
         "library met it; never a verdict on the model, never a strike.", "Nothing: the check is retried; the "
         "validator's operator should fix the disk."),
    Code("PRECHECK_BUDGET", TRANSIENT, "The validator's time for this epoch's pre-check downloads ran out before "
         "or during this check.", "Nothing: the check resumes in a later epoch, in the queue's order; never a strike."),
    Code("CHECKER_OUT_OF_MEMORY", TRANSIENT, "The checker ran out of memory on a repo whose declared size fits.",
         "Nothing: the check is retried; the validator's operator should free memory."),
    # -- deadlines (issue 22 §3) ----------------------------------------------------------
    Code("CHECK_TIMEOUT", TRANSIENT, "A step that runs the repo's files (tokenizer, meta build, load, scoring, "
         "probe) ran past its deadline (10 × its estimate for the model's size on the validator's measured speed, "
         "60 s at least) and was stopped. A strike each time; at the strike limit the model is INVALID.",
         "Make the model load and run like an ordinary model of its size: no slow tokenizer regexes, no "
         "configurations that make a forward slow. `distil-check PATH` runs the same deadlines."),
    Code("CHECKER_STOPPED", TRANSIENT, "The validator was shutting down while the step ran.",
         "Nothing: the check is retried."),
]

# Whose trouble a TRANSIENT code is, for the validator's strikes (CHECK_FAILED_REPEATEDLY):
# "repo": checking this repo's own files failed; counts as a strike.
# "hub": the hub's answer; a strike only when other repos' checks in the same epoch got
#   through (an outage everyone sees is nobody's fault).
# "local": our machine (disk, cache, memory); never a strike.
TRANSIENT_SCOPES = ("repo", "hub", "local")
_TRANSIENT_SCOPE = {
    "HUB_TRANSIENT": "hub",
    "HUB_ERROR": "hub",
    "CHECKER_ERROR": "repo",
    "LOCAL_IO_ERROR": "local",
    "PRECHECK_BUDGET": "local",
    "CHECKER_OUT_OF_MEMORY": "local",
    "CHECK_TIMEOUT": "repo",
    "CHECKER_STOPPED": "local",
}

CODES: dict[str, Code] = {c.code: c for c in _TABLE}


def reason_of(code: str) -> str:
    """The reason class of a check code; KeyError names an unknown code."""
    try:
        return CODES[code].reason
    except KeyError:
        raise KeyError(f"unknown check code {code!r}") from None


def is_verdict(code: str) -> bool:
    """Whether a check that ended with `code` judged the model (exit status 1 of every program):
    every code but the TRANSIENT ones, and a TRANSIENT one whose scope is the repo's own files
    (validators count it as a strike until the model is refused). Hub and local trouble: no."""
    return reason_of(code) != TRANSIENT or transient_scope(code) == "repo"


def transient_scope(code: str) -> str | None:
    """"repo", "hub" or "local" for a TRANSIENT code (see TRANSIENT_SCOPES); None for other codes."""
    if reason_of(code) != TRANSIENT:
        return None
    return _TRANSIENT_SCOPE[code]
