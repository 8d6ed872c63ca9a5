"""What the sandbox's fork server imports once, so each child starts in milliseconds
(`distil.checks.sandbox`). Imports only: no CUDA is initialised here, no model is built."""

import torch  # noqa: F401
import transformers  # noqa: F401
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401
# The model families students are usually built from; others import in the child (about 1 s).
from transformers.models.qwen3 import modeling_qwen3  # noqa: F401
from transformers.models.qwen3_5 import modeling_qwen3_5  # noqa: F401
from transformers.models.qwen3_5_moe import modeling_qwen3_5_moe  # noqa: F401
from transformers.models.qwen2 import modeling_qwen2  # noqa: F401
from transformers.models.llama import modeling_llama  # noqa: F401

import distil.checks.loading  # noqa: F401,E402
import distil.checks.tokenizer  # noqa: F401,E402
