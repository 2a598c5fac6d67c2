"""The worker's one database connection: reconnects, and tells passing faults from bad data."""

import asyncio

import asyncpg

from app.core.settings import Settings, dsn
from workers.writes import prepare

# SQLSTATE classes that say nothing about the data: connection, resources, operator
# intervention, system errors, and the transaction conflicts that a retry resolves.
TRANSIENT_CLASSES = ("08", "53", "57", "58", "40", "55")


class MalformedEvent(ValueError):
    """An event on the stream the row builder cannot read (not the API's canonical form)."""


def is_data_error(error: BaseException) -> bool:
    """Whether the error is about the data of what was written, not about the system: a
    data exception (SQLSTATE class 22: NUL in text, out of range), an integrity violation
    one row can raise (class 23), asyncpg refusing to encode a value, or the row builder
    unable to read an event (a malformed canonical event)."""
    if isinstance(error, asyncpg.exceptions.DataError):
        return True
    if isinstance(error, MalformedEvent):
        return True
    state = getattr(error, "sqlstate", None) or ""
    return isinstance(error, asyncpg.PostgresError) and state[:2] in ("22", "23")


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
                # The server's statement timeout cancels first; the client's is the backstop for a
                # connection that stalls.
                command_timeout=self.settings.statement_timeout_ms / 1000 + 5
                if self.settings.statement_timeout_ms
                else None,
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
