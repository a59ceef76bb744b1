# Two commands do all set-up on a fresh machine:
#   make test   creates .venv (once), installs the pinned set, runs unit + notebook tests
#   make demo   creates .venv (once), runs the demo pipeline on the embedded CPU default
#   make paper  the demo plus the erf temperature sweep: the paper's Figures 1-5 and Table 1 on CPU
#   make study  a gate study beyond the paper (gates, Student-t tails, trust-region methods x tau x seeds) on CPU
#   make lab    creates .venv (once), opens notebooks/ in JupyterLab with this project's kernel
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test test-fast lint demo paper study lab venv bench clean-venv

venv: $(STAMP)

# One pip call with torch pinned beside everything else, so pip never pulls a CUDA build of torch. --no-compile:
# modules are byte-compiled when first imported, not all ~10k at install (59 s instead of 198 s, LOG.md); for that,
# Python must be allowed to write its bytecode caches (a shell that sets PYTHONDONTWRITEBYTECODE would otherwise make
# every process, kernel and worker of the tests compile torch and transformers again: 311 s instead of 186 s).
unexport PYTHONDONTWRITEBYTECODE
$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements/lock.txt -e .
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# lint, then the unit tests and the doctests of the package, then the notebooks under nbval. pytest-xdist runs one
# worker per core (a test file stays on one worker: its module fixtures are shared), each on one torch thread:
# 186 s instead of 280 s on 2 cores (LOG.md); two workers with two threads each oversubscribe the cores.
XDIST := -n auto --dist loadfile
test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(XDIST) --doctest-modules tests sapo_core $(PYTEST_ARGS)
	tmp=$$(mktemp -d) && OMP_NUM_THREADS=1 SAPO_FIGURES_DIR=$$tmp/figures SAPO_RUNS_DIR=$$tmp/runs \
		$(PY) -m pytest -q $(XDIST) --nbval-lax notebooks/

# the fast tier (<= 60 s on 2 cores): lint, then every test not marked slow (pyproject's markers: tests that train,
# run notebooks, start processes or pools, or drive a browser); `make test` (what CI runs) still runs them all
test-fast: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q $(XDIST) -m "not slow" tests $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m sapo_core.demo

# the demo plus the erf temperature sweep of the paper's Figures 2 and 5 (<= 20 min on 2 cores)
paper: $(STAMP)
	$(PY) -m sapo_core.demo --paper

# the gate study of notebook 06 (sapo_core/study.py: its arms; <= 30 min on 2 cores, LOG.md)
study: $(STAMP)
	$(PY) -m sapo_core.study

# JupyterLab's log prints the URL (with its token) to open; LAB_ARGS passes options,
# e.g. "--no-browser --port 8890".
# The kernel "python3" is this .venv's Python (the environment's kernel spec is preferred over a user one).
LAB_ARGS ?=
lab: $(STAMP)
	JUPYTER_PREFER_ENV_PATH=1 $(PY) -m jupyterlab --notebook-dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# every benchmark, even after one misses; then each one's result lines `bench_<name>: <metric>=X (target ...)
# pass|FAIL`; exits non-zero if any missed (bench_trainer exits 3 when its interval cannot decide: not a pass)
bench: $(STAMP)
	@set -o pipefail; tmp=$$(mktemp -d); missed=0; \
	for b in benchmarks/bench_*.py; do \
		echo "== $$b"; \
		$(PY) $$b 2>&1 | tee $$tmp/out; rc=$$?; \
		grep -E '^bench_[a-z_]+: [a-z_]+=' $$tmp/out >> $$tmp/summary || echo "$$b: no result line" >> $$tmp/summary; \
		if [ $$rc -ne 0 ]; then missed=1; echo "$$b: exit $$rc" >> $$tmp/summary; fi; \
	done; \
	echo "== summary"; cat $$tmp/summary; rm -rf $$tmp; exit $$missed

clean-venv:
	rm -rf $(VENV)
