# eventscope task runner. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help demo serve test test-fast lint typecheck format docs browser-deps bench bench-replay bench-live clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) ## run eventscope with the demo publisher (UI on http://127.0.0.1:8000)
	$(BIN)/eventscope serve --demo

serve: $(STAMP) ## run eventscope (web UI + recorder)
	$(BIN)/eventscope serve

browser-deps: ## install Debian's chromium for the browser tests (needs root)
	@test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

lint: $(STAMP) ## ruff lint + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy (strict) on backend/ and web/
	$(BIN)/mypy

test-fast: $(STAMP) ## unit, web and integration tests (real broker and databases)
	$(BIN)/pytest -q tests/unit tests/web tests/integration

test: $(STAMP) browser-deps lint typecheck ## everything CI runs: lint, types, all tests, browser tests
	$(BIN)/pytest -q tests/unit tests/web tests/integration
	$(BIN)/pytest -q -p no:asyncio -W ignore::pytest.PytestConfigWarning tests/browser

docs: $(STAMP) ## regenerate the README's settings table from backend/settings.py
	$(BIN)/python scripts/settings_table.py

format: $(STAMP) ## apply ruff formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## ingest benchmark (see benchmarks/README.md)
	$(BIN)/python benchmarks/ingest.py

bench-replay: $(STAMP) ## bulk replay benchmark against a bare aio-pika confirmed publish
	$(BIN)/python benchmarks/replay.py

bench-live: $(STAMP) browser-deps ## live latency benchmark: publish → row in chromium
	$(BIN)/python benchmarks/live.py

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
