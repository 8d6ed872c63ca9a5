"""`distil-train`: a reference distillation trainer whose loss is the validators' score.

Modules: `loss` (chunked full-vocabulary KL with gradients), `data` (prompts and batches,
as distil-eval samples and tokenises them), `targets` (teacher greedy continuations via
the validators' teacher pass; student samples for on-policy steps), `loop` (the
accelerate training loop), `checkpoint` (checkpoints in safetensors and JSON, never a
pickle), `output` (the submission directory, the pre-checks and the held-out score), `run`
(one run end to end), `cli` (the flags).
"""
