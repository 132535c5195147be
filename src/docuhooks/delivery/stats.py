"""Delivery health over time, read from the roll-up (`delivery.rollup`): a webhook's attempts
by hour and by day, sparklines for a list of webhooks, and a site's summary for the
dashboard. Every read here is bounded by the number of webhooks it covers (at most
`rollup.HOURS + rollup.DAYS` rows each), never by the traffic; the API and the admin UI
call these functions with the caller's site, after checking the caller's role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core import latency
from docuhooks.core.destinations import BreakerState
from docuhooks.core.events import INTERVIEW_EVENTS
from docuhooks.delivery import health, rollup
from docuhooks.identity.models import Principal
from docuhooks.store.schema import STATS_ERROR_CLASSES, webhook_stats, webhooks
from docuhooks.webhooks import service

__all__ = [
    "Bucket",
    "History",
    "SiteSummary",
    "WebhookTotals",
    "from_counts",
    "read_site_summary",
    "read_webhook_stats",
    "site_summary",
    "sparklines",
    "webhook_history",
]

#: The webhooks the dashboard lists as failing most.
TOP_FAILING = 5
#: The suspended webhooks and open breakers it lists at most.
LISTED = 20


@dataclass(frozen=True, slots=True)
class Bucket:
    """One hour's or day's attempts (all zero for a bucket with none)."""

    start: datetime
    succeeded: int = 0
    failed: int = 0
    failed_by_class: dict[str, int] = field(default_factory=dict)
    budget_cut: int = 0
    latency: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    @property
    def p50_ms(self) -> float | None:
        return latency.quantile(self.latency, 0.5) if self.latency else None

    @property
    def p99_ms(self) -> float | None:
        return latency.quantile(self.latency, 0.99) if self.latency else None


@dataclass(frozen=True, slots=True)
class History:
    """The last `rollup.HOURS` hours and `rollup.DAYS` days, oldest first, each bucket there
    (zero when nothing happened), the current hour and day last and still filling."""

    hours: list[Bucket]
    days: list[Bucket]

    def last_24_hours(self) -> Bucket:
        return merge(self.hours[-24:], self.hours[-24].start)


def from_counts(start: datetime, counts: Sequence[int]) -> Bucket:
    """A bucket from a row's counters, in `rollup.COUNT_COLUMNS` order."""
    values = dict(zip(rollup.COUNT_COLUMNS, counts, strict=True))
    by_class = {c: int(values[f"failed_{c}"]) for c in STATS_ERROR_CLASSES}
    return Bucket(
        start=start,
        succeeded=int(values["succeeded"]),
        failed=int(values["failed"]),
        failed_by_class={c: n for c, n in by_class.items() if n},
        budget_cut=int(values["budget_cut"]),
        latency=tuple(int(values[name]) for name in rollup.LATENCY_COLUMNS),
    )


def merge(buckets: Sequence[Bucket], start: datetime) -> Bucket:
    """The sum of `buckets`, as one bucket starting at `start`."""
    by_class: dict[str, int] = {}
    bins = [0] * latency.BINS
    for bucket in buckets:
        for name, count in bucket.failed_by_class.items():
            by_class[name] = by_class.get(name, 0) + count
        for index, count in enumerate(bucket.latency):
            bins[index] += count
    return Bucket(
        start=start,
        succeeded=sum(b.succeeded for b in buckets),
        failed=sum(b.failed for b in buckets),
        failed_by_class=by_class,
        budget_cut=sum(b.budget_cut for b in buckets),
        latency=tuple(bins) if any(bins) else (),
    )


def _starts(now: datetime) -> tuple[list[datetime], list[datetime]]:
    hour, day = rollup.hour_of(now), rollup.day_of(now)
    hours = [hour - timedelta(hours=back) for back in range(rollup.HOURS - 1, -1, -1)]
    days = [day - timedelta(days=back) for back in range(rollup.DAYS - 1, -1, -1)]
    return hours, days


def _fill(starts: list[datetime], found: dict[datetime, Bucket]) -> list[Bucket]:
    return [found.get(start) or Bucket(start) for start in starts]


