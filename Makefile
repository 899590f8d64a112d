# Smart Triage — run `make help` for the list of targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
TICKETS ?= 300
RATE ?= 25

.PHONY: help setup demo demo-json demo-kafka test test-unit lint typecheck bench clean

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Install system packages if missing, then the virtualenv from uv.lock.
	@bash infra/bootstrap.sh

demo: setup ## Run the main job on the embedded default (TICKETS, RATE) with progress bars.
	$(BIN)/triage demo --tickets $(TICKETS) --rate $(RATE)

demo-json: setup ## The main job, non-interactive; prints the summary as JSON.
	$(BIN)/triage demo --tickets $(TICKETS) --rate $(RATE) --json

demo-kafka: setup ## The main job through Debezium, Kafka Connect and a local KRaft broker.
	$(BIN)/triage demo --cdc kafka --tickets $(TICKETS) --rate $(RATE)

test: ## Run the whole test suite (unit, integration, end-to-end) on real services.
	@bash infra/bootstrap.sh --with-browser
	$(BIN)/pytest

UNIT_TESTS = tests/models tests/connectors tests/sinks tests/pipelines tests/api \
	tests/evaluation tests/triage tests/test_architecture.py

test-unit: setup ## Unit tests only (nothing running needed), and the docstring examples.
	$(BIN)/pytest $(UNIT_TESTS) models connectors sinks pipelines api triage evaluation

lint: setup ## Ruff lint and format check.
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: setup ## Mypy over the packages.
	$(BIN)/mypy

bench: setup ## Benchmark the embedded path; prints JSON.
	$(BIN)/triage bench

clean: ## Remove local state (services, recovery, demo runs).
	rm -rf .state
