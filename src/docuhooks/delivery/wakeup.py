"""How an idle worker learns that deliveries are waiting, without polling the table hard.

SQLite: the process that commits an event is the process that runs the worker, so the
commit hook (`ctx.events_committed()`) wakes it directly. PostgreSQL: workers may be on other
machines, so each keeps a connection of its own that `LISTEN`s on the outbox's channel, and
reconnects by itself when the server goes away. Either way a slow fallback poll remains, so
a lost wake-up only delays a delivery, never strands it.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy.engine import URL

from docuhooks.delivery.queries import CHANNEL

log = structlog.get_logger(__name__)

#: How often the listening connection checks that it is still alive.
_LIVENESS_SECONDS = 5.0
_MAX_BACKOFF_SECONDS = 10.0


class Alarm:
    """An event a worker sleeps on; safe to ring from any thread."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def ring(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._event.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bounded sleep, by design
        """Sleep until rung or `timeout` passes; True if rung. Each ring wakes one wait."""
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


def asyncpg_dsn(url: URL) -> str:
    """The plain `postgresql://` DSN asyncpg wants, from the engine's `postgresql+asyncpg` URL."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresListener:
    """`LISTEN docuhooks_deliveries` on a dedicated connection that heals itself."""

    def __init__(self, dsn: str, alarm: Alarm) -> None:
        self._dsn = dsn
        self._alarm = alarm
        self._task: asyncio.Task[None] | None = None
        #: Set while a connection is listening: tests wait on it.
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="docuhooks-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        import asyncpg

        backoff = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                await conn.add_listener(CHANNEL, self._on_notify)
                self.listening.set()
                # Notifications sent while we were away are gone: look at the table once.
                self._alarm.ring()
                backoff = 0.5
                log.info("worker.listening", channel=CHANNEL)
                while not conn.is_closed():
                    await asyncio.sleep(_LIVENESS_SECONDS)
                    # A server restart can leave a socket that looks open; a query finds out.
                    await conn.fetchval("SELECT 1", timeout=_LIVENESS_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("worker.listen_lost", error=f"{type(exc).__name__}: {exc}")
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _on_notify(self, *_args: object) -> None:
        self._alarm.ring()
