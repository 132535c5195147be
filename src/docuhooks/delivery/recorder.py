"""Writing down what each attempt did: many attempts per transaction.

A worker's sends finish one at a time, but writing each outcome in a transaction of its own
costs more than the send (SQLite has one writer at a time; every statement is a round trip).
So finished attempts queue here and one task writes everything that queued meanwhile in one
transaction (the first waits up to `LINGER_SECONDS` for company, as a commit costs about
the same for one row as for dozens): one statement settles all the plain successes, one
inserts every attempt row, one clears their webhooks' failure runs. Failures, 410s and
probes, which each change their webhook's state in their own way, are written one by one, in
the same transaction; one upsert then counts every attempt written in the charts' roll-up
(`delivery.rollup`).

The worker's senders hand an outcome over and move on to the next delivery; the worker keeps
the delivery (and its lease) held until the outcome is written, and a cancelled caller never
cancels a write: the attempt happened and goes in the log. While nothing finishes, no task
runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import tracing
from docuhooks.core.destinations import (
    BreakerPolicy,
    Signal,
    host_answered,
    signal_of,
    state_key,
)
from docuhooks.core.retry import parse_retry_after, should_suspend
from docuhooks.delivery import (
    attempt_log,
    calls_in_flight,
    destinations,
    metrics,
    operational,
    queries,
    recorder_queries,
    rollup,
)
from docuhooks.delivery.outcome import RETRY_AFTER_STATUSES, Decision, Verdict, response_header
from docuhooks.delivery.queries import Job
from docuhooks.delivery.transport import TransportResult
from docuhooks.store.database import Database, sqlstate

log = structlog.get_logger(__name__)

#: Outcomes written in one transaction at most.
MAX_BATCH = 500
#: How long the first outcome of a batch waits for others, unless this many are queued.
LINGER_SECONDS = 0.005
LINGER_UNTIL = 32


@dataclass(frozen=True, slots=True)
class SuspensionPolicy:
    failures: int
    span: timedelta
    probe_interval: timedelta


@dataclass(slots=True)
class Finished:
    """One attempt's outcome, ready to write."""

    job: Job
    attempt: int
    attempt_row: dict[str, Any]
    result: TransportResult
    decision: Decision
    now: datetime
    written: asyncio.Future[None] | None = field(default=None)
    #: With spans on: the attempt's span, and the span of its record (a child of it).
    attempt_span: tracing.Span | None = None
    record_span: tracing.Span | None = None

    @property
    def state_key(self) -> str:
        """Where its site's state of its destination is kept."""
        return state_key(self.job.webhook.site_id, self.job.webhook.destination)

    def destination_outcome(self) -> destinations.Outcome:
        result = self.result
        retry_after = None
        if result.status in RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response_header(result, "retry-after"), self.now)
        return destinations.Outcome(
            self.state_key,
            self._signal(),
            self.now,
            retry_after,
            answered=host_answered(result.status),
        )

    @property
    def quiet(self) -> bool:
        """Whether this attempt tells its destination nothing new if the destination is at
        rest: a success, or an answer that says nothing of its health (`signal_of`)."""
        result = self.result
        if result.status is not None and result.status < 500 and result.status != 429:
            return True  # the common case, without `signal_of`'s other questions
        return self._signal() in (Signal.HEALTHY, Signal.NONE)

    def _signal(self) -> Signal:
        """What the attempt says of its destination; nothing if no request went out."""
        result = self.result
        if not result.sent:
            return Signal.NONE
        return signal_of(result.status, result.error_class.value if result.error_class else None)

    @property
    def plain_success(self) -> bool:
        """A success that changes nothing but its delivery (no suspended webhook resumes)."""
        return self.decision.verdict is Verdict.SUCCEEDED and not self.job.probe

    def delivery_values(self) -> dict[str, Any]:
        result, decision = self.result, self.decision
        values: dict[str, Any] = {
            "attempts": self.attempt,
            "last_status_code": result.status,
            "last_error_class": result.error_class.value if result.error_class else None,
            "last_error": attempt_log.clip(result.error),
            "next_attempt_at": decision.next_attempt_at,
        }
        if decision.finished:
            values["status"] = (
                queries.SUCCEEDED if decision.verdict is Verdict.SUCCEEDED else queries.FAILED
            )
            values["completed_at"] = self.now
        return values


