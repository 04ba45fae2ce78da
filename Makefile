# Kassasync — two commands matter: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_SECONDS ?= 0

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint venv bench chaos clean demo browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## make run: the embedded engine with the sandbox Fortnox, a simulated till and the dashboard
## on http://127.0.0.1:$(PORT)/login (make run PORT=8081 when 8080 is taken). It ends by printing
## the admin token to paste there, the data folder and the secret key; the log goes to a file.
PORT ?= 8080
run: $(STAMP)
	@$(BIN)/kassasync demo --duration $(DEMO_SECONDS) --http-port $(PORT)

## make test: lint, types, then the whole suite with a real Kafka broker (started and stopped here).
test: $(STAMP) lint browser-deps
	bash scripts/test-with-kafka.sh

## Debian's Chromium and ChromeDriver drive the dashboard's browser test.
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends chromium chromium-driver; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## make bench: every benchmark, each figure a ratio to a baseline measured in the same run;
## writes bench/results/latest.json and prints a table.
bench: $(STAMP)
	$(BIN)/python deploy/kafka/broker.py fetch
	$(BIN)/python -m bench

CHAOS_KILLS ?= 50
CHAOS_RUNTIME ?= both

## make chaos: 50 SIGKILLs per runtime (Kafka: plus one broker restart), compared with an
## uninterrupted run of the same workload; prints one JSON line per runtime.
chaos: $(STAMP)
	$(BIN)/python deploy/kafka/broker.py fetch
	$(BIN)/python -m chaos --kills $(CHAOS_KILLS) --runtime $(CHAOS_RUNTIME)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache test-artifacts
