# simtopup — the two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test test-postgres lint bench lock messages clean

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python 3.12+ interpreter found (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

install: $(STAMP)

# The Debian packages: receipts need a CJK font; the tests also read PDFs and drive a browser.
# Only the missing ones are installed; a no-op when all are present (scripts/install-system-deps).
# A demo installation: the sandbox gateway takes the payments (SIMTOPUP_SANDBOX_ALLOWED=1),
# secrets are generated in the data directory; `demo` and `serve` say so in their output.
run: export SIMTOPUP_SANDBOX_ALLOWED ?= 1
run: install
	@scripts/install-system-deps fonts-noto-cjk
	$(BIN)/simtopup migrate --no-input
	SIMTOPUP_SITE_URL=$${SIMTOPUP_SITE_URL:-http://$(HOST):$(PORT)} $(BIN)/simtopup demo
	$(BIN)/simtopup serve --host $(HOST) --port $(PORT)

test: install
	@scripts/install-system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install
	@scripts/install-system-deps
	SIMTOPUP_DATABASE_URL=$${SIMTOPUP_DATABASE_URL:-$(PG_URL)} $(BIN)/pytest $(PYTEST_ARGS)

# lint-imports: no import cycle between packages, and packages import downwards only
# (the contracts are in pyproject.toml).
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: install
	$(BIN)/python bench/run.py

# Regenerate the lock file from pyproject.toml (needs the package index).
lock: install
	$(BIN)/pip-compile --quiet --strip-extras --extra dev --allow-unsafe --output-file requirements.lock pyproject.toml

messages: install
	cd src/simtopup && ../../$(BIN)/simtopup makemessages -l zh_Hans -l zh_Hant -l en --no-obsolete && ../../$(BIN)/simtopup compilemessages

clean:
	rm -rf $(VENV) var/*.sqlite3*
