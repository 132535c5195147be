"""Webhooks as the API and the admin UI show them: their settings (`webhooks.service`) with
their delivery health now (`delivery.health`).

Here, above both, because the health of a webhook is the delivery layer's knowledge: the
webhook administration below it knows nothing of deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.destinations import MAX_CONCURRENCY
from docuhooks.delivery import health
from docuhooks.identity.models import Principal
from docuhooks.store import pagination
from docuhooks.webhooks import service


def health_to_api(state: health.WebhookHealth, now: datetime) -> dict[str, Any]:
    """A webhook's `health` object: isolation's view of it now (see `delivery.health`)."""
    breaker = state.breaker
    return {
        "destination": state.destination,
        "inFlight": state.in_flight,
        "concurrencyLimit": state.concurrency_limit,
        "breaker": {
            "state": breaker.state.value,
            "since": breaker.since,
            "nextProbeAt": breaker.next_probe_at,
            "consecutiveFailures": breaker.failures,
        },
        "pausedUntil": state.paused_until(now),
        "dueBacklog": state.due_backlog,
        "dueBacklogCapped": state.due_backlog_capped,
        "oldestDueAgeSeconds": state.oldest_due_age_seconds(now),
    }


async def read(
    conn: AsyncConnection,
    principal: Principal,
    webhook_id: str,
    *,
    now: datetime,
    destination_cap: int = MAX_CONCURRENCY,
) -> dict[str, Any]:
    """The webhook as `GET /webhooks/{id}` returns it: with its health (the limit on its
    calls in flight counts `destination_cap`, the installation's cap per destination)."""
    row = await service.get_row(conn, principal, webhook_id)
    state = await health.of_webhooks(conn, [row], now=now, destination_cap=destination_cap)
    return {**service.to_api(row), "health": health_to_api(state[row.id], now)}


async def list_page(
    conn: AsyncConnection,
    principal: Principal,
    *,
    limit: int = 50,
    cursor: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    health_at: datetime | None = None,
    destination_cap: int = MAX_CONCURRENCY,
) -> pagination.Page[dict[str, Any]]:
    """A page of the site's webhooks, oldest first; with `health_at`, each with its health
    then (a due backlog counted up to `health.LIST_DUE_CAP`, in three statements a page)."""
    page, shown = await service.list_page(
        conn, principal, limit=limit, cursor=cursor, event_type=event_type, status=status
    )
    if health_at is not None and page.items:
        states = await health.of_webhooks(
            conn,
            shown,
            now=health_at,
            due_cap=health.LIST_DUE_CAP,
            destination_cap=destination_cap,
        )
        for item in page.items:
            item["health"] = health_to_api(states[item["id"]], health_at)
    return page
