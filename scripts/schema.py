"""Migrating a database from code: the tests, benchmarks and tools share this."""

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from sqlalchemy.engine import make_url

from app.core.settings import dsn

ROOT = Path(__file__).resolve().parent.parent


def upgrade(url: str) -> None:
    """Run every migration on the database the URL names."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


def recreate(url: str) -> None:
    """Drop and create the database the URL names, then run every migration on it."""
    parsed = make_url(dsn(url))
    if not parsed.database:
        raise ValueError(f"the URL names no database: {url!r}")
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    name = sql.Identifier(parsed.database)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    upgrade(url)
