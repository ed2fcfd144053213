# Runwatch: `make run` starts the app, `make test` runs every test. Both bootstrap .venv themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
PORT ?= 8501
# the app's address: loopback, where RUNWATCH_AUTH=none (everyone is admin) is allowed
ADDRESS ?= localhost
API_PORT ?= 8000
# pytest-xdist processes: most tests wait on workers, servers and the browser, so 3 keep 2 cores busy
TEST_WORKERS ?= 3

.PHONY: run test screenshots lint format typecheck bench init-db worker api clean

$(VENV)/.app: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.app
	$(PIP) -e '.[test]'
	touch $@

init-db: $(VENV)/.app
	$(VENV)/bin/runwatch init-db

# serve-api runs its own worker here: the app's starts only with the first browser session, and runs
# triggered over the API must not wait for one (any number of workers can share the database)
run: init-db
	@echo "Runwatch app: http://localhost:$(PORT)   API: http://127.0.0.1:$(API_PORT)/docs"
	RUNWATCH_API_WORKER_ENABLED=$${RUNWATCH_API_WORKER_ENABLED:-true} \
	$(VENV)/bin/runwatch serve-api --port $(API_PORT) & api=$$!; \
	trap 'kill $$api 2>/dev/null' EXIT; \
	$(VENV)/bin/streamlit run Home.py --server.port $(PORT) --server.address $(ADDRESS)

worker: init-db
	$(VENV)/bin/runwatch worker

api: init-db
	RUNWATCH_API_WORKER_ENABLED=$${RUNWATCH_API_WORKER_ENABLED:-true} \
	$(VENV)/bin/runwatch serve-api --port $(API_PORT)

test: lint
	@bash scripts/ensure-postgres
	@bash scripts/ensure-browser
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

screenshots: $(VENV)/.test
	@bash scripts/ensure-browser
	RUNWATCH_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(VENV)/bin/python -m pytest -q tests/e2e

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(VENV)/.test
	@bash scripts/ensure-postgres
	$(VENV)/bin/python -m bench.all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
