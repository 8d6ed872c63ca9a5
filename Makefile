# The two commands: `make demo` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.distil-installed
# The CPU build of torch for tests and the demo. On a machine without the local CPU
# wheel, add `TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"`.
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: test demo install clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,docs]'
	@$(PY) -c "import bittensor, torch, transformers; print('installed: bittensor', bittensor.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
	@touch $@

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

DEMO_DIR ?= demo-output
DEMO_EPOCHS ?= 3

# The validator in mock mode: a tiny teacher and graded students (plus a copy, a re-sharded
# copy, a hostile repo and an untrained model) committed on the in-memory chain; a few
# epochs on CPU; the final state; a W&B offline run under $(DEMO_DIR)/validator/wandb.
# Each run starts its validator afresh: only $(DEMO_DIR)/validator (this target's own state)
# is removed; the builder replaces only what it wrote, and anything else in $(DEMO_DIR)
# (your models under models/, the whole-loop validator's state and chain files) is kept.
demo: $(STAMP)
	rm -rf $(DEMO_DIR)/validator
	$(PY) -m distil.demo build $(DEMO_DIR)
	$(PY) neurons/validator.py --mock --mock.scenario $(DEMO_DIR)/scenario.json \
		--neuron.epochs $(DEMO_EPOCHS) --neuron.full_path $(DEMO_DIR)/validator --neuron.axon_off \
		--wandb.offline --eval.prompts_file $(DEMO_DIR)/prompts.jsonl \
		--eval.n_prompts 8 --eval.max_new_tokens 32 --checks.max_params 100000000
	$(PY) -m distil.state_cli show --state-dir $(DEMO_DIR)/validator

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis site
