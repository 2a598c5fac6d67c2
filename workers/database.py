"""The worker's one database connection: reconnects, and tells passing faults from bad data."""

import asyncio

import asyncpg

from app.core.settings import Settings, dsn
from workers.writes import prepare

# SQLSTATE classes that say nothing about the data: connection, resources, operator
# intervention, system errors, and the transaction conflicts that a retry resolves.
TRANSIENT_CLASSES = ("08", "53", "57", "58", "40", "55")


def is_data_error(error: BaseException) -> bool:
    """Whether the database refused the data itself (SQLSTATE class 22, data exception)."""
    if isinstance(error, asyncpg.exceptions.DataError):
        return True
    state = getattr(error, "sqlstate", None) or ""
    return isinstance(error, asyncpg.PostgresError) and state[:2] == "22"


def is_transient(error: BaseException) -> bool:
    if isinstance(
        error, (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    ):
        return True
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", None) or ""
        return state[:2] in TRANSIENT_CLASSES
    return False


class Database:
    def __init__(self, settings: Settings, application_name: str = "telemetry-worker") -> None:
        self.settings = settings
        self.application_name = application_name
        self._conn: asyncpg.Connection | None = None

    async def connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                dsn(self.settings.database_url),
                timeout=10,
                command_timeout=self.settings.statement_timeout_ms / 1000 or None,
                server_settings={
                    "application_name": self.application_name,
                    "statement_timeout": str(self.settings.statement_timeout_ms),
                },
            )
            try:
                await prepare(conn)
            except BaseException:
                await conn.close(timeout=2)
                raise
            self._conn = conn
        return self._conn

    async def reset(self) -> None:
        """Drop the connection after a fault; the next use reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def close(self) -> None:
        await self.reset()
