# Two commands do all set-up on a fresh machine:
#   make test   creates .venv (once), installs the pinned set, runs unit + notebook tests
#   make demo   creates .venv (once), runs the demo pipeline on the embedded CPU default
#   make lab    creates .venv (once), opens notebooks/ in JupyterLab with this project's kernel
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: test lint demo lab venv bench clean-venv

venv: $(STAMP)

# One pip call with torch pinned beside everything else, so pip never pulls a CUDA build of torch.
$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/lock.txt -e .
	@touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# lint, then the unit tests and the doctests of the package, then the notebooks under nbval
test: lint
	$(PY) -m pytest -q --doctest-modules tests sapo_core $(PYTEST_ARGS)
	tmp=$$(mktemp -d) && SAPO_FIGURES_DIR=$$tmp/figures SAPO_RUNS_DIR=$$tmp/runs $(PY) -m pytest -q --nbval-lax notebooks/

demo: $(STAMP)
	$(PY) -m sapo_core.demo

# JupyterLab's log prints the URL (with its token) to open; LAB_ARGS passes options,
# e.g. "--no-browser --port 8890".
# The kernel "python3" is this .venv's Python (the environment's kernel spec is preferred over a user one).
LAB_ARGS ?=
lab: $(STAMP)
	JUPYTER_PREFER_ENV_PATH=1 $(PY) -m jupyterlab --notebook-dir=notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
