# Two entry points: `make demo` runs the product, `make test` proves it. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint typecheck unit bench clean

$(BIN)/storeedge: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/storeedge

venv: $(BIN)/storeedge

demo: venv
	$(BIN)/storeedge demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

# The bench extra (persist-queue, thingsboard-gateway, py-spy) goes into the same .venv.
$(VENV)/.bench-extra: pyproject.toml $(BIN)/storeedge
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

bench: venv $(VENV)/.bench-extra
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
