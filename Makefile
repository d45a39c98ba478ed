# psinfor developer tasks. `make check` is what CI runs (.ci/run); it installs everything it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup runtime run stop lint format typecheck unit integration test check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) runtime ## create .venv, install Python deps and the Kafka/registry jars (all cached)

runtime: $(STAMP) ## resolve the Kafka and Apicurio jars from Maven Central (cached)
	$(BIN)/psinfor dev fetch

run: setup ## run the whole integration on the sandboxes until Ctrl-C (psinfor dev up; RUN_ARGS="--with-traffic 2")
	$(BIN)/psinfor dev up --no-build $(RUN_ARGS)

stop: $(STAMP) ## stop a Kafka or registry left running detached (`make run` itself stops everything on Ctrl-C)
	-$(BIN)/psinfor dev registry down
	-$(BIN)/psinfor dev kafka down

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP) ## mypy strict on every package
	$(BIN)/mypy

unit: $(STAMP) ## unit tests only (no network)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup ## integration tests against the real broker and registry
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test: setup ## every test suite (unit, integration, e2e)
	$(BIN)/pytest $(PYTEST_ARGS)

check: setup lint typecheck test ## what CI runs: install, lint, type-check, all tests

clean: ## remove the virtualenv and caches (the Maven cache in ~/.m2 stays)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
