"""Prometheus metrics of delivery, in a registry of this process's own.

Counters and the latency histogram are what this process did; the queue gauges (due depth,
age of the oldest due delivery, workers alive, the backlog by state, destinations by breaker
state, suspended webhooks) are read from the database when scraped, so any process's
`/metrics` shows the whole fleet's queue. A scrape stays bounded at any queue size: counts
of pending deliveries stop at `health.DUE_CAP` (a value at the cap means "at least that
many"), and the per-webhook series, one pair per webhook, exist only when an operator turns
them on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import RestrictedRegistry

from docuhooks.core.destinations import BreakerState
from docuhooks.delivery import health, upkeep_queries
from docuhooks.store.database import Database

__all__ = [
    "CONTENT_TYPE_LATEST",
    "REGISTRY",
    "RefreshedOnScrape",
    "refresh_queue_gauges",
    "render",
]

log = structlog.get_logger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "docuhooks_deliveries",
    "Notification attempts by outcome: succeeded, retrying, failed (schedule exhausted), "
    "gone (410, webhook deactivated), probe_failed (suspended webhook).",
    ["outcome"],
    registry=REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "docuhooks_delivery_attempt_duration_seconds",
    "Time from sending a notification to having its response (or giving up on it).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "docuhooks_deliveries_in_flight",
    "Notifications this process is sending right now.",
    registry=REGISTRY,
)
LEASES_LOST = Counter(
    "docuhooks_delivery_leases_lost",
    "Attempts that finished after their lease ran out and another worker took the delivery.",
    registry=REGISTRY,
)
DUE = Gauge(
    "docuhooks_deliveries_due",
    "Pending deliveries whose next attempt is due now, those in flight included (the queue "
    "workers have not caught up); counted up to 100000.",
    registry=REGISTRY,
)
OLDEST_DUE_AGE = Gauge(
    "docuhooks_oldest_due_delivery_age_seconds",
    "How long the oldest due delivery has been waiting for a worker (0 when none is due).",
    registry=REGISTRY,
)
WEBHOOKS_SUSPENDED = Gauge(
    "docuhooks_webhooks_suspended",
    "Active webhooks suspended after a run of failed attempts: their deliveries queue, and "
    "a probe is sent every probe interval until one succeeds or an administrator resumes it.",
    registry=REGISTRY,
)
WORKERS_ALIVE = Gauge(
    "docuhooks_workers_alive",
    "Delivery workers, in any process, whose heartbeat is fresher than one lease.",
    registry=REGISTRY,
)

DESTINATIONS = Gauge(
    "docuhooks_destinations",
    "Destinations (scheme://host:port) by circuit breaker state. Only destinations that have "
    "shown trouble have a stored state and are counted; every other one is closed too.",
    ["state"],
    registry=REGISTRY,
)
BACKLOG = Gauge(
    "docuhooks_deliveries_backlog",
    "Pending deliveries by state: due (waiting for a sender), scheduled (a later attempt), "
    "in_flight (being sent by some worker). due and scheduled are counted up to 100000.",
    ["state"],
    registry=REGISTRY,
)
WEBHOOK_IN_FLIGHT = Gauge(
    "docuhooks_webhook_in_flight",
    "Calls of each webhook in flight, from every worker (only with metrics_per_webhook).",
    ["webhook_id"],
    registry=REGISTRY,
)
WEBHOOK_DUE_BACKLOG = Gauge(
    "docuhooks_webhook_due_backlog",
    "Each webhook's due deliveries waiting for a sender, counted up to 1000 (only with "
    "metrics_per_webhook).",
    ["webhook_id"],
    registry=REGISTRY,
)

for _outcome in ("succeeded", "retrying", "failed", "gone", "probe_failed"):
    DELIVERIES.labels(_outcome)
for _state in ("due", "scheduled", "in_flight"):
    BACKLOG.labels(_state)
for _breaker in BreakerState:
    DESTINATIONS.labels(_breaker.value)


async def refresh_queue_gauges(
    db: Database, *, now: datetime, lease_seconds: float, per_webhook: bool = False
) -> None:
    # On SQLite each count runs on the event loop: the loop gets a turn between them (the
    # read's snapshot holds), so a scrape never holds it for all of them at once.
    async with db.read() as conn:
        state = await upkeep_queries.queue_state(
            conn, now=now, alive_since=now - timedelta(seconds=lease_seconds)
        )
        await asyncio.sleep(0)
        backlog = await health.backlog(conn, now=now, cap=health.DUE_CAP)
        await asyncio.sleep(0)
        breakers = await health.breaker_counts(conn)
        suspended = await upkeep_queries.suspended_webhooks(conn)
        await asyncio.sleep(0)
        webhooks = await health.per_webhook(conn, now=now) if per_webhook else []
    DUE.set(backlog.due_total)
    age = (now - state.oldest_due_at).total_seconds() if state.oldest_due_at else 0.0
    OLDEST_DUE_AGE.set(max(age, 0.0))
    WORKERS_ALIVE.set(state.workers_alive)
    WEBHOOKS_SUSPENDED.set(suspended)
    BACKLOG.labels("due").set(backlog.due)
    BACKLOG.labels("scheduled").set(backlog.scheduled)
    BACKLOG.labels("in_flight").set(backlog.in_flight)
    for breaker, count in breakers.items():
        DESTINATIONS.labels(breaker.value).set(count)
    # Webhooks deleted since the last scrape must not linger.
    WEBHOOK_IN_FLIGHT.clear()
    WEBHOOK_DUE_BACKLOG.clear()
    for hook in webhooks:
        WEBHOOK_IN_FLIGHT.labels(hook.webhook_id).set(hook.in_flight)
        WEBHOOK_DUE_BACKLOG.labels(hook.webhook_id).set(hook.due_backlog)


def render() -> bytes:
    """The text exposition format."""
    return generate_latest(REGISTRY)


#: How long a worker's metrics server waits for the fleet gauges' read before it serves
#: their last values.
SCRAPE_REFRESH_SECONDS = 5.0


class RefreshedOnScrape:
    """`REGISTRY` as a worker's own metrics server (`docuhooks worker --metrics-port`)
    serves it: that server answers on a thread of its own, so before each scrape it has the
    worker's event loop read the fleet gauges (`refresh_queue_gauges`), as the API server's
    `/metrics` does, and every process reports the same fleet-wide values. Should the read
    fail or take longer than `SCRAPE_REFRESH_SECONDS` (the database away), or come before
    the worker has started (`attach`), the scrape still answers, with the gauges' last
    values and this process's counters."""

    def __init__(self, *, lease_seconds: float, per_webhook: bool) -> None:
        self._lease_seconds = lease_seconds
        self._per_webhook = per_webhook
        self._attached: tuple[asyncio.AbstractEventLoop, Database, Callable[[], datetime]] | None
        self._attached = None

    def attach(
        self, loop: asyncio.AbstractEventLoop, db: Database, now: Callable[[], datetime]
    ) -> None:
        """Read the gauges on `loop`, from `db`, from now on."""
        self._attached = (loop, db, now)

    def collect(self) -> Iterable[Metric]:
        self._refresh()
        return REGISTRY.collect()

    def restricted_registry(self, names: Iterable[str]) -> RestrictedRegistry:
        self._refresh()
        return REGISTRY.restricted_registry(names)

    def _refresh(self) -> None:
        if self._attached is None:
            return
        loop, db, now = self._attached
        refresh = refresh_queue_gauges(
            db, now=now(), lease_seconds=self._lease_seconds, per_webhook=self._per_webhook
        )
        future = asyncio.run_coroutine_threadsafe(refresh, loop)
        try:
            future.result(SCRAPE_REFRESH_SECONDS)
        except Exception as exc:
            # Given up on: cancelled, so that scrapes of a slow database do not pile their
            # reads up on the connections the worker needs.
            future.cancel()
            log.warning("metrics.refresh_failed", error=repr(exc))
