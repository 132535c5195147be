"""The delivery roll-up: each webhook's attempts counted by UTC hour and by UTC day, with a
latency histogram (`core.latency`), in `webhook_stats`. Charts and the stats API read it
(`delivery.stats`) instead of the attempt log.

Written where attempts are written and in the same transaction, so its counts are exact and
commit (or not) with the attempt rows: the notification recorder's batch
(`delivery.recorder`) and the interview log's batch (`interview_hooks.log`). A batch is
tallied in memory first and written as one upsert (`n = n + excluded.n`) of hourly rows, a
row per webhook and hour it touched, so its cost is per batch and per webhook, not per
attempt. Rows go in key order: concurrent workers on PostgreSQL then take the rows' locks in
the same order and never deadlock on each other.

Days are not written on that path: an hour's row is folded into its day's row when it ages
out of the `HOURS` kept (`prune`, from the attempt pruner's hourly round: each hourly row
it deletes is added to its day in the same transaction, so nothing is counted twice or
lost), and a day is read as its row plus the hours of it still kept (`delivery.stats`).
That halves what the hot path writes. Daily rows go after `DAYS`, so the table holds at
most about `HOURS + DAYS` rows per webhook (one or two more until the next prune) whatever
the traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core import latency
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import STATS_ERROR_CLASSES, webhook_stats

__all__ = [
    "COUNT_COLUMNS",
    "DAYS",
    "HOURS",
    "Call",
    "Tally",
    "add_attempts",
    "add_calls",
    "day_of",
    "hour_of",
    "prune",
]

HOUR = "hour"
DAY = "day"
#: Hourly buckets kept, the current one included.
HOURS = 48
#: Daily buckets kept, today included.
DAYS = 30

LATENCY_COLUMNS = tuple(f"latency_{index:02d}" for index in range(latency.BINS))
FAILED_COLUMNS = tuple(f"failed_{error_class}" for error_class in STATS_ERROR_CLASSES)
#: Every counter of a row, in the order a tally's vector holds them.
COUNT_COLUMNS = ("succeeded", "failed", *FAILED_COLUMNS, "budget_cut", *LATENCY_COLUMNS)
_SUCCEEDED, _FAILED, _BUDGET_CUT = 0, 1, 2 + len(FAILED_COLUMNS)
_FAILED_AT = {error_class: 2 + i for i, error_class in enumerate(STATS_ERROR_CLASSES)}
_LATENCY_AT = _BUDGET_CUT + 1
_WIDTH = len(COUNT_COLUMNS)


def hour_of(moment: datetime) -> datetime:
    """The UTC hour `moment` falls in."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    """The UTC day `moment` falls in."""
    return hour_of(moment).replace(hour=0)


@dataclass(frozen=True, slots=True)
class Call:
    """One call as the roll-up counts it. `error_class` None is a success; `duration_ms`
    None is a call that was never sent (no latency to count)."""

    webhook_id: str
    site_id: str
    started_at: datetime
    duration_ms: float | None
    error_class: str | None
    budget_cut: bool = False


class Tally:
    """A batch's calls, counted by webhook and hour before they are written. Counting costs a
    few dictionary and list operations per call: it runs for every attempt the worker
    records."""

    __slots__ = ("_hours", "_site")

    def __init__(self) -> None:
        self._hours: dict[tuple[str, datetime], list[int]] = {}
        self._site: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._hours)

    def add(
        self,
        webhook_id: str,
        site_id: str,
        started_at: datetime,
        duration_ms: float | None,
        error_class: str | None,
        budget_cut: bool = False,
    ) -> None:
        """Count one call (see `Call` for what the arguments mean)."""
        if started_at.tzinfo is not UTC:
            started_at = started_at.astimezone(UTC)
        key = (webhook_id, started_at.replace(minute=0, second=0, microsecond=0))
        counts = self._hours.get(key)
        if counts is None:
            counts = self._hours[key] = [0] * _WIDTH
            self._site[webhook_id] = site_id
        if error_class is None:
            counts[_SUCCEEDED] += 1
        else:
            counts[_FAILED] += 1
            # An error class this version does not know still counts as failed.
            at = _FAILED_AT.get(error_class)
            if at is not None:
                counts[at] += 1
        if budget_cut:
            counts[_BUDGET_CUT] += 1
        if duration_ms is not None:
            counts[_LATENCY_AT + latency.bin_of(duration_ms)] += 1

    def add_call(self, call: Call) -> None:
        self.add(
            call.webhook_id,
            call.site_id,
            call.started_at,
            call.duration_ms,
            call.error_class,
            call.budget_cut,
        )

    def rows(self) -> list[dict[str, Any]]:
        """The upsert's rows, in key order (see the module's notes on locks)."""
        return _rows(
            {
                (webhook_id, HOUR, hour): counts
                for (webhook_id, hour), counts in self._hours.items()
            },
            self._site,
        )


def _rows(
    buckets: Mapping[tuple[str, str, datetime], list[int]], sites: Mapping[str, str]
) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(buckets):
        webhook_id, grain, start = key
        row: dict[str, Any] = dict(zip(COUNT_COLUMNS, buckets[key], strict=True))
        row.update(
            webhook_id=webhook_id, grain=grain, bucket_start=start, site_id=sites[webhook_id]
        )
        rows.append(row)
    return rows


async def add_attempts(conn: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Count attempt log rows (`delivery.attempt_log.attempt_row`) written in this
    transaction (`tally_of_attempts`). One upsert however many there are."""
    tally = tally_of_attempts(rows)
    if tally:
        await write(conn, tally)


