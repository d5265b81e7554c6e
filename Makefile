# One entry point for people and CI. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv run test lint format bench clean

help:
	@echo "make run    - set up and run the whole system locally (emulators + functions)"
	@echo "make test   - set up and run every check: lint, types, unit, integration, end-to-end, infra"
	@echo "make bench  - run the benchmarks and write bench/results.{json,md}"
	@echo "make lint   - ruff and mypy only"

# python-qpid-proton (the local Service Bus peer) compiles with OpenSSL headers for its TLS port.
$(STAMP): requirements.txt requirements-dev.txt
	@command -v gcc >/dev/null || { echo "a C compiler (gcc) is needed to build python-qpid-proton"; exit 1; }
	@if ! dpkg -s libssl-dev >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq libssl-dev >/dev/null; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: $(STAMP)

run: venv
	$(BIN)/python -m local

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
