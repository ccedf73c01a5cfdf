# The two commands of the README: `make demo` and `make test`.  Each builds (or reuses)
# the virtual environment $(VENV); torch is pinned by constraints.txt so that the local
# CPU wheel is used instead of a multi-GB CUDA build.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip install --disable-pip-version-check -qq -c constraints.txt

# The installer (INSTALLER=uv, the default, or pip): uv (pinned; pip puts it into the venv) resolves, downloads and
# installs the same versions from the same sources as pip in less than half the time (benchmarks/README.md, "CI
# phases"); pip does it all when INSTALLER=pip, when uv cannot be had, or when it fails.  uv does not read pip's
# configuration, so it is given pip's package sources and constraints (`pip config list`: the find-links directory of
# the local CPU torch wheel, the local extra indexes), pip's choice among indexes (the highest version wherever it is:
# unsafe-best-match), and .pyc compilation as pip does it (this machine sets PYTHONDONTWRITEBYTECODE, so an
# uncompiled module would be compiled again at every import).
INSTALLER ?= uv
UV_VERSION := 0.13.9
pip_config = $(shell $(PYTHON) -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.$(1)='\(.*\)'$$/\1/p" | sort -u)
UV_SOURCES = $(addprefix --index-url ,$(call pip_config,index-url)) \
	$(addprefix --extra-index-url ,$(call pip_config,extra-index-url)) \
	$(addprefix --find-links ,$(call pip_config,find-links)) $(addprefix -c ,$(call pip_config,constraint))
UV = $(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt --index-strategy unsafe-best-match \
	--compile-bytecode $(UV_SOURCES)
# $(call install,ARGS): install ARGS into the venv with uv if it is there, else (or if uv fails) with pip.
install = $(if $(filter uv,$(INSTALLER)),{ [ -x $(BIN)/uv ] && $(UV) $(1); } || )$(PIP) $(1)

.PHONY: demo test test-layers test-fast test-slow lint typecheck venv clean chromium

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(if $(filter uv,$(INSTALLER)),$(PIP) uv==$(UV_VERSION) >/dev/null 2>&1 || echo "uv $(UV_VERSION) could not be installed: installing with pip")
	# +cpu: the local CPU wheel or nothing (never the multi-GB CUDA build of the same version)
	$(call install,torch==2.13.0+cpu)
	$(call install,-e '.[test]')
	# BackPACK (test reference for per-example gradients) declares torchvision, which would pull a CUDA torch
	$(call install,--no-deps backpack-for-pytorch==1.7.1 einops unfoldNd)
	$(BIN)/python -c "import mtlens, torch, pytest, backpack; assert torch.__version__ == '2.13.0+cpu', torch.__version__"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mtlens study mnist1d_split --seeds 8 --config configs/demo.yaml --workers 2 --store runs/demo --report reports/demo

# Everything CI enforces: lint, typecheck and both test layers (unit and integration), slow tests excluded.  Two jobs
# at a time (-j2): the venv build beside Chromium's install, then mypy (single-threaded) beside pytest, which saves
# about mypy's time; `make test` fails if any part fails.  Output is not synchronized (make would hold pytest's until
# it ends): mypy's lines may land among pytest's dots.
test:
	$(MAKE) --no-print-directory -j2 lint typecheck test-layers

# pytest-xdist workers of the test targets: one per CI core (most tests use one torch thread; the suite took 559 s
# serially and 325 s with 2 workers on the idle 2-core VM, benchmarks/README.md "CI phases").  TEST_WORKERS=0 runs
# in one process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist worksteal)

# Both test layers, slow tests excluded (the pytest part of `make test`).
test-layers: $(STAMP) chromium
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"

# The inner loop: unit and property tests only (no training runs, subprocess kills, Ray or Chromium).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow and not integration"

# ruff: the lint rules and the formatting of pyproject.toml [tool.ruff].
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

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
