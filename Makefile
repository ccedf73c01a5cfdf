# The two commands of the README: `make demo` and `make test`.  Each builds (or reuses)
# the virtual environment $(VENV); torch is pinned by constraints.txt so that the local
# CPU wheel is used instead of a multi-GB CUDA build.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: demo test test-fast test-slow lint typecheck venv clean chromium

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(PIP) -q -e '.[test]' 2>&1 | grep -v "is ignored" || true
	# BackPACK (test reference for per-example gradients) declares torchvision, which would pull a CUDA torch
	$(PIP) -q --no-deps backpack-for-pytorch==1.7.1 einops unfoldNd 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import mtlens, torch, pytest, backpack"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtlens study mnist_pair --seeds 8 --config configs/demo.yaml --store runs/demo --report reports/demo

# Everything CI enforces: lint and typecheck, then both test layers (unit and integration), slow tests excluded.
test: lint typecheck $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow"

# The inner loop: unit and property tests only (no training runs, subprocess kills, Ray or Chromium).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration"

# ruff: the lint rules and the formatting of pyproject.toml [tool.ruff].
lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

# mypy (pyproject.toml [tool.mypy], checks src/); part of `make test`.
typecheck: $(STAMP)
	$(BIN)/mypy

# Headless Chromium for the report's browser test (Debian package; CI runs as root).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs reports
