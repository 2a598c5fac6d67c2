# The usual targets. `make run` and `make test` work on a fresh machine with Python,
# PostgreSQL and Redis installed (private instances start under .data/ when needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install web web-test lint format test run bench bench-ingest bench-reads bench-e2e chaos migrate clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,tools]'
	touch $(STAMP)

install: $(STAMP) web

# The dashboard (web/): npm ci from the committed lockfile, then the build the API serves at /.
# playwright-core never downloads a browser; the browser test uses Debian's chromium.
WEB_STAMP := web/node_modules/.installed

$(WEB_STAMP): web/package-lock.json web/package.json
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
	touch $(WEB_STAMP)

web:
	@if command -v npm >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(WEB_STAMP) && cd web && npm run build; \
	else \
	  echo "make install: npm is missing, so the dashboard (web/) is not built; install Node.js 20+ and npm"; \
	fi

web-test:
	@if [ -d web/node_modules ]; then cd web && npm test; \
	else echo "make test: web/node_modules is absent (npm missing?), the dashboard's unit tests are skipped"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	@if [ -d web/node_modules ]; then cd web && npm run typecheck; \
	else echo "make lint: web/node_modules is absent, the dashboard's typecheck is skipped"; fi

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP) web-test
	$(PY) -m scripts.services exec -- $(PY) -m pytest $(PYTEST_ARGS)

# CLUSTER=1: the queue on a local Redis Cluster (3 masters + 3 replicas, scripts/cluster.py).
run: $(STAMP)
	$(PY) -m scripts.dev $(if $(filter-out 0,$(CLUSTER)),--cluster)

migrate: $(STAMP)
	$(PY) -m scripts.services up
	$(PY) -m alembic upgrade head

bench: bench-ingest bench-reads bench-e2e

bench-ingest: $(STAMP)
	$(PY) -m scripts.services exec -- $(PY) -m scripts.bench_ingest

bench-reads: $(STAMP)
	$(PY) -m scripts.services exec -- $(PY) -m scripts.bench_reads --scale 0.05

bench-e2e: $(STAMP)
	$(PY) -m scripts.services exec -- $(PY) -m scripts.bench

chaos: $(STAMP)
	$(PY) -m scripts.services exec -- $(PY) -m scripts.chaos

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache web/node_modules web/dist
