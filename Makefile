# Content Fabric — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONUNBUFFERED := 1

.PHONY: help install demo test test-fast lint typecheck bench clean services

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with everything (system packages too, when missing)

$(STAMP): pyproject.toml constraints.txt scripts/install-system.sh
	scripts/install-system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools<81' wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[voice,test]'
	$(BIN)/pip install -q -c constraints.txt --no-deps openai-whisper==20250625
	touch $(STAMP)

demo: install ## run the whole flow on the embedded defaults (demo video -> local platform folder)
	$(BIN)/python run.py --demo --log-level WARNING

test: install ## run the tests (starts a Kafka-compatible test broker unless FABRIC_KAFKA is set)
	scripts/test.sh

test-fast: install ## the tests that need no service
	$(BIN)/python -m pytest -m "not kafka and not mariadb and not mosquitto and not slow" -q

lint: install ## ruff + mypy
	$(BIN)/ruff check fabric consumers producers tests bench run.py
	$(BIN)/ruff format --check fabric consumers producers tests bench run.py
	$(BIN)/mypy

bench: install ## the benchmarks (each prints a table; --json for machines)
	scripts/with-broker.sh $(BIN)/python bench/bus.py
	$(BIN)/python bench/tasks.py
	$(BIN)/python bench/voice.py
	$(BIN)/python bench/upload.py
	$(BIN)/python bench/prepare.py

clean: ## remove the venv, embedded data and caches
	rm -rf $(VENV) .fabric .broker .pytest_cache .mypy_cache .ruff_cache demo-out
