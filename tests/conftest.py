"""Tests run against the real PostgreSQL and Redis: a migrated test database, Redis db 15.

The fixtures live in tests/fixtures/, one module per resource.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = [
    "tests.fixtures.database",
    "tests.fixtures.redis",
    "tests.fixtures.app",
    "tests.fixtures.worker",
]