def _history(
    hour_starts: list[datetime],
    day_starts: list[datetime],
    hours: dict[datetime, Bucket],
    days: dict[datetime, Bucket],
) -> History:
    """The hours kept, and each day as its row plus its hours not yet folded into it (every
    hourly row, not only the window's: one past 48 hours waits for the next prune)."""
    by_day: dict[datetime, list[Bucket]] = {}
    for start, bucket in [*hours.items(), *days.items()]:
        by_day.setdefault(rollup.day_of(start), []).append(bucket)
    merged = {day: merge(parts, day) for day, parts in by_day.items()}
    return History(_fill(hour_starts, hours), _fill(day_starts, merged))


_COUNTS = [webhook_stats.c[name] for name in rollup.COUNT_COLUMNS]


def _window(grain: str, oldest: datetime) -> list[sa.ColumnElement[bool]]:
    return [webhook_stats.c.grain == grain, webhook_stats.c.bucket_start >= oldest]


async def webhook_history(conn: AsyncConnection, webhook_id: str, *, now: datetime) -> History:
    """One webhook's hours and days (the caller has checked its site and role)."""
    hour_starts, day_starts = _starts(now)
    rows = await conn.execute(
        sa.select(webhook_stats.c.grain, webhook_stats.c.bucket_start, *_COUNTS).where(
            webhook_stats.c.webhook_id == webhook_id,
            sa.or_(
                webhook_stats.c.grain == rollup.HOUR,
                sa.and_(*_window(rollup.DAY, day_starts[0])),
            ),
        )
    )
    hours: dict[datetime, Bucket] = {}
    days: dict[datetime, Bucket] = {}
    for row in rows:
        target = hours if row[0] == rollup.HOUR else days
        target[row[1]] = from_counts(row[1], row[2:])
    return _history(hour_starts, day_starts, hours, days)


async def sparklines(
    conn: AsyncConnection, webhook_ids: Sequence[str], *, now: datetime
) -> dict[str, list[Bucket]]:
    """Each webhook's hours (succeeded and failed only, no latency): one statement a page."""
    if not webhook_ids:
        return {}
    hour_starts, _ = _starts(now)
    rows = await conn.execute(
        sa.select(
            webhook_stats.c.webhook_id,
            webhook_stats.c.bucket_start,
            webhook_stats.c.succeeded,
            webhook_stats.c.failed,
        ).where(
            webhook_stats.c.webhook_id.in_(list(webhook_ids)),
            *_window(rollup.HOUR, hour_starts[0]),
        )
    )
    found: dict[str, dict[datetime, Bucket]] = {webhook_id: {} for webhook_id in webhook_ids}
    for webhook_id, start, succeeded, failed in rows:
        found[webhook_id][start] = Bucket(start, int(succeeded), int(failed))
    return {webhook_id: _fill(hour_starts, found[webhook_id]) for webhook_id in webhook_ids}


@dataclass(frozen=True, slots=True)
class WebhookTotals:
    """One webhook's last 24 hours."""

    webhook_id: str
    name: str
    event_type: str
    totals: Bucket


@dataclass(frozen=True, slots=True)
class SuspendedWebhook:
    webhook_id: str
    name: str
    since: datetime
    reason: str | None


@dataclass(frozen=True, slots=True)
class OpenBreaker:
    destination: str
    state: BreakerState
    since: datetime | None
    next_probe_at: datetime | None
    webhook_ids: list[str]


@dataclass(frozen=True, slots=True)
class SiteSummary:
    """What the dashboard shows of a site."""

    #: The site's attempts (every webhook together), hour by hour and day by day.
    history: History
    #: The webhooks with the most failed attempts in the last 24 hours, most first.
    failing: list[WebhookTotals]
    #: Each interview webhook's last 24 hours, by name.
    interview: list[WebhookTotals]
    #: Due deliveries waiting for a sender, over the site's webhooks (each counted up to
    #: `health.LIST_DUE_CAP`; `due_backlog_capped` says one was).
    due_backlog: int
    due_backlog_capped: bool
    oldest_due_at: datetime | None
    #: The first `LISTED` suspended webhooks and open breakers (by name, by destination);
    #: the counts are of all of them.
    suspended: list[SuspendedWebhook]
    breakers: list[OpenBreaker]
    webhook_count: int
    suspended_count: int
    breaker_count: int

    def oldest_due_age_seconds(self, now: datetime) -> float | None:
        if self.oldest_due_at is None:
            return None
        return max(0.0, (now - self.oldest_due_at).total_seconds())


