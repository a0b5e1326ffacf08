# memsync: every target does its own set-up, so a fresh clone needs only `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test up bench reliability lint clean

$(PY_STAMP): requirements.txt requirements-dev.txt
	@echo "==> Python environment ($(VENV)) from requirements*.txt"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@echo "==> Azurite from package-lock.json (npm ci)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(PY_STAMP) $(NODE_STAMP)

demo: setup
	@$(PY) -m devstack.demo

up: setup
	@$(PY) -m devstack.up

test: setup
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@echo "==> Chromium for the console's browser tests (Debian's package; nothing is downloaded by Playwright)"
	@$(PY) -m tests.integration.console.chromium
	@echo "==> tests (unit and integration: Azurite + cloud simulator + local Functions host)"
	@$(PY) -m pytest

bench: setup
	@$(PY) -m bench

reliability: setup
	@$(PY) -m tests.reliability

lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache test-output
