# Casebook: thin wrappers over the CLI and the tools. Every target calls .venv/bin/... itself, so
# nothing needs activating; `make setup` (a prerequisite of the others) builds .venv from the lock file.
#
#   make demo    every case study's flow set end to end, each followed by its report
#   make test    the test suite            make lint   ruff
#   make repro   `dvc repro` on one shared Prefect server (scripts/prefect-server.sh)
#   make serve   the ad_click BentoML service on 127.0.0.1:3000
#   make ui      the Prefect UI (background) and the Evidently UI (foreground)
#   make deployments   register prefect.yaml's schedules; make worker   run them
#   make bench   the benchmarks            make clean  remove every generated artefact
#   make lock    regenerate requirements.lock from .venv

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CASEBOOK_PREFECT_PORT ?= 4200
EVIDENTLY_PORT ?= 8000
DVC_ARGS ?=
HOME_DIR := $(or $(CASEBOOK_HOME),$(CURDIR))

# Tools the CLI starts (bentoml, prefect, dvc) are found on PATH by subprocesses, so .venv/bin goes first.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export CASEBOOK_PREFECT_PORT
# The telemetry opt-outs live in one place (pipelines/core/settings.py); tools started here directly
# (dvc, evidently ui) get them too. Recursive `=`: evaluated when used, i.e. after `setup` ran.
OPT_OUT = $(shell $(BIN)/python -c 'from pipelines.core.settings import TELEMETRY_OPT_OUT as t; \
	print(" ".join(f"{k}={v}" for k, v in t.items()))')

.PHONY: help setup demo test lint serve ui bench repro deployments worker clean lock

help:
	@sed -n '4,11p' $(firstword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

setup: $(STAMP)

# Reinstalls only when the lock file or the project metadata changed.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --no-input -r requirements.lock
	$(BIN)/python -m pip install --no-input --no-deps -e .
	@# Optimized bytecode for the services (they run with PYTHONOPTIMIZE=1, see pipelines/core/serving.py):
	@# compiled once here, not by every worker at start. A few test files of torch and others are
	@# Python 3.12 syntax and do not compile on 3.11; that is expected, so only the count is shown.
	@$(BIN)/python -O -m compileall -q -j 0 $(VENV)/lib/python3.11/site-packages $(CURDIR)/pipelines \
		$(CURDIR)/services 2>&1 | grep -c "^\*\*\* Error" | sed 's/^/optimized bytecode: files skipped (3.12 syntax): /' || true
	@touch $@

demo: setup
	$(BIN)/casebook run all

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

serve: setup
	$(BIN)/casebook serve ad_click

ui: setup
	scripts/prefect-server.sh start
	@echo "Prefect UI:   $$(scripts/prefect-server.sh url | sed 's#/api$$##')  (stop: scripts/prefect-server.sh stop)"
	@echo "Evidently UI: http://127.0.0.1:$(EVIDENTLY_PORT)  (Ctrl-C stops it)"
	@mkdir -p $(HOME_DIR)/monitoring/workspace
	env $(OPT_OUT) $(BIN)/evidently ui --workspace $(HOME_DIR)/monitoring/workspace \
		--host 127.0.0.1 --port $(EVIDENTLY_PORT)

bench: setup
	@if [ -f benchmarks/run_all.sh ]; then bash benchmarks/run_all.sh; \
	else for f in benchmarks/[!_]*.py; do [ -e "$$f" ] || continue; echo "== $$f"; $(BIN)/python "$$f"; done; fi

# One long-lived Prefect server for every stage: without it each `casebook run` DVC starts would boot
# Prefect's temporary server (~10 s each). The server keeps running afterwards for the next repro and
# the UI; stop it with `scripts/prefect-server.sh stop`. `make repro DVC_ARGS=--force` reruns all.
repro: setup
	scripts/prefect-server.sh start
	env $(OPT_OUT) PREFECT_API_URL="$$(scripts/prefect-server.sh url)" $(BIN)/dvc repro $(DVC_ARGS)

# The scheduled deployments of prefect.yaml on the shared server, in a process work pool that runs one
# flow at a time (monitor and retrain share the feature store and the model registry).
deployments: setup
	scripts/prefect-server.sh start
	export PREFECT_API_URL="$$(scripts/prefect-server.sh url)"; \
	$(BIN)/prefect work-pool inspect casebook-local >/dev/null 2>&1 \
		|| $(BIN)/prefect work-pool create casebook-local --type process; \
	$(BIN)/prefect work-pool set-concurrency-limit casebook-local 1; \
	$(BIN)/prefect --no-prompt deploy --all --prefect-file prefect.yaml

worker: setup
	scripts/prefect-server.sh start
	env $(OPT_OUT) PREFECT_API_URL="$$(scripts/prefect-server.sh url)" \
		$(BIN)/prefect worker start --pool casebook-local

clean:
	-@[ ! -x scripts/prefect-server.sh ] || scripts/prefect-server.sh stop
	rm -rf data models metrics plots monitoring/workspace monitoring/reports .casebook

# The lock pins the tested set: everything in .venv but the project itself. The CPU build of torch is
# written as `torch==2.13.0`: pip takes the local CPU wheel where one is on disk (find-links) and
# PyPI's build elsewhere, while `+cpu` would only resolve where that file exists.
lock:
	@test -x $(BIN)/python || { echo "no $(VENV): run 'make setup' first" >&2; exit 1; }
	{ echo "# The pinned, tested dependency set of Casebook, installed by 'make setup' and .ci/run."; \
	  echo "# pyproject.toml declares the ranges; this file pins what was tested. Regenerate with"; \
	  echo "# 'make lock' (pip freeze of .venv, the editable project and torch's +cpu label left out)"; \
	  echo "# after changing pyproject.toml and installing into .venv; then run 'make test'."; \
	  $(BIN)/python -m pip freeze --exclude-editable \
	    | grep -v -i '^casebook[= @]' | sed -E 's/^(torch==[^+]+)\+cpu$$/\1/'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
	@grep -c '==' requirements.lock | xargs echo "pinned packages:"
