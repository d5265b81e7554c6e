# One entry point for people and CI. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv run test lint infra-check format bench clean

help:
	@echo "make run    - set up and run the whole system locally (emulators + functions)"
	@echo "make test   - set up and run every check: lint, types, unit, integration, end-to-end, infra"
	@echo "make bench  - run the benchmarks, write bench/results.{json,md}; fails when a target is missed"
	@echo "make bench-docs - refresh docs/benchmarks.md from bench/results.json"
	@echo "make chaos  - chaos and fuzz run of the whole local system (not part of make test; docs/chaos.md)"
	@echo "make lint   - ruff and mypy only"
	@echo "make infra-check - offline Bicep validation (pycep parse + checkov with custom Service Bus checks)"

# python-qpid-proton (the local Service Bus peer) compiles with OpenSSL headers for its TLS port.
$(STAMP): requirements-dev.txt pyproject.toml
	@command -v gcc >/dev/null || { echo "a C compiler (gcc) is needed to build python-qpid-proton"; exit 1; }
	@if ! dpkg -s libssl-dev >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq libssl-dev >/dev/null; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
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

# checkov pins clash with the app's dependencies, so it lives in .venv-checkov (created on first use).
infra-check:
	infra/check.sh

test: lint infra-check
	$(BIN)/python -m pytest

bench: venv
	$(BIN)/python -m bench

# Copies the committed results into docs/benchmarks.md; `make bench` itself never edits documents.
.PHONY: bench-docs
bench-docs: venv
	$(BIN)/python -m bench.report --docs

# Faults, peer restarts, resends and fuzzed messages through the whole local system; minutes, not seconds.
.PHONY: chaos
chaos: venv
	$(BIN)/python -m tests.chaos

# Regenerate the locks (exact versions with hashes) from their short inputs. Flex Consumption runs
# Python 3.11 on Linux; the checkov lock is for the developer's and CI's own Python.
LOCK := $(BIN)/uv pip compile --quiet --generate-hashes --python-platform linux --custom-compile-command "make lock"
.PHONY: lock
lock: venv
	$(LOCK) --python-version 3.11 requirements.in -o requirements.txt
	$(LOCK) --python-version 3.11 requirements-dev.in -o requirements-dev.txt
	$(LOCK) --python-version 3.11.7 requirements-checkov.in -o requirements-checkov.txt

clean:
	rm -rf $(VENV) .venv-checkov .pytest_cache .mypy_cache .ruff_cache
