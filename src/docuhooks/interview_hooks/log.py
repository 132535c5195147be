"""The delivery log of interview calls: the same events, deliveries and attempts tables the
notification worker writes, so administrators see every call to a receiver in one place.

Interview calls are never retried (a person is waiting), so each delivery has exactly one
attempt and is finished when it is written: `succeeded` or `failed`, nothing left due.

The log is written off the waiting path: with the app's `start_log_writer` component running,
a step's rows go to a bounded queue and one background task writes them, many steps per
transaction (gathered for `LINGER_SECONDS`), after the person already has their interview.
Stopping the component writes everything queued first. Without the component (a script, a
test) each step is written in a transaction of its own before the step returns.

On SQLite one writer holds the lock at a time, and a writer that finds it taken sleeps in
SQLite's busy handler (1, 2, 5, 10 ms …) instead of being woken when it frees. So the
writer stays out of the way of the writes a person waits on: interview steps open their
transactions with `foreground_transaction`, the writer starts a batch only when none is
open (or after `YIELD_SECONDS`, so it cannot starve), and a step that finds a batch being
written waits for its commit on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.signing import OutboundRequest
from docuhooks.core.tracecontext import TraceContext
from docuhooks.delivery import attempt_log
from docuhooks.delivery.transport import TransportResult
from docuhooks.interview_hooks.interfaces import InterviewContext
from docuhooks.interview_hooks.replies import Outcome
from docuhooks.store.schema import attempts, deliveries, events

#: Steps queued before a step's caller waits for the writer (back-pressure, never loss).
QUEUE_STEPS = 1000
#: Steps written in one transaction at most.
BATCH_STEPS = 200
#: How long stopping may take to write what is queued.
STOP_TIMEOUT_SECONDS = 30.0
#: How long the writer gathers steps after the first before it writes them: a step takes
#: the write lock briefly, but once per batch, so this bounds the writer's share of it.
LINGER_SECONDS = 0.05
#: How long a batch waits for interview steps' transactions to end before it is written
#: beside them anyway.
YIELD_SECONDS = 0.2

logger = structlog.get_logger("docuhooks.interview_hooks.log")


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One interview call as the log keeps it."""

    delivery_id: str
    webhook_id: str
    started_at: datetime
    request: OutboundRequest | None
    result: TransportResult | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class StepLog:
    """One interview step as the log keeps it: its event and one record per call."""

    event: Mapping[str, Any]
    site_id: str
    work_item_id: str
    calls: Sequence[CallRecord]
    created_at: datetime
    finished_at: datetime
    #: The trace context the step ran in, kept with its event.
    trace: TraceContext | None = None


async def write(conn: AsyncConnection, steps: Sequence[StepLog]) -> None:
    """Insert each step's event, and one finished delivery with its one attempt per call:
    three statements however many steps there are."""
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    for step in steps:
        event_rows.append(
            {
                "id": step.event["eventId"],
                "site_id": step.site_id,
                "event_type": step.event["eventType"],
                "payload": dict(step.event),
                "work_item_id": step.work_item_id,
                "created_at": step.created_at,
                "traceparent": step.trace.traceparent if step.trace else None,
                "tracestate": step.trace.state or None if step.trace else None,
            }
        )
        _rows_of(step, delivery_rows, attempt_rows)
    if event_rows:
        await conn.execute(events.insert(), event_rows)
    if delivery_rows:
        await conn.execute(deliveries.insert(), delivery_rows)
    if attempt_rows:
        await conn.execute(attempts.insert(), attempt_rows)


def _rows_of(
    step: StepLog, delivery_rows: list[dict[str, Any]], attempt_rows: list[dict[str, Any]]
) -> None:
    event, site_id, finished_at = step.event, step.site_id, step.finished_at
    for call in step.calls:
        outcome, result = call.outcome, call.result
        status_code = result.status if result is not None else None
        delivery_rows.append(
            {
                "id": call.delivery_id,
                "event_id": event["eventId"],
                "webhook_id": call.webhook_id,
                "site_id": site_id,
                "status": "succeeded" if outcome.succeeded else "failed",
                "attempts": 1,
                "next_attempt_at": None,
                "last_status_code": status_code,
                "last_error_class": str(outcome.error_class) if outcome.error_class else None,
                "last_error": attempt_log.clip(outcome.error),
                "created_at": call.started_at,
                "completed_at": finished_at,
            }
        )
        if call.request is None:
            # The request could not even be built (e.g. a webhook without its secret): the
            # delivery says why, and there is no attempt to show.
            continue
        attempt_rows.append(
            attempt_log.attempt_row(
                delivery_id=call.delivery_id,
                webhook_id=call.webhook_id,
                site_id=site_id,
                attempt_number=1,
                started_at=call.started_at,
                method=call.request.method,
                url=call.request.url,
                request_headers=call.request.headers,
                result=result,
                error_class=outcome.error_class,
                error=outcome.error,
            )
        )


