"""What the migrations need beside Alembic: creating the database, and the one switch
between the two storage paths (TimescaleDB or plain PostgreSQL)."""

import psycopg
from psycopg import sql
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from app.core.settings import dsn


def ensure_database(url: str) -> None:
    """Create the database named by the URL when the server does not have it yet."""
    parsed = make_url(dsn(url))
    name = parsed.database
    if not name:
        return
    maintenance = parsed.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def timescale_available(conn: Connection) -> bool:
    """True when the extension is installed here, or can be (it must be preloaded)."""
    installed = conn.execute(
        text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    ).scalar()
    if installed:
        return True
    available = conn.execute(
        text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    ).scalar()
    preload = conn.execute(text("SELECT current_setting('shared_preload_libraries')")).scalar()
    return bool(available) and "timescaledb" in str(preload)
