# The two commands: `make run` (the service on embedded SQLite) and `make test` (the whole suite).
# Everything else installs itself on first use into .venv, pinned by constraints.txt.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080
# Two workers (the CI machine has two cores); a test file's tests stay on one worker, so its
# module-scoped servers start once; the 30 slowest tests are listed at the end, so a CI run that
# nears its 30 minutes shows where the time went. PYTEST_ARGS= runs them in one process.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=30

.PHONY: install run test lint typecheck openapi wasm bench opa dist clean

# Both distributions, editable: the server with the test tools, the SDK with every extra (local
# engine, private_key_jwt, OpenTelemetry).
$(STAMP): pyproject.toml constraints.txt packages/agent-control-plane-sdk/pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	@$(PYTHON) -m venv --help >/dev/null 2>&1 || scripts/ensure-venv.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]' \
	  -e './packages/agent-control-plane-sdk[local,jwt,otel]'
	@touch $(STAMP)

install: $(STAMP)

# The pinned OPA validates policy uploads; when it cannot be installed the service still runs and
# decides, and uploads answer 503 until OPA is there. An AGENTCTL_OPA_BIN you set is used as is.
run: $(STAMP)
	@if [ -z "$$AGENTCTL_OPA_BIN" ]; then \
	  AGENTCTL_OPA_BIN=$$(scripts/install-opa.sh | tail -n 1); \
	  if [ -x "$$AGENTCTL_OPA_BIN" ]; then export AGENTCTL_OPA_BIN; else unset AGENTCTL_OPA_BIN; \
	    echo "make run: OPA could not be installed; serving without it (policy uploads answer 503)" >&2; fi; \
	fi; \
	exec $(BIN)/agentctl serve --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=scripts $(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy control_plane agent_sdk

openapi: $(STAMP)
	$(BIN)/agentctl openapi --output openapi/openapi.json
	$(BIN)/python -c 'from control_plane.openapi import write_event_schemas as w; w("openapi/events")'
	$(BIN)/python -c 'from control_plane.openapi import write_impact_report_schema as w; w("openapi/impact-report.schema.json")'

# The shipped policy compiled by the pinned OPA (policies/policy.wasm, committed; a test fails on
# drift): `make run` decides with it without an OPA binary.
wasm: $(STAMP)
	$(BIN)/python scripts/build_policy_wasm.py

bench: $(STAMP)
	$(BIN)/python -m bench

# The pinned OPA: policy validation, `agentctl policy test`, the tests against a real OPA server.
opa:
	scripts/install-opa.sh

# Wheels and sdists of both distributions (the server, agent-control-plane, and the SDK,
# agent-control-plane-sdk) in dist/, their metadata checked by twine.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python -m build --outdir dist packages/agent-control-plane-sdk
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf dist $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
