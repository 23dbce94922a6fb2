# Two entry points on a fresh clone with only python3: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit reliability bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/omni-assets demo

# ruff, then the import contracts between the layers (pyproject.toml [tool.importlinter]).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q -p no:cacheprovider -m "not reliability"

# Crashes, provider and storage faults, bad input, secrets (docs/reliability.md); ~7 minutes.
reliability: setup
	$(BIN)/pytest -q -p no:cacheprovider -m reliability omni_assets_tests/reliability

# The whole suite: lint, types, every test, the reliability suite.
test: lint typecheck unit reliability

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
