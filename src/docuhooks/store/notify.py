"""PostgreSQL notifications: one process tells the others that something changed.

`notify` queues a notification in the caller's transaction (PostgreSQL sends it only if that
transaction commits); a `ChannelListener` keeps a connection of its own that `LISTEN`s on a
channel and heals itself when the server goes away. Notifications sent while a listener was
away are lost, so it calls `on_connect` every time it starts listening again: the owner
then looks at the store (or forgets what it cached) instead of trusting it missed nothing.
SQLite has one process, which acts on its own changes directly: `notify` does nothing there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.database_url import KEPT_IN_URL, connect_args, read_url
from docuhooks.core.tasks import stop_task

log = structlog.get_logger(__name__)

#: How often a listening connection checks that it is still alive.
_LIVENESS_SECONDS = 5.0
_MAX_BACKOFF_SECONDS = 10.0


async def notify(conn: AsyncConnection, channel: str, payload: str = "") -> None:
    """Notify `channel`'s listeners when the caller's transaction commits (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": channel, "payload": payload},
        )


#: The channel the delivery workers LISTEN on (`delivery.wakeup`); a trigger on `deliveries`
#: (migration 0008) notifies it from inside every INSERT.
DELIVERIES_CHANNEL = "docuhooks_deliveries"


async def notify_due_deliveries(conn: AsyncConnection) -> None:
    """Wake PostgreSQL workers because existing deliveries became due (an UPDATE); the server
    sends the notification only if the caller commits. New rows need no call: a trigger on
    `deliveries` (migration 0008) notifies from inside the INSERT.

    Here, below both, because webhook administration (resuming a webhook) wakes the workers
    as the delivery layer does."""
    await notify(conn, DELIVERIES_CHANNEL)


def asyncpg_dsn(url: URL) -> str:
    """The plain `postgresql://` DSN asyncpg wants, from the engine's `postgresql+asyncpg` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _asyncpg_connection(url: str) -> tuple[str, dict[str, Any]]:
    """`asyncpg.connect`'s DSN and keyword arguments for `url`: its query parameters as the
    engine's connections get them (`core.database_url`), not as asyncpg would read them in a
    DSN, where a name it does not know becomes a server setting the server then refuses
    (`connect_timeout`, or `ssl`, its own keyword's name)."""
    parsed = read_url(url)
    args = connect_args(url)
    args.pop("prepared_statement_cache_size", None)  # SQLAlchemy's, not asyncpg's
    dsn = parsed.set(
        query={name: value for name, value in parsed.query.items() if name in KEPT_IN_URL}
    )
    return asyncpg_dsn(dsn), args


class ChannelListener:
    """`LISTEN <channel>` on a dedicated connection that reconnects by itself."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        *,
        on_notify: Callable[[str], None],
        on_connect: Callable[[], None],
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._on_notify = on_notify
        self._on_connect = on_connect
        self._task: asyncio.Task[None] | None = None
        #: Set while a connection is listening: tests wait on it.
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"docuhooks-listen-{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _run(self) -> None:
        import asyncpg

        dsn, args = _asyncpg_connection(self._dsn)
        backoff = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn, **{"timeout": 10, **args})
                await conn.add_listener(self._channel, self._notified)
                self.listening.set()
                # Whatever was sent while nobody listened is gone: the owner catches up.
                self._on_connect()
                backoff = 0.5
                log.info("listen.started", channel=self._channel)
                while not conn.is_closed():
                    await asyncio.sleep(_LIVENESS_SECONDS)
                    # A server restart can leave a socket that looks open; a query finds out.
                    await conn.fetchval("SELECT 1", timeout=_LIVENESS_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "listen.lost", channel=self._channel, error=f"{type(exc).__name__}: {exc}"
                )
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)
