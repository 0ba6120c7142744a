# Set-up and the two commands. `make test` / `make demo` create .venv when missing.
# This machine has the CPU build of torch 2.13.0 on disk; a bare `torch` would pull a multi-GB
# CUDA build. Elsewhere, override: `make test TORCH_SPEC=torch`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: install test demo lint bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(VENV)/bin/weightspace demo

lint: $(VENV)/.installed
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks examples

bench: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/layers.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
