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

demo: $(STAMP)
	$(PY) neurons/miner.py --dry-run --model-repo distil-demo/tiny-student --revision 0123456789abcdef0123456789abcdef01234567

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis site
