"""The delivery roll-up: each webhook's attempts counted by UTC hour and by UTC day, with a
latency histogram (`core.latency`), in `webhook_stats`. Charts and the stats API read it
(`delivery.stats`) instead of the attempt log.

Written where attempts are written and in the same transaction, so its counts are exact and
commit (or not) with the attempt rows: the notification recorder's batch
(`delivery.recorder`) and the interview log's batch (`interview_hooks.log`). A batch is
tallied in memory first and written as one upsert (`n = n + excluded.n`), a row per
webhook and bucket it touched, so its cost is per batch and per webhook, not per attempt.
Rows go in key order: concurrent workers on PostgreSQL then take the rows' locks in the same
order and never deadlock on each other.

Bounded: hourly rows are kept `HOURS` hours and daily rows `DAYS` days (`prune`, from the
attempt pruner's hourly round), so the table holds at most about `HOURS + DAYS` rows per
webhook (and one more of each until the next prune) whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
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
    """A batch's calls, counted by webhook and bucket before they are written."""

    __slots__ = ("_rows", "_site")

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, datetime], list[int]] = {}
        self._site: dict[str, str] = {}

    def __bool__(self) -> bool:
        return bool(self._rows)

    def add(self, call: Call) -> None:
        hour = hour_of(call.started_at)
        webhook_id = call.webhook_id
        self._site[webhook_id] = call.site_id
        for key in ((webhook_id, HOUR, hour), (webhook_id, DAY, hour.replace(hour=0))):
            counts = self._rows.get(key)
            if counts is None:
                counts = self._rows[key] = [0] * _WIDTH
            if call.error_class is None:
                counts[_SUCCEEDED] += 1
            else:
                counts[_FAILED] += 1
                # An error class this version does not know still counts as failed.
                at = _FAILED_AT.get(call.error_class)
                if at is not None:
                    counts[at] += 1
            if call.budget_cut:
                counts[_BUDGET_CUT] += 1
            if call.duration_ms is not None:
                counts[_LATENCY_AT + latency.bin_of(call.duration_ms)] += 1

    def rows(self) -> list[dict[str, Any]]:
        """The upsert's rows, in key order (see the module's notes on locks)."""
        rows = []
        for key in sorted(self._rows):
            webhook_id, grain, start = key
            row: dict[str, Any] = dict(zip(COUNT_COLUMNS, self._rows[key], strict=True))
            row.update(
                webhook_id=webhook_id,
                grain=grain,
                bucket_start=start,
                site_id=self._site[webhook_id],
            )
            rows.append(row)
        return rows


def attempt_call(row: Mapping[str, Any]) -> Call:
    """An attempt log row (`delivery.attempt_log.attempt_row`) as the roll-up counts it: a
    success is a 2xx without an error class, any other attempt a failure of its class (an
    HTTP status when it has none)."""
    status, error_class = row["status_code"], row["error_class"]
    if error_class is None and not (status is not None and 200 <= status < 300):
        error_class = "http_status"
    return Call(
        row["webhook_id"], row["site_id"], row["started_at"], row["duration_ms"], error_class
    )


async def add_attempts(conn: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> None:
    """Count attempt log rows written in this transaction."""
    await add_calls(conn, (attempt_call(row) for row in rows))


async def add_calls(conn: AsyncConnection, calls: Iterable[Call]) -> None:
    """Count `calls` in this transaction: one upsert however many there are."""
    tally = Tally()
    for call in calls:
        tally.add(call)
    if tally:
        await write(conn, tally)


async def write(conn: AsyncConnection, tally: Tally) -> None:
    rows = tally.rows()
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
    """Delete the buckets older than the roll-up keeps; how many rows went. At most a
    webhook's worth of rows per hour since the last prune, so one statement."""
    oldest_hour, oldest_day = oldest_kept(now)
    result = await conn.execute(
        webhook_stats.delete().where(
            sa.or_(
                sa.and_(webhook_stats.c.grain == HOUR, webhook_stats.c.bucket_start < oldest_hour),
                sa.and_(webhook_stats.c.grain == DAY, webhook_stats.c.bucket_start < oldest_day),
            )
        )
    )
    return int(result.rowcount)
