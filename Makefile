# OpenChargeback developer and operator entry points.
#   make demo   install, migrate, load generated sample data, run the month-end
#               steps that exist, and start the admin on http://127.0.0.1:8000/
#               with a background worker
#   make test   install and run the test suite
#   make check  everything CI checks: lint, format, import contracts, types, migrations, tests

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ENV := DEBUG=true
HOST ?= 127.0.0.1:8000
# Test processes (pytest-xdist): one per core; TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto

.PHONY: install demo demo-data serve test check lint format typecheck migrations-check bench screenshots statement-images env-docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The admin and, beside it, a background worker (uploads are previewed and
# imported there); stopping the one stops the other.
SERVE = $(DEMO_ENV) $(BIN)/openchargeback qcluster & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(DEMO_ENV) $(BIN)/openchargeback runserver $(HOST)

demo: install
	$(DEMO_ENV) $(BIN)/openchargeback migrate --no-input -v 0
	$(DEMO_ENV) $(BIN)/openchargeback demo
	$(SERVE)

demo-data: install
	$(DEMO_ENV) $(BIN)/openchargeback migrate --no-input -v 0
	$(DEMO_ENV) $(BIN)/openchargeback demo

serve: install
	$(SERVE)

test: install
	$(BIN)/pytest -n $(TEST_WORKERS)

# Browser tests again, saving their screenshots into docs/images (needs chromium).
screenshots: install
	OPENCHARGEBACK_SCREENSHOT_DIR=docs/images OPENCHARGEBACK_REQUIRE_BROWSER=1 $(BIN)/pytest -m browser -q

# A sample statement from the demo's month-end, as docs/images/statement-sample.png
# (needs pdftoppm; Debian: apt-get install poppler-utils).
SAMPLE_DIR := $(shell mktemp -u /tmp/ocb-sample-XXXXXX)
statement-images: install
	DEBUG=true OPENCHARGEBACK_INSTANCE_DIR=$(SAMPLE_DIR) $(BIN)/openchargeback migrate --no-input -v 0
	DEBUG=true OPENCHARGEBACK_INSTANCE_DIR=$(SAMPLE_DIR) $(BIN)/openchargeback demo --no-admin-user --output $(SAMPLE_DIR)/samples >/dev/null
	pdftoppm -r 90 -png -f 1 -l 1 -singlefile "$$(DEBUG=true OPENCHARGEBACK_INSTANCE_DIR=$(SAMPLE_DIR) \
	  $(BIN)/openchargeback shell -v 0 -c "from statements.models import Statement as S; \
	  print(S.objects.filter(period__period='2026-08').order_by('-charge_count', 'number')[0].pdf.path)")" \
	  docs/images/statement-sample
	rm -rf $(SAMPLE_DIR)

# ... and the dependency rule between the apps (.importlinter,
# docs/decisions/0004-app-boundaries.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(DEMO_ENV) $(BIN)/mypy

migrations-check: install
	$(DEMO_ENV) $(BIN)/python manage.py makemigrations --check --dry-run

check: lint typecheck migrations-check test

bench: install
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_review.py
	$(BIN)/python benchmarks/bench_statements.py
	$(BIN)/python benchmarks/bench_journals.py
	$(BIN)/python benchmarks/bench_dashboard.py
	$(BIN)/python benchmarks/bench_slurm.py

# docs/environment.md from .env.example (a test checks they agree).
env-docs: install
	DEBUG=true $(BIN)/openchargeback env_reference > docs/environment.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
