"""Prometheus metrics of delivery (SPEC §10), in a registry of this process's own.

Counters and the latency histogram are what this process did; the queue gauges (due depth,
age of the oldest due delivery, workers alive) are read from the database when scraped, so
any process's `/metrics` shows the whole fleet's queue.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from docuhooks.delivery import queries
from docuhooks.store.database import Database

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "refresh_queue_gauges", "render"]

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
    "Pending deliveries whose next attempt is due now (the queue workers have not caught up).",
    registry=REGISTRY,
)
OLDEST_DUE_AGE = Gauge(
    "docuhooks_oldest_due_delivery_age_seconds",
    "How long the oldest due delivery has been waiting for a worker (0 when none is due).",
    registry=REGISTRY,
)
WORKERS_ALIVE = Gauge(
    "docuhooks_workers_alive",
    "Delivery workers, in any process, whose heartbeat is fresher than one lease.",
    registry=REGISTRY,
)

for _outcome in ("succeeded", "retrying", "failed", "gone", "probe_failed"):
    DELIVERIES.labels(_outcome)


async def refresh_queue_gauges(db: Database, *, now: datetime, lease_seconds: float) -> None:
    async with db.read() as conn:
        state = await queries.queue_state(
            conn, now=now, alive_since=now - timedelta(seconds=lease_seconds)
        )
    DUE.set(state.due)
    age = (now - state.oldest_due_at).total_seconds() if state.oldest_due_at else 0.0
    OLDEST_DUE_AGE.set(max(age, 0.0))
    WORKERS_ALIVE.set(state.workers_alive)


def render() -> bytes:
    """The text exposition format."""
    return generate_latest(REGISTRY)