class Recorder:
    def __init__(
        self,
        db: Database,
        *,
        owner: str,
        policy: SuspensionPolicy,
        breaker: BreakerPolicy,
        retry_for_seconds: float,
        wake: Callable[[], None],
    ) -> None:
        self._db = db
        self._owner = owner
        self._policy = policy
        self._breaker = breaker
        self._destinations = destinations.Tracker()
        self._retry_for = retry_for_seconds
        self._wake = wake
        self._queue: list[Finished] = []
        self._task: asyncio.Task[None] | None = None

    async def record(self, item: Finished) -> None:
        """Queue `item` and return once it is written (or, after retrying, given up on)."""
        await asyncio.shield(self.submit(item))

    def submit(self, item: Finished) -> asyncio.Future[None]:
        """Queue `item`; the future is done once it is written (or given up on)."""
        written = item.written = asyncio.get_running_loop().create_future()
        if tracing.enabled():
            item.record_span = tracing.start_span(
                "docuhooks.delivery.record", parent=item.attempt_span
            )
        self._queue.append(item)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="docuhooks-recorder")
        return written

    async def flush(self, timeout: float) -> None:  # noqa: ASYNC109 - bounded by design
        """Wait (at most `timeout`) until everything queued is written."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=timeout)

    async def _drain(self) -> None:
        if len(self._queue) < LINGER_UNTIL:
            # Outcomes gather for a moment: a commit costs about the same for one attempt as
            # for dozens (its pages, not its rows), and the receivers already have theirs.
            await asyncio.sleep(LINGER_SECONDS)
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await self._write_with_retries(batch)
            finally:
                for item in batch:
                    if item.written is not None and not item.written.done():
                        item.written.set_result(None)
                    if item.record_span is not None:
                        item.record_span.set_attribute("docuhooks.record.batch", len(batch))
                        item.record_span.end()

    async def _write_with_retries(self, batch: list[Finished]) -> None:
        if await self._written_in_one_call(batch):
            return
        # A database restart should not turn a delivered event into a duplicate: keep trying
        # to write the outcomes for a while (the heartbeat keeps their leases meanwhile).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_for
        delay = 0.2
        while True:
            try:
                async with self._db.transaction() as conn:
                    await self._write(conn, batch)
                return
            except Exception as exc:
                if isinstance(exc, sa_exc.DBAPIError) and _refused_as_data(exc):
                    if await self._write_refused(batch, exc):
                        continue
                    return
                error = attempt_log.describe_error(exc)
                if loop.time() + delay > deadline:
                    for item in batch:
                        log.error(
                            "delivery.record_failed", delivery_id=item.job.delivery_id, error=error
                        )
                    return
                log.warning("delivery.record_retry", deliveries=len(batch), error=error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _written_in_one_call(self, batch: list[Finished]) -> bool:
        """PostgreSQL: write a batch of plain successes to destinations at rest in one round
        trip (`recorder_queries.record_successes`), outside a transaction; False, having
        written nothing, if the batch is anything else or the call fails (the batch is then
        written statement by statement, which retries)."""
        if self._db.dialect != "postgresql" or not all(item.plain_success for item in batch):
            return False
        try:
            async with self._db.autocommit() as conn:
                quiet = await self._destinations.quiet(
                    conn,
                    self._breaker,
                    clock=asyncio.get_running_loop().time(),
                    quiet=lambda unsettled: all(
                        item.quiet and item.state_key not in unsettled for item in batch
                    ),
                )
                if not quiet:
                    return False  # a destination's state changes: in the batch's transaction
                await recorder_queries.record_successes(
                    conn,
                    owner=self._owner,
                    successes=_successes(batch),
                    stat_rows=rollup.tally_of_attempts(item.attempt_row for item in batch).rows(),
                )
        except recorder_queries.NotPlain:
            return False
        except Exception as exc:
            # A value the database refuses (a receiver's NUL byte, say) is the next path's
            # to deal with, and to log; anything else is worth a line here too.
            refused = isinstance(exc, sa_exc.DBAPIError) and _refused_as_data(exc)
            (log.debug if refused else log.warning)(
                "delivery.record_in_one_call_failed",
                deliveries=len(batch),
                error=attempt_log.describe_error(exc),
            )
            return False
        return True

    async def _write_refused(self, batch: list[Finished], exc: sa_exc.DBAPIError) -> bool:
        """The database refused a value of `batch`, which no retry of the same rows cures.
        Write a batch's outcomes one by one, so only the refused one is affected; for that
        one, make its record plain (True: write it again) so its delivery is not sent again,
        or give up on it (False)."""
        if len(batch) > 1:
            for item in batch:
                await self._write_with_retries([item])
            return False
        (item,) = batch
        error = attempt_log.describe_error(exc)
        log.error("delivery.record_refused", delivery_id=item.job.delivery_id, error=error)
        # What the receiver sent is what a database refuses: keep the outcome without it, and
        # without any NUL (which PostgreSQL's text refuses).
        plain = {
            key: value.replace("\x00", "\ufffd") if isinstance(value, str) else value
            for key, value in item.attempt_row.items()
        } | {"response_body": None, "response_headers": None}
        if plain == item.attempt_row:
            return False  # the plainest record is refused too; the lease runs out
        item.attempt_row = plain
        item.result = dataclasses.replace(item.result, headers={}, body=b"")
        return True

    async def _write(self, conn: AsyncConnection, batch: list[Finished]) -> None:
        plain = [item for item in batch if item.plain_success]
        logged = await self._write_successes(conn, plain) if plain else []
        # The webhooks' rows in id order across the whole batch, as claims take them, so on
        # PostgreSQL the two never each wait for the other: the other outcomes by webhook
        # (stable, so each webhook's outcomes keep their order), and each plain success's
        # reset of its webhook's failure run just before the outcomes of webhooks after it.
        to_reset = sorted({item.job.webhook.id for item in plain})
        now = max((item.now for item in plain), default=batch[0].now)
        for item in sorted(
            (item for item in batch if not item.plain_success), key=lambda item: item.job.webhook.id
        ):
            hook = item.job.webhook.id
            await self._count_successes(conn, [h for h in to_reset if h <= hook], now)
            to_reset = [h for h in to_reset if h > hook]
            if await self._write_one(conn, item):
                logged.append(item.attempt_row)
        await self._count_successes(conn, to_reset, now)
        # The charts' counts, with the attempt rows they count (one upsert a batch).
        await rollup.add_attempts(conn, logged)
        # The calls' `flights` rows after their deliveries' and webhooks' rows: the order in
        # which the heartbeat and the claim take them too (`docuhooks_claim`), so on
        # PostgreSQL no two of them each wait for the other.
        await calls_in_flight.forget(
            conn, owner=self._owner, delivery_ids=[item.job.delivery_id for item in batch]
        )
        announced = await self._destinations.record(
            conn,
            lambda: [item.destination_outcome() for item in batch],
            self._breaker,
            max(item.now for item in batch),
            clock=asyncio.get_running_loop().time(),
            quiet=lambda unsettled: all(
                item.quiet and item.state_key not in unsettled for item in batch
            ),
        )
        if announced:
            self._wake()  # a breaker's operational events are due now

    async def _write_successes(
        self, conn: AsyncConnection, items: list[Finished]
    ) -> list[dict[str, Any]]:
        """Write the plain successes' deliveries and attempts (their webhooks' failure runs
        are `_write`'s); the attempt rows written."""
        by_status: dict[int | None, list[Finished]] = {}
        for item in items:
            by_status.setdefault(item.result.status, []).append(item)
        settled: set[str] = set()
        for status, group in by_status.items():
            settled |= await recorder_queries.settle_succeeded(
                conn,
                owner=self._owner,
                delivery_ids=[item.job.delivery_id for item in group],
                status_code=status,
                now=max(item.now for item in group),
            )
        unsettled = [item.job.delivery_id for item in items if item.job.delivery_id not in settled]
        existing = await recorder_queries.existing_deliveries(conn, unsettled)
        for delivery_id in existing:
            self._lost_lease(delivery_id)
        # An attempt of a delivery deleted meanwhile (with its webhook) has nowhere to go.
        logged = [
            item.attempt_row
            for item in items
            if item.job.delivery_id in settled or item.job.delivery_id in existing
        ]
        await recorder_queries.insert_attempts(conn, logged)
        return logged

    async def _count_successes(
        self, conn: AsyncConnection, webhook_ids: list[str], now: datetime
    ) -> None:
        """End these webhooks' failure runs (a success each), resuming the suspended."""
        if webhook_ids:
            resumed = await recorder_queries.count_successes(conn, webhook_ids, now)
            await self._resumed(conn, resumed, None, now)

    async def _write_one(self, conn: AsyncConnection, item: Finished) -> bool:
        """Write one outcome; False if its delivery was deleted meanwhile (nothing written)."""
        delivery_id, webhook_id, now = item.job.delivery_id, item.job.webhook.id, item.now
        ours = await recorder_queries.settle(
            conn, delivery_id=delivery_id, owner=self._owner, values=item.delivery_values()
        )
        if not ours:
            if not await recorder_queries.existing_deliveries(conn, [delivery_id]):
                return False  # the webhook (and with it the delivery) was deleted meanwhile
            # Our lease ran out and another worker holds the delivery; it decides what
            # happens next, but this attempt still happened and goes in the log.
            self._lost_lease(delivery_id)
        await recorder_queries.insert_attempts(conn, [item.attempt_row])
        verdict = item.decision.verdict
        if verdict is Verdict.SUCCEEDED:
            resumed = await recorder_queries.count_successes(conn, [webhook_id], now)
            await self._resumed(conn, resumed, item.job.webhook.suspended_at, now)
        elif verdict is Verdict.GONE:
            if await recorder_queries.deactivate(
                conn,
                webhook_id,
                now=now,
                reason=f"deactivated: the receiver answered 410 Gone at {now.isoformat()}",
            ):
                log.info("webhook.deactivated_gone", webhook_id=webhook_id)
                await self._announced(
                    operational.webhook_deactivated(
                        conn, webhook_id, status_code=item.result.status or 410, now=now
                    )
                )
        elif item.decision.counts_as_failure:
            failures = await recorder_queries.count_failure(conn, webhook_id, now)
            if not failures.suspended and should_suspend(
                failures.consecutive_failures,
                failures.first_failure_at,
                now,
                threshold=self._policy.failures,
                span=self._policy.span,
            ):
                next_probe_at = now + self._policy.probe_interval
                if await recorder_queries.suspend(
                    conn,
                    webhook_id,
                    now=now,
                    next_probe_at=next_probe_at,
                    reason=(
                        f"suspended: {failures.consecutive_failures} consecutive failed "
                        f"attempts since {failures.first_failure_at.isoformat()}"
                    ),
                ):
                    log.warning("webhook.suspended", webhook_id=webhook_id)
                    await self._announced(
                        operational.webhook_suspended(
                            conn,
                            webhook_id,
                            consecutive_failures=failures.consecutive_failures,
                            first_failure_at=failures.first_failure_at,
                            next_probe_at=next_probe_at,
                            now=now,
                        )
                    )
        return True

    def _lost_lease(self, delivery_id: str) -> None:
        metrics.LEASES_LOST.inc()
        log.warning("delivery.lease_lost", delivery_id=delivery_id, worker_id=self._owner)

    async def _resumed(
        self,
        conn: AsyncConnection,
        webhook_ids: list[str],
        suspended_at: datetime | None,
        now: datetime,
    ) -> None:
        for webhook_id in webhook_ids:
            log.info("webhook.resumed", webhook_id=webhook_id)
            await operational.webhook_resumed(
                conn, webhook_id, resumed_by="probe", suspended_at=suspended_at, now=now
            )
        if webhook_ids:
            self._wake()

    async def _announced(self, queued: Awaitable[int]) -> None:
        """Wake the workers if an operational event was queued (it is due now)."""
        if await queued:
            self._wake()


def _successes(batch: list[Finished]) -> list[recorder_queries.Success]:
    """The batch's plain successes as `record_successes` takes them, each settled at the
    latest time of those with its status code (as `_write_successes` settles them)."""
    latest: dict[int | None, datetime] = {}
    for item in batch:
        status = item.result.status
        if status not in latest or item.now > latest[status]:
            latest[status] = item.now
    return [
        recorder_queries.Success(
            item.job.delivery_id,
            item.result.status,
            latest[item.result.status],
            item.attempt_row,
        )
        for item in batch
    ]


def _refused_as_data(exc: sa_exc.DBAPIError) -> bool:
    """Whether the database refused a value (SQLSTATE class 22, "data exception"), which no
    retry of the same statement can cure, rather than the connection or the server."""
    if isinstance(exc, sa_exc.DataError):
        return True
    state = sqlstate(exc)
    return state is not None and state.startswith("22")
