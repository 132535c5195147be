"""A per-site limit on interactive calls in flight in this process.

Interview hooks, post-processing calls and test sends share one connection pool
(`AppContext.interactive_transport`, 200 connections). Without a limit, one site calling
receivers that never answer could hold every connection, and another site's interview call
would wait for one until its own timeout, never connecting. :class:`SiteSlots` gives each site
at most ``interactive_calls_per_site`` calls at once; a call past that waits for one of its own
site's calls to finish, within its own timeout, and fails as a ``timeout`` naming the limit
when none finishes in time. Other sites never wait for it.

A site's entry exists only while it has calls in flight or waiting, so memory is bounded by
the sites calling right now, not by every site ever seen.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.transport import DEFAULT_MAX_BODY, ErrorClass, Transport, TransportResult

__all__ = ["SiteLimitReached", "SiteSlots"]


class SiteLimitReached(Exception):
    """No slot of the site's freed within the time the call could wait."""


@dataclass
class _Site:
    in_use: int = 0
    #: Calls waiting for a slot, first come first served; a freed slot is handed to the
    #: first (its future resolved) rather than counted down and up again.
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class SiteSlots:
    """At most `per_site` interactive calls in flight per site in this process."""

    def __init__(self, per_site: int) -> None:
        if per_site < 1:
            raise ValueError("interactive_calls_per_site must be at least 1")
        self.per_site = per_site
        self._sites: dict[str, _Site] = {}

    def in_flight(self, site_id: str) -> int:
        """The site's calls holding a slot now."""
        site = self._sites.get(site_id)
        return site.in_use if site else 0

    def waiting(self, site_id: str) -> int:
        """The site's calls waiting for a slot now."""
        site = self._sites.get(site_id)
        return sum(not w.done() for w in site.waiters) if site else 0

    def __len__(self) -> int:
        """Sites with calls in flight or waiting (the entries held)."""
        return len(self._sites)

    @asynccontextmanager
    async def slot(self, site_id: str, wait: float) -> AsyncIterator[None]:
        """Hold one of the site's slots; waits at most `wait` seconds for one to free, then
        raises :class:`SiteLimitReached`."""
        await self._acquire(site_id, wait)
        try:
            yield
        finally:
            self._release(site_id)

    async def send(
        self,
        transport: Transport,
        site_id: str,
        request: OutboundRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - the call's own timeout, the wait included
        verify_tls: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> TransportResult:
        """Send `request` once a slot of the site's is free. The wait counts against
        `timeout`: the call gets only what is left of it, and a call that found no slot in
        time is a ``timeout`` failure that names the limit."""
        started = time.perf_counter()
        try:
            async with self.slot(site_id, timeout):
                left = max(0.001, timeout - (time.perf_counter() - started))
                result = await transport.send(
                    request, timeout=left, verify_tls=verify_tls, max_body=max_body
                )
        except SiteLimitReached:
            return TransportResult.failure(
                ErrorClass.TIMEOUT,
                self.limit_message(timeout),
                duration_ms=(time.perf_counter() - started) * 1000.0,
            )
        waited_ms = (time.perf_counter() - started) * 1000.0 - result.duration_ms
        if waited_ms > 1.0:
            # The log shows the whole time the call took, the wait for a slot included.
            return _with_duration(result, result.duration_ms + waited_ms)
        return result

    def limit_message(self, waited: float) -> str:
        return (
            f"not sent: the site's interactive call limit ({self.per_site} calls in flight) "
            f"was reached and no call finished within {waited:g} s"
        )

    async def _acquire(self, site_id: str, wait: float) -> None:
        site = self._sites.get(site_id)
        if site is None:
            site = self._sites[site_id] = _Site()
        if site.in_use < self.per_site and not site.waiters:
            site.in_use += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        site.waiters.append(waiter)
        try:
            async with asyncio.timeout(max(0.0, wait)):
                await asyncio.shield(waiter)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # handed a slot just as the wait ran out: keep it
            waiter.cancel()
            self._forget(site_id, site, waiter)
            raise SiteLimitReached(site_id) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(site_id)  # handed a slot it will never use: pass it on
            else:
                waiter.cancel()
                self._forget(site_id, site, waiter)
            raise

    def _release(self, site_id: str) -> None:
        site = self._sites[site_id]
        while site.waiters:
            waiter = site.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the first waiting call
                return
        site.in_use -= 1
        if site.in_use == 0:
            del self._sites[site_id]

    def _forget(self, site_id: str, site: _Site, waiter: asyncio.Future[None]) -> None:
        with suppress(ValueError):
            site.waiters.remove(waiter)
        if site.in_use == 0 and not site.waiters:
            self._sites.pop(site_id, None)


def _with_duration(result: TransportResult, duration_ms: float) -> TransportResult:
    return replace(result, duration_ms=duration_ms)
