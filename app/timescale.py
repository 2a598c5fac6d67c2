"""Whether TimescaleDB is usable on a connection: the one switch between the two storage paths."""

from sqlalchemy import Connection, text


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
