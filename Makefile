# push_service developer commands. `make run` and `make test` do all set-up themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_DIR := tests/pushserver

.PHONY: run test lint fmt bench services install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

services:
	@scripts/ensure_services.sh

run: $(STAMP) services
	$(BIN)/push-service

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix $(NODE_DIR)
	touch $@

test: $(STAMP) $(NODE_DIR)/node_modules/.installed services
	@scripts/ensure_browser.sh
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check push_service tests scripts
	$(BIN)/ruff format --check push_service tests scripts
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format push_service tests scripts
	$(BIN)/ruff check --fix push_service tests scripts

bench: $(STAMP) services
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info $(NODE_DIR)/node_modules .pytest_cache .mypy_cache
