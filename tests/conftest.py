"""Tests run against the real PostgreSQL and Redis: a migrated test database, Redis db 15.

The fixtures live in tests/fixtures/, one module per resource.
"""

import os
from pathlib import Path

from hypothesis import settings

# Deterministic in `make test` and CI: the same examples every run, no example database.
# `scripts/fuzz.py` runs the same properties longer with random seeds (profile "random").
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("random", derandomize=False, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.redis",
    "tests.fixtures.app",
    "tests.fixtures.worker",
    "tests.fixtures.cluster",
    "tests.fixtures.replica",
    # The forecaster's services (API, forecaster, training pool), for every package using them.
    "tests.forecast.service_fixtures",
]