def tally_of_attempts(rows: Iterable[Mapping[str, Any]]) -> Tally:
    """Attempt log rows (`delivery.attempt_log.attempt_row`) counted: a success is a 2xx
    without an error class, any other attempt a failure of its class (an HTTP status when it
    has none)."""
    tally = Tally()
    add = tally.add
    for row in rows:
        status, error_class = row["status_code"], row["error_class"]
        if error_class is None and not (status is not None and 200 <= status < 300):
            error_class = "http_status"
        add(row["webhook_id"], row["site_id"], row["started_at"], row["duration_ms"], error_class)
    return tally


async def add_calls(conn: AsyncConnection, calls: Iterable[Call]) -> None:
    """Count `calls` in this transaction: one upsert however many there are."""
    tally = Tally()
    for call in calls:
        tally.add_call(call)
    if tally:
        await write(conn, tally)


async def write(conn: AsyncConnection, tally: Tally) -> None:
    await _upsert_rows(conn, tally.rows())


async def _upsert_rows(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(_UPSERT_POSTGRESQL, rows)
    else:
        await _UPSERT_SQLITE.executemany(conn, rows)


def _upsert(insert: Any) -> Any:
    statement = insert(webhook_stats)
    return statement.on_conflict_do_update(
        index_elements=[
            webhook_stats.c.webhook_id,
            webhook_stats.c.grain,
            webhook_stats.c.bucket_start,
        ],
        set_={name: webhook_stats.c[name] + statement.excluded[name] for name in COUNT_COLUMNS},
    )


# Once per batch of the recorder, on SQLite's single writer: prepared like the attempt insert.
_UPSERT_SQLITE = Prepared(_upsert(sqlite.insert))
_UPSERT_POSTGRESQL = _upsert(postgresql.insert)


def oldest_kept(now: datetime) -> tuple[datetime, datetime]:
    """The oldest hourly and daily buckets kept at `now`."""
    return hour_of(now) - timedelta(hours=HOURS - 1), day_of(now) - timedelta(days=DAYS - 1)


async def prune(conn: AsyncConnection, *, now: datetime) -> int:
    """Fold the hours older than the roll-up keeps into their days, and delete the days past
    it; how many rows went. Each hourly row deleted is added to its day in this transaction
    (`DELETE … RETURNING`: what is folded is exactly what was deleted, whatever a late
    writer did meanwhile). At most an hour's worth of rows per webhook since the last round,
    so one short transaction."""
    oldest_hour, oldest_day = oldest_kept(now)
    aged = (
        await conn.execute(
            webhook_stats.delete()
            .where(webhook_stats.c.grain == HOUR, webhook_stats.c.bucket_start < oldest_hour)
            .returning(
                webhook_stats.c.webhook_id,
                webhook_stats.c.site_id,
                webhook_stats.c.bucket_start,
                *(webhook_stats.c[name] for name in COUNT_COLUMNS),
            )
        )
    ).all()
    days: dict[tuple[str, str, datetime], list[int]] = {}
    sites: dict[str, str] = {}
    for webhook_id, site_id, start, *counts in aged:
        sites[webhook_id] = site_id
        key = (webhook_id, DAY, day_of(start))
        day = days.get(key)
        days[key] = (
            list(counts) if day is None else [a + b for a, b in zip(day, counts, strict=True)]
        )
    # A day already past what is kept is not worth writing only to be deleted below.
    rows = [row for row in _rows(days, sites) if row["bucket_start"] >= oldest_day]
    if rows:
        await _upsert_rows(conn, rows)
    result = await conn.execute(
        webhook_stats.delete().where(
            webhook_stats.c.grain == DAY, webhook_stats.c.bucket_start < oldest_day
        )
    )
    return len(aged) + int(result.rowcount)
