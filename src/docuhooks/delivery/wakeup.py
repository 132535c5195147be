"""How an idle worker learns that deliveries are waiting, without polling the table hard.

SQLite: the process that commits an event is the process that runs the worker, so the
commit hook (`ctx.events_committed()`) wakes it directly. PostgreSQL: workers may be on other
machines, so each keeps a connection of its own that `LISTEN`s on the outbox's channel, and
reconnects by itself when the server goes away. Either way a slow fallback poll remains, so
a lost wake-up only delays a delivery, never strands it.
"""

from __future__ import annotations

import asyncio

from docuhooks.delivery.queries import CHANNEL
from docuhooks.store.notify import ChannelListener, asyncpg_dsn

__all__ = ["Alarm", "PostgresListener", "asyncpg_dsn"]


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

    def take(self) -> bool:
        """Whether it rang since the last wait or take; either way it is quiet afterwards."""
        rung = self._event.is_set()
        self._event.clear()
        return rung

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


class PostgresListener(ChannelListener):
    """The worker's `LISTEN docuhooks_deliveries`: every notification, and every reconnect
    (notifications may have been missed meanwhile), rings the worker's alarm."""

    def __init__(self, dsn: str, alarm: Alarm) -> None:
        super().__init__(
            dsn, CHANNEL, on_notify=lambda _payload: alarm.ring(), on_connect=alarm.ring
        )