async def site_summary(
    conn: AsyncConnection, site_id: str, *, now: datetime, destination_cap: int
) -> SiteSummary:
    """The dashboard's summary of `site_id` (the caller has checked the role)."""
    hook_rows = (
        await conn.execute(
            sa.select(
                webhooks.c.id,
                webhooks.c.site_id,
                webhooks.c.name,
                webhooks.c.event_type,
                webhooks.c.destination,
                webhooks.c.max_concurrency,
                webhooks.c.active,
                webhooks.c.suspended_at,
                webhooks.c.status_reason,
            )
            .where(webhooks.c.site_id == site_id)
            .order_by(webhooks.c.name, webhooks.c.id)
        )
    ).all()
    history = await _site_history(conn, site_id, now)
    per_webhook = await _last_24_hours(conn, site_id, now)
    named = {row.id: row for row in hook_rows}
    totals = [
        WebhookTotals(webhook_id, named[webhook_id].name, named[webhook_id].event_type, bucket)
        for webhook_id, bucket in per_webhook.items()
        if webhook_id in named
    ]
    failing = sorted(
        (t for t in totals if t.totals.failed),
        key=lambda t: (-t.totals.failed, t.name, t.webhook_id),
    )[:TOP_FAILING]
    interview = [
        WebhookTotals(
            row.id,
            row.name,
            row.event_type,
            per_webhook.get(row.id) or Bucket(history.hours[-24].start),
        )
        for row in hook_rows
        if row.event_type in INTERVIEW_EVENTS
    ]
    states = await health.of_webhooks(
        conn, hook_rows, now=now, due_cap=health.LIST_DUE_CAP, destination_cap=destination_cap
    )
    due = sum(state.due_backlog for state in states.values())
    oldest = min(
        (state.oldest_due_at for state in states.values() if state.oldest_due_at is not None),
        default=None,
    )
    suspended = [
        SuspendedWebhook(row.id, row.name, row.suspended_at, row.status_reason)
        for row in hook_rows
        # An inactive webhook is inactive, suspended or not (as its status says).
        if row.active and row.suspended_at is not None
    ]
    breakers: dict[str, OpenBreaker] = {}
    for row in hook_rows:
        state = states[row.id].breaker
        if state.state is BreakerState.CLOSED:
            continue
        found = breakers.get(row.destination)
        if found is None:
            found = breakers[row.destination] = OpenBreaker(
                row.destination, state.state, state.since, state.next_probe_at, []
            )
        found.webhook_ids.append(row.id)
    return SiteSummary(
        history=history,
        failing=failing,
        interview=interview,
        due_backlog=due,
        due_backlog_capped=any(state.due_backlog_capped for state in states.values()),
        oldest_due_at=oldest,
        suspended=suspended[:LISTED],
        breakers=sorted(breakers.values(), key=lambda b: b.destination)[:LISTED],
        webhook_count=len(hook_rows),
        suspended_count=len(suspended),
        breaker_count=len(breakers),
    )


