# The usual targets. `make run` and `make test` work on a fresh machine with Python,
# PostgreSQL and Redis installed (private instances start under .data/ when needed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lint format test run bench bench-ingest bench-reads bench-e2e chaos migrate clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,tools]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP)
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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
