# Kassasync — two commands matter: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_SECONDS ?= 0

.PHONY: run test lint venv bench chaos clean demo

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## make run: the embedded engine with the sandbox Fortnox, a simulated till and the dashboard.
run: $(STAMP)
	$(BIN)/kassasync demo --duration $(DEMO_SECONDS)

## make test: lint, types, then the whole suite with a real Kafka broker (started and stopped here).
test: $(STAMP) lint
	bash scripts/test-with-kafka.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache test-artifacts