async def _site_history(conn: AsyncConnection, site_id: str, now: datetime) -> History:
    hour_starts, day_starts = _starts(now)
    rows = await conn.execute(
        sa.select(
            webhook_stats.c.grain,
            webhook_stats.c.bucket_start,
            *(sa.func.sum(column) for column in _COUNTS),
        )
        .where(
            webhook_stats.c.site_id == site_id,
            sa.or_(
                webhook_stats.c.grain == rollup.HOUR,
                sa.and_(*_window(rollup.DAY, day_starts[0])),
            ),
        )
        .group_by(webhook_stats.c.grain, webhook_stats.c.bucket_start)
    )
    hours: dict[datetime, Bucket] = {}
    days: dict[datetime, Bucket] = {}
    start_type = webhook_stats.c.bucket_start.type
    process = start_type.result_processor(conn.dialect, None)
    for row in rows:
        start = row[1]
        if not isinstance(start, datetime) and process is not None:
            start = process(start)  # SQLite loses the column's type through GROUP BY
        target = hours if row[0] == rollup.HOUR else days
        target[start] = from_counts(start, row[2:])
    return _history(hour_starts, day_starts, hours, days)


async def _last_24_hours(conn: AsyncConnection, site_id: str, now: datetime) -> dict[str, Bucket]:
    hour_starts, _ = _starts(now)
    since = hour_starts[-24]
    rows = await conn.execute(
        sa.select(webhook_stats.c.webhook_id, *(sa.func.sum(column) for column in _COUNTS))
        .where(webhook_stats.c.site_id == site_id, *_window(rollup.HOUR, since))
        .group_by(webhook_stats.c.webhook_id)
    )
    return {row[0]: from_counts(since, row[1:]) for row in rows}


def bucket_to_api(bucket: Bucket, *, with_latency: bool = True) -> dict[str, Any]:
    """A bucket as the API returns it."""
    body: dict[str, Any] = {
        "start": bucket.start,
        "succeeded": bucket.succeeded,
        "failed": bucket.failed,
        "failedByClass": bucket.failed_by_class,
        "budgetCutOff": bucket.budget_cut,
    }
    if with_latency:
        body["p50Ms"] = _rounded(bucket.p50_ms)
        body["p99Ms"] = _rounded(bucket.p99_ms)
    return body


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def history_to_api(history: History) -> dict[str, Any]:
    return {
        "last24Hours": bucket_to_api(history.last_24_hours()),
        "hours": [bucket_to_api(b) for b in history.hours],
        "days": [bucket_to_api(b) for b in history.days],
    }


def summary_to_api(summary: SiteSummary, now: datetime) -> dict[str, Any]:
    def totals(t: WebhookTotals) -> dict[str, Any]:
        return {
            "webhookId": t.webhook_id,
            "name": t.name,
            "eventType": t.event_type,
            **bucket_to_api(t.totals),
        }

    return {
        **history_to_api(summary.history),
        "failingMost": [totals(t) for t in summary.failing],
        "interviewWebhooks": [totals(t) for t in summary.interview],
        "dueBacklog": summary.due_backlog,
        "dueBacklogCapped": summary.due_backlog_capped,
        "oldestDueAgeSeconds": summary.oldest_due_age_seconds(now),
        "suspended": [
            {"webhookId": s.webhook_id, "name": s.name, "since": s.since, "reason": s.reason}
            for s in summary.suspended
        ],
        "suspendedCount": summary.suspended_count,
        "openBreakers": [
            {
                "destination": b.destination,
                "state": b.state.value,
                "since": b.since,
                "nextProbeAt": b.next_probe_at,
                "webhookIds": b.webhook_ids,
            }
            for b in summary.breakers
        ],
        "openBreakerCount": summary.breaker_count,
        "webhookCount": summary.webhook_count,
    }


async def read_webhook_stats(
    conn: AsyncConnection, principal: Principal, webhook_id: str, *, now: datetime
) -> dict[str, Any]:
    """`GET /webhooks/{id}/stats`: a webhook of the caller's site, for a webhook admin."""
    row = await service.get_row(conn, principal, webhook_id)
    return {"webhookId": row.id, **history_to_api(await webhook_history(conn, row.id, now=now))}


async def read_site_summary(
    conn: AsyncConnection, principal: Principal, *, now: datetime, destination_cap: int
) -> dict[str, Any]:
    """`GET /stats`: the caller's site, for a webhook admin."""
    service.require_admin(principal)
    summary = await site_summary(conn, principal.site_id, now=now, destination_cap=destination_cap)
    return summary_to_api(summary, now)
