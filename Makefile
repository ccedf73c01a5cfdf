# The two commands of the README: `make demo` and `make test`.  Each builds (or reuses)
# the virtual environment $(VENV); torch is pinned by constraints.txt so that the local
# CPU wheel is used instead of a multi-GB CUDA build.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt

.PHONY: demo test test-slow venv clean chromium

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

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q -m "not slow"

# Headless Chromium for the report's browser test (Debian package; CI runs as root).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs reports