class LogWriter:
    """Writes queued steps in the background, a batch per transaction."""

    def __init__(self, ctx: InterviewContext) -> None:
        self._ctx = ctx
        self._queue: asyncio.Queue[StepLog] = asyncio.Queue(QUEUE_STEPS)
        self._task: asyncio.Task[None] | None = None
        # Interview transactions open or about to open, and whether none is.
        self._foreground = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        # Set while no batch is being written.
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="interview-log-writer")

    @property
    def writing(self) -> bool:
        """Whether a batch is being written (holding, or waiting for, the write lock)."""
        return not self._idle.is_set()

    async def submit(self, step: StepLog) -> None:
        if self._task is None or self._task.done():
            await _write_alone(self._ctx, [step])
            return
        try:
            self._queue.put_nowait(step)
        except asyncio.QueueFull:
            await self._queue.put(step)

    @asynccontextmanager
    async def foreground(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction the writer does not start a batch beside."""
        self._foreground += 1
        self._quiet.clear()
        try:
            await self._idle.wait()
            async with self._ctx.db.transaction() as conn:
                yield conn
        finally:
            self._foreground -= 1
            if not self._foreground:
                self._quiet.set()

    async def stop(self) -> None:
        """Write everything queued, then end the task."""
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await self._queue.join()
        except TimeoutError:
            logger.error("interview log not flushed in time", queued=self._queue.qsize())
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        # Anything left (the writer failed or timed out) is still worth one direct try.
        left: list[StepLog] = []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if left:
            await _write_alone(self._ctx, left)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            try:
                await asyncio.sleep(LINGER_SECONDS)
                await self._after_foreground()
                while len(batch) < BATCH_STEPS and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                # No await between the check above and this: a step that comes now waits.
                self._idle.clear()
                await _write_alone(self._ctx, batch)
            finally:
                self._idle.set()
                for _ in batch:
                    self._queue.task_done()

    async def _after_foreground(self) -> None:
        if self._ctx.db.dialect != "sqlite":
            return  # row locks: log inserts and interview writes do not queue on each other
        try:
            async with asyncio.timeout(YIELD_SECONDS):
                while self._foreground:
                    await self._quiet.wait()
        except TimeoutError:
            pass


async def _write_alone(ctx: InterviewContext, steps: Sequence[StepLog]) -> None:
    """Write `steps` in one transaction; if that fails, each on its own, so one bad step
    cannot take the others with it. Never raises: the person has their interview."""
    try:
        async with ctx.db.transaction() as conn:
            await write(conn, steps)
        return
    except Exception:
        if len(steps) == 1:
            logger.exception("interview delivery log not written", event_id=_event_id(steps[0]))
            return
    for step in steps:
        try:
            async with ctx.db.transaction() as conn:
                await write(conn, [step])
        except Exception:
            logger.exception("interview delivery log not written", event_id=_event_id(step))


def _event_id(step: StepLog) -> Any:
    return step.event.get("eventId")


async def submit(ctx: InterviewContext, step: StepLog) -> None:
    """Log `step`: queued for the app's writer when it runs, else written now."""
    if ctx.interview_log is None:
        await _write_alone(ctx, [step])
    else:
        await ctx.interview_log.submit(step)


def foreground_transaction(ctx: InterviewContext) -> AbstractAsyncContextManager[AsyncConnection]:
    """A write transaction for an interview step a person waits on: the log writer does not
    start a batch beside it (see the module's notes)."""
    if ctx.interview_log is None or ctx.db.dialect != "sqlite":
        return ctx.db.transaction()
    return ctx.interview_log.foreground()


async def start_log_writer(ctx: InterviewContext) -> Callable[[], Awaitable[None]]:
    """The app component that writes interview delivery logs after the reply."""
    writer = LogWriter(ctx)
    writer.start()
    ctx.interview_log = writer

    async def stop() -> None:
        if ctx.interview_log is writer:
            ctx.interview_log = None
        await writer.stop()

    return stop
