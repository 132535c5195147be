"""The delivery worker: claim due deliveries, send them, record what happened.

A claimer leases batches of due deliveries (probes of suspended webhooks first) into an
in-memory queue, and `worker_concurrency` sender coroutines take them from it, make each
attempt (`delivery.attempts`), and hand each outcome to the recorder, which writes
everything that finished meanwhile in one transaction. The claimer claims ahead (up to a
batch beyond what the senders hold) so the senders never wait for a claim under load, and
sleeps until woken (a new event, room freed) or until the next delivery falls due. A
delivery stays held, and its lease kept fresh by the heartbeat, from its claim until its
outcome is written; a lease is `lease_owner` plus `lease_expires_at`, so only a dead or
cut-off worker's leases run out, and then any other worker takes those deliveries over (the
cut-off worker's own next claim leaves them to the calls it has in hand: `Worker._take`).

Everything that depends on time asks the injected :class:`Clock`; everything random asks the
injected `rng`; so tests drive the whole retry schedule with a FakeClock and never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import tracing
from docuhooks.core.clock import Clock
from docuhooks.core.destinations import BreakerPolicy
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.tracecontext import TraceContext
from docuhooks.delivery import (
    calls_in_flight,
    claims,
    metrics,
    queries,
    upkeep_queries,
)
from docuhooks.delivery.attempt_log import describe_error
from docuhooks.delivery.attempts import Attempts
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.delivery.queries import Job
from docuhooks.delivery.recorder import Finished, Recorder, SuspensionPolicy
from docuhooks.delivery.wakeup import Alarm, PostgresListener
from docuhooks.settings import Settings
from docuhooks.store.database import display_url

__all__ = ["Worker", "WorkerOptions", "start_worker"]

log = structlog.get_logger(__name__)

#: A dead worker's heartbeat row is removed after this many leases of silence.
_FORGET_AFTER_LEASES = 10


class _Unknown:
    """Not asked (`Worker._next_due`)."""


_UNKNOWN = _Unknown()

#: Claims come at most this often while deliveries are in hand and the last claim came back
#: short (see `Worker._space_out_claims`).
CLAIM_GAP_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    concurrency: int = 64
    batch_size: int = 100
    lease: timedelta = timedelta(seconds=60)
    poll_seconds: float = 2.0
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    probe_interval: timedelta = timedelta(minutes=10)
    suspend_after_failures: int = 20
    suspend_after: timedelta = timedelta(hours=24)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    #: Calls in flight at most to one destination and for one site, installation-wide.
    caps: claims.Caps = field(default_factory=claims.Caps)
    #: How long a graceful stop waits for in-flight sends before handing their leases back.
    shutdown_grace_seconds: float = 10.0
    #: A delivery that waited this long for a sender since its claim (behind slow calls) is
    #: checked against its webhook before it goes: one deactivated, deleted or changed by an
    #: admin meanwhile sends nothing more (`Worker._may_send`). One read covers every
    #: webhook in hand, at most this often; a delivery sent sooner is not checked.
    recheck_after_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerOptions:
        if settings.worker_concurrency < 1 or settings.worker_batch_size < 1:
            raise ValueError("worker_concurrency and worker_batch_size must be at least 1")
        return cls(
            concurrency=settings.worker_concurrency,
            batch_size=settings.worker_batch_size,
            lease=timedelta(seconds=settings.worker_lease_seconds),
            poll_seconds=settings.worker_poll_seconds,
            schedule=RetrySchedule.from_setting(settings.retry_schedule),
            probe_interval=timedelta(seconds=settings.probe_interval_seconds),
            suspend_after_failures=settings.suspend_after_failures,
            suspend_after=timedelta(hours=settings.suspend_after_hours),
            breaker=BreakerPolicy(
                failure_threshold=settings.breaker_failure_threshold,
                probe_interval=timedelta(seconds=settings.breaker_probe_seconds),
            ),
            caps=claims.Caps.from_settings(settings),
            shutdown_grace_seconds=min(10.0, settings.worker_lease_seconds / 2),
        )


class Worker:
    def __init__(
        self,
        ctx: DeliveryContext,
        options: WorkerOptions | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.options = options or WorkerOptions.from_settings(ctx.settings)
        self._attempts = Attempts(
            ctx,
            clock=clock or ctx.clock,
            rng=rng or random.Random(),
            schedule=self.options.schedule,
            probe_interval=self.options.probe_interval,
        )
        hostname = socket.gethostname()[:40]
        self.id = worker_id or f"{hostname}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._hostname = hostname
        #: Every delivery this worker leased and has not finished recording: queued for a
        #: sender, being sent, or waiting for the recorder. The heartbeat extends these leases.
        self._held: dict[str, Job] = {}
        self._ready: asyncio.Queue[Job | None] = asyncio.Queue()
        #: Held deliveries whose call has ended and whose outcome is not written yet: the next
        #: claim removes their `flights` rows first (see `_claim`; on PostgreSQL, a claim
        #: reading its candidates takes those that end meanwhile too); the recorder would too.
        self._ended: list[Job] = []
        #: Deliveries a claim leased while this worker still held them (`_take`): their
        #: leases are handed back once they are let go.
        self._taken_again: set[str] = set()
        #: With traces on: the span of the claim whose jobs `_take` is given.
        self._claim_span: TraceContext | None = None
        self._sending = 0
        self._senders: list[asyncio.Task[None]] = []
        #: Deliveries held at most: one per sender, plus a batch claimed ahead.
        self._capacity = self.options.concurrency + self.options.batch_size
        self._stopping = False
        self._alarm: Alarm | None = None
        self._listener: PostgresListener | None = None
        self._background: list[asyncio.Task[None]] = []
        #: With traces on: the claim span each held delivery came in, for its attempt's link.
        self._claimed_in: dict[str, TraceContext] = {}
        #: When (loop time) each delivery waiting for a sender was claimed (`_may_send`).
        self._claimed_at: dict[str, float] = {}
        #: The webhooks in hand as last read (`_may_send`): when, and their states.
        self._states_read_at = float("-inf")
        self._states: dict[str, Any] = {}
        self._states_lock = asyncio.Lock()
        self._probe_check_every = min(self.options.probe_interval, timedelta(seconds=1))
        self._next_probe_check = datetime.min.replace(tzinfo=UTC)
        #: A claim failed: it may have committed leases whose answer never arrived (the
        #: connection dropped, or the call was cancelled, after PostgreSQL's procedure
        #: committed them). The next claim hands back what this worker leased but holds not.
        self._claim_lost = False
        #: Room worth a claim. A claim is a write transaction whatever its size, so under
        #: load the worker waits for room for a quarter batch rather than claim per delivery.
        self._claim_at = max(1, self.options.batch_size // 4)
        self._last_claim_short = False
        self._last_claim_at = 0.0
        #: When the next delivery falls due, as the last claim that came back short saw it.
        self._next_due: datetime | _Unknown | None = _UNKNOWN
        self._recorder = Recorder(
            ctx.db,
            owner=self.id,
            policy=SuspensionPolicy(
                failures=self.options.suspend_after_failures,
                span=self.options.suspend_after,
                probe_interval=self.options.probe_interval,
            ),
            # The adaptive limit grows no higher than the claim would let calls go anyway.
            breaker=dataclasses.replace(
                self.options.breaker, max_concurrency=self.options.caps.ceiling
            ),
            # About half a lease: the heartbeat keeps the leases while the writes are retried.
            retry_for_seconds=self.options.lease.total_seconds() / 2,
            wake=self.wake,
        )

    @property
    def clock(self) -> Clock:
        """What the claims, the attempts and the heartbeat take the time from."""
        return self._attempts.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._attempts.clock = clock

    @property
    def rng(self) -> random.Random:
        """What the retry schedule's jitter is drawn from."""
        return self._attempts.rng

    @rng.setter
    def rng(self, rng: random.Random) -> None:
        self._attempts.rng = rng

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Run the loop in the background; `stop()` ends it."""
        self._alarm = Alarm()
        self.ctx.on_events_committed.append(self.wake)
        listen = self.ctx.db.listen_dsn()
        if listen is not None:
            self._listener = PostgresListener(listen, self._alarm)
            self._listener.start()
        elif self.ctx.db.dialect == "postgresql":
            log.warning(
                "worker.polling",
                reason="database_pooler = transaction and no database_listen_url: a LISTEN "
                "through the pooler would hear nothing",
                poll_seconds=self.options.poll_seconds,
                fix="set DOCUHOOKS_DATABASE_LISTEN_URL to a direct postgresql:// URL",
            )
        # In the fleet before taking any work, so the metrics never show work without a worker.
        await self._heartbeat()
        self._senders = [
            asyncio.create_task(self._sender(), name=f"docuhooks-sender-{i}")
            for i in range(self.options.concurrency)
        ]
        self._background = [
            asyncio.create_task(self._loop(), name="docuhooks-worker"),
            asyncio.create_task(self._heartbeat_loop(), name="docuhooks-heartbeat"),
        ]
        log.info(
            "worker.started",
            worker_id=self.id,
            concurrency=self.options.concurrency,
            database=display_url(self.ctx.settings.resolved_database_url),
        )

    def wake(self) -> None:
        """Look for due deliveries now (called after a commit that wrote events)."""
        if self._alarm is not None:
            self._alarm.ring()

    async def stop(self) -> None:
        """Stop claiming; let in-flight sends finish for a grace period; release the rest."""
        self._stopping = True
        self.wake()
        with contextlib.suppress(ValueError):
            self.ctx.on_events_committed.remove(self.wake)
        loop_task, heartbeat_task = self._background or (None, None)
        if loop_task is not None:
            await loop_task
        # Deliveries claimed but not started stay unsent; their leases are handed back below.
        while not self._ready.empty():
            job = self._ready.get_nowait()
            if job is not None:
                self._let_go(job)
                self._claimed_in.pop(job.delivery_id, None)
                self._claimed_at.pop(job.delivery_id, None)
        for _ in self._senders:
            self._ready.put_nowait(None)
        if self._senders:
            await asyncio.wait(self._senders, timeout=self.options.shutdown_grace_seconds)
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)
        # Attempts that were made are written before their leases are handed back.
        await self._recorder.flush(self.options.shutdown_grace_seconds)
        if heartbeat_task is not None:
            heartbeat_task.cancel()
            await asyncio.gather(heartbeat_task, return_exceptions=True)
        if self._listener is not None:
            await self._listener.stop()
        try:
            async with self.ctx.db.transaction() as conn:
                released = await queries.release_leases(conn, owner=self.id)
                await upkeep_queries.forget_worker(conn, self.id)
            log.info("worker.stopped", worker_id=self.id, released=released)
        except Exception as exc:
            # The leases will simply run out; another worker takes over then.
            log.warning("worker.release_failed", worker_id=self.id, error=str(exc))
        metrics.IN_FLIGHT.set(0)

    # --- the loop -------------------------------------------------------------------------

    async def run_once(self) -> list[str]:
        """Claim one batch, send it, and wait for every send to be recorded (for tests and
        tools). Returns the ids of the deliveries attempted. One call at a time, and not
        beside `start()`: its deliveries are not held, so a hand-back after a failed claim
        would take them too."""
        jobs = await self._claim(self.options.batch_size)
        self._link_to_claim(jobs)
        claimed_at = asyncio.get_running_loop().time()
        self._claimed_at.update((job.delivery_id, claimed_at) for job in jobs)
        semaphore = asyncio.Semaphore(self.options.concurrency)

        async def bounded(job: Job) -> None:
            async with semaphore:
                if await self._may_send(job):
                    await self._deliver(job)

        await asyncio.gather(*(bounded(job) for job in jobs))
        return [job.delivery_id for job in jobs]

    async def _loop(self) -> None:
        """The claimer: keep the senders' queue fed."""
        assert self._alarm is not None
        loop = asyncio.get_running_loop()
        while not self._stopping:
            room = self._capacity - len(self._held)
            if room < self._claim_at:
                # Too little room to be worth a claim: the recording that frees enough rings
                # the alarm. Under load this claims in large batches, not one per delivery.
                # Leases a claim skipped go back meanwhile, not only at the next claim.
                if self._taken_again:
                    await self._try_hand_back_taken_again()
                await self._alarm.wait(self.options.poll_seconds)
                continue
            wanted = min(room, self.options.batch_size)
            await self._space_out_claims()
            if self._stopping:
                break  # stop() came during the pause: claim nothing more
            held = set(self._held)
            try:
                jobs = await self._claim(wanted)
            except Exception as exc:
                # The database is away (restart, network): keep trying at the poll interval.
                log.warning("worker.claim_failed", worker_id=self.id, error=describe_error(exc))
                await self._alarm.wait(self.options.poll_seconds)
                continue
            self._take(jobs, held)
            self._last_claim_short = len(jobs) < wanted
            self._last_claim_at = loop.time()
            if len(jobs) == wanted:
                continue  # more may be waiting
            if self._alarm.take():
                # Rung while claiming (an event committed meanwhile): claim again now, as
                # waiting would, without first asking the store when to wake.
                continue
            await self._alarm.wait(await self._idle_seconds())

    async def _space_out_claims(self) -> None:
        """While deliveries are in hand and the last claim found fewer than it could take,
        claims come at most every `CLAIM_GAP_SECONDS`: events committed one at a time then
        share a claim (a write transaction whatever its size) instead of each taking one.
        An idle worker claims at once."""
        if not (self._last_claim_short and self._held):
            return
        wait = self._last_claim_at + CLAIM_GAP_SECONDS - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _sender(self) -> None:
        """One of `concurrency` senders: take a claimed delivery, send it, hand the outcome to
        the recorder, take the next. The lease stays held until the outcome is written."""
        while (job := await self._ready.get()) is not None:
            if not await self._may_send(job):
                continue
            self._sending += 1
            metrics.IN_FLIGHT.set(self._sending)
            try:
                finished = await self._attempt(job)
            except asyncio.CancelledError:
                # Cancelled at shutdown: no outcome to write; the lease is handed back.
                self._let_go(job)
                raise
            except Exception:
                # A bug, not a receiver's doing (those are outcomes): keep this sender alive;
                # the lease runs out and the delivery is tried again.
                log.exception("delivery.attempt_crashed", delivery_id=job.delivery_id)
                self._let_go(job)
                continue
            finally:
                self._sending -= 1
            self._ended.append(job)
            self._recorder.submit(finished).add_done_callback(self._on_recorded(job))

    def _on_recorded(self, job: Job) -> Callable[[asyncio.Future[None]], None]:
        return lambda _: self._recorded(job)

    def _recorded(self, job: Job) -> None:
        self._let_go(job)
        room_now_enough = self._capacity - len(self._held) == self._claim_at
        # After a short claim, what held deliveries back (a webhook at its `maxConcurrency`,
        # a destination at its limit, an ordered webhook's turn, a suspended backlog) may
        # have just made room: claim again (spaced out, see `_space_out_claims`).
        if room_now_enough or self._last_claim_short:
            self.wake()

    def _let_go(self, job: Job) -> None:
        """`job` is no longer held. Only that claim of its delivery: a later claim of it,
        once held, stays held (its lease kept by the heartbeat, and never handed back)."""
        if self._held.get(job.delivery_id) is job:
            del self._held[job.delivery_id]

    def _take(self, jobs: list[Job], held: Set[str]) -> None:
        """Hold what a claim leased and queue it for the senders, but for the deliveries this
        worker held when the claim began (`held`).

        A claim takes a held delivery only if its lease ran out while its call went on
        (heartbeats missed while the database was away), or if its outcome was written and
        a retry fell due at once. In the first case the call in hand goes on alone: sent
        again, the delivery would have two calls at once, counted as one by the caps, and
        its first outcome, written whenever it comes (before this claim's lease or after
        it), settles it and clears a lease of this worker's. In the second, the delivery
        waits for the next claim: the lease this claim took is handed back once the earlier
        claim is let go (`_hand_back_taken_again`), as it is in the first case if the
        outcome came before the lease."""
        taken = []
        claimed_at = asyncio.get_running_loop().time()
        for job in jobs:
            if job.delivery_id in held:
                # Still held: its lease ran out while its call went on (heartbeats missed),
                # which an operator should see; otherwise a retry that fell due at once.
                still_held = job.delivery_id in self._held
                (log.warning if still_held else log.info)(
                    "worker.held_delivery_claimed_again",
                    worker_id=self.id,
                    delivery_id=job.delivery_id,
                    call_in_hand=still_held,
                )
                self._taken_again.add(job.delivery_id)
                continue
            self._held[job.delivery_id] = job
            self._claimed_at[job.delivery_id] = claimed_at
            self._ready.put_nowait(job)
            taken.append(job)
        self._link_to_claim(taken)

    def _link_to_claim(self, jobs: list[Job]) -> None:
        """With traces on: `jobs`' attempts link to the span of the claim that brought them
        (`_claim`); a claim's jobs left out are never attempted, and keep none."""
        if self._claim_span is not None:
            for job in jobs:
                self._claimed_in[job.delivery_id] = self._claim_span
            self._claim_span = None

    async def _try_hand_back_taken_again(self) -> None:
        try:
            await self._hand_back_taken_again()
        except Exception as exc:
            # Tried again before the next claim; at worst the leases run out.
            log.warning("worker.hand_back_failed", worker_id=self.id, error=describe_error(exc))

    async def _hand_back_taken_again(self) -> None:
        """Hand back the leases `_take` skipped whose earlier claims are let go now (a
        lease the outcome cleared already is not this worker's any more: left as it is)."""
        let_go = [d for d in self._taken_again if d not in self._held]
        if not let_go:
            return
        async with self.ctx.db.transaction(urgent=True) as conn:
            await queries.release(conn, owner=self.id, delivery_ids=let_go)
        self._taken_again.difference_update(let_go)

    async def _idle_seconds(self) -> float:
        """Sleep until the next delivery is due, at most the poll interval."""
        due = self._next_due
        if isinstance(due, _Unknown):
            try:
                async with self.ctx.db.read(single_statement=True) as conn:
                    due = await queries.next_due_at(conn)
            except Exception:
                return self.options.poll_seconds
        if due is None:
            return self.options.poll_seconds
        wait = (due - self.clock.now()).total_seconds()
        if wait <= 0:
            # Due but not claimable (leased elsewhere, suspended, waiting its turn): polling
            # sooner would spin.
            return self.options.poll_seconds
        return min(wait, self.options.poll_seconds)

    async def _heartbeat_loop(self) -> None:
        interval = max(self.options.lease.total_seconds() / 3, 0.05)
        while True:
            await asyncio.sleep(interval)
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        now = self.clock.now()

        async def beat(conn: AsyncConnection) -> None:
            await queries.extend_leases(
                conn,
                owner=self.id,
                delivery_ids=list(self._held),
                until=now + self.options.lease,
            )
            await upkeep_queries.heartbeat(
                conn, worker_id=self.id, hostname=self._hostname, pid=os.getpid(), now=now
            )
            await upkeep_queries.forget_dead_workers(
                conn, silent_since=now - self.options.lease * _FORGET_AFTER_LEASES
            )

        try:
            # Run again if PostgreSQL aborts it to end a deadlock with a writer that took the
            # same deliveries in another order: a heartbeat missed lets leases run out while
            # their calls are still in flight.
            await self.ctx.db.retried(beat)
        except Exception as exc:
            log.warning("worker.heartbeat_failed", worker_id=self.id, error=describe_error(exc))

    # --- one delivery ---------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[Job]:
        if not tracing.enabled():
            return await self._claim_untraced(limit)
        # A claim serves many events' traces: a trace of its own, which each attempt links.
        with tracing.span(
            "docuhooks.delivery.claim",
            parent=None,
            kind=tracing.Kind.CONSUMER,
            attributes={"docuhooks.worker.id": self.id, "docuhooks.claim.limit": limit},
        ) as span:
            jobs = await self._claim_untraced(limit)
            span.set_attribute("docuhooks.claim.deliveries", len(jobs))
        # Recorded for the jobs `_take` holds (or `run_once` sends), not for a claim it skips.
        self._claim_span = span.context
        return jobs

    async def _claim_untraced(self, limit: int) -> list[Job]:
        if self._taken_again:
            await self._try_hand_back_taken_again()
        if self._claim_lost:
            try:
                await self._hand_back_lost_leases()
            except Exception as exc:
                # Tried again before the next claim; this one goes ahead meanwhile.
                log.warning("worker.hand_back_failed", worker_id=self.id, error=describe_error(exc))
        now = self.clock.now()
        jobs: list[Job] = []
        self._next_due = _UNKNOWN
        # The calls that ended since the last claim are no longer in flight, though their
        # outcomes may wait a few milliseconds for the recorder: counted, they would keep
        # their room under the caps (their webhook's `maxConcurrency`, their destination's
        # and their site's) from this claim. Their rows go in the claim's first transaction,
        # before anything is leased (so never a row of a delivery leased again since).
        ended = [job.delivery_id for job in self._ended_since()]
        # Probes are minutes apart, so looking for due ones once a second is soon enough,
        # and spares every other claim (each new event's, at low load) a statement.
        if now >= self._next_probe_check:
            self._next_probe_check = now + self._probe_check_every
            with self._answer_may_be_lost():
                async with self.ctx.db.transaction(urgent=True) as conn:
                    await calls_in_flight.forget(conn, owner=self.id, delivery_ids=ended)
                    ended = []
                    ids = await queries.claim_probes(
                        conn,
                        owner=self.id,
                        now=now,
                        lease=self.options.lease,
                        probe_interval=self.options.probe_interval,
                        limit=limit,
                    )
                    jobs = await queries.load_jobs(conn, ids)
                    await calls_in_flight.record(
                        conn, jobs, owner=self.id, until=now + self.options.lease
                    )
        if len(jobs) == limit:
            return jobs
        probed = {job.delivery_id for job in jobs}

        def ended_meanwhile() -> list[Job]:
            # Not a probe just leased: an earlier call of the same delivery may have ended
            # meanwhile, its outcome written (and its row deleted with it) before the
            # probe's lease; its `flights` row is the probe's now.
            return [job for job in self._ended_since() if job.delivery_id not in probed]

        # Urgent: on SQLite the claim goes before other writers still waiting for their
        # turn, since it serves every event already committed (see `WriteLock`). On
        # PostgreSQL its statements need no transaction around them (`claims.claim`), which
        # spares two round trips.
        try:
            with self._answer_may_be_lost():
                async with self.ctx.db.autocommit(urgent=True) as conn:
                    claimed = await claims.claim(
                        conn,
                        owner=self.id,
                        now=now,
                        lease=self.options.lease,
                        limit=limit - len(jobs),
                        probe_interval=self.options.breaker.probe_interval,
                        caps=self.options.caps,
                        ended=ended,
                        ended_since=ended_meanwhile,
                    )
                    if len(jobs) + len(claimed) < limit and self.ctx.db.is_sqlite:
                        # The loop waits next, until the next delivery falls due: asked
                        # here, it costs SQLite no transaction of its own. (On PostgreSQL it
                        # would cost this claim a round trip with the sites locked, and a
                        # busy worker, rung while claiming, claims again without asking:
                        # `_idle_seconds` asks, in one statement, only before it waits.)
                        self._next_due = await queries.next_due_at(conn)
        except Exception as exc:
            if not jobs:
                raise
            # The probes are leased to this worker already: send them, not wait a lease.
            # Not what the claim returned: in a transaction (SQLite, or PostgreSQL behind a
            # pooler), a failure after it rolled its leases back.
            log.warning("worker.claim_failed", worker_id=self.id, error=describe_error(exc))
            return jobs
        return jobs + claimed

    @contextlib.contextmanager
    def _answer_may_be_lost(self) -> Iterator[None]:
        """A claim's transaction can commit and its answer never come: the connection
        drops, or the claim is cancelled, after the commit. If what it wraps fails, the
        next claim hands back what this worker leased but holds not (`_claim_lost`; on
        SQLite a failed transaction always rolls back)."""
        try:
            yield
        except BaseException:
            self._claim_lost = self.ctx.db.dialect == "postgresql"
            raise

    def _ended_since(self) -> list[Job]:
        """The held deliveries whose calls have ended since this was last asked. (Those no
        longer held, or held by a later claim, have had their outcome written, and their
        `flights` rows deleted with it.)"""
        ended = [job for job in self._ended if self._held.get(job.delivery_id) is job]
        self._ended = []
        return ended

    async def _hand_back_lost_leases(self) -> None:
        """Hand back the leases a failed claim may have committed without this worker
        hearing of them: they would otherwise wait out their lease, their calls counted
        against every cap meanwhile (a webhook at its `maxConcurrency` would send nothing
        for that long). A claim writes each lease's `flights` row in the same commit."""
        async with self.ctx.db.transaction(urgent=True) as conn:
            count = await queries.release_unheld(conn, owner=self.id, held=list(self._held))
        self._claim_lost = False
        if count:
            log.info("worker.lost_claim_handed_back", worker_id=self.id, deliveries=count)

    async def _may_send(self, job: Job) -> bool:
        """Whether `job` may go now. One that waited for a sender `recheck_after_seconds` or
        longer since its claim (behind slow calls: up to their timeouts) goes only if its
        webhook is as the claim read it: deactivated, deleted or changed (its URL, its
        secret) by an admin meanwhile, it is let go and its lease handed back, so nothing
        more is sent for a stopped webhook and a changed one's delivery is claimed again
        with what it is now. The check is a read of every webhook in hand at once, at most
        once per `recheck_after_seconds`; a delivery sent sooner is not checked."""
        claimed_at = self._claimed_at.pop(job.delivery_id, None)
        loop = asyncio.get_running_loop()
        recheck_after = self.options.recheck_after_seconds
        if claimed_at is None or loop.time() - claimed_at < recheck_after:
            return True
        try:
            state = await self._webhook_state(job, read_since=loop.time() - recheck_after)
        except Exception as exc:
            # The database is away: the claim's reading stands, as it would without a check.
            log.warning("worker.recheck_failed", worker_id=self.id, error=describe_error(exc))
            return True
        if state is not None and state.active and state.modified_at == job.webhook.modified_at:
            return True
        reason = "deleted" if state is None else "deactivated" if not state.active else "changed"
        log.info(
            "worker.claimed_delivery_not_sent",
            worker_id=self.id,
            delivery_id=job.delivery_id,
            webhook_id=job.webhook.id,
            reason=reason,
        )
        self._let_go(job)
        self._claimed_in.pop(job.delivery_id, None)
        try:
            async with self.ctx.db.transaction(urgent=True) as conn:
                await queries.release(conn, owner=self.id, delivery_ids=[job.delivery_id])
        except Exception as exc:
            # Not sent either way; at worst its lease runs out before it is claimed again.
            log.warning("worker.release_failed", worker_id=self.id, error=describe_error(exc))
        self.wake()  # room, and a changed webhook's delivery to claim again
        return False

    async def _webhook_state(self, job: Job, *, read_since: float) -> Any:
        """`job`'s webhook as last read (None: deleted), read again with every webhook in
        hand unless that was at `read_since` or later."""
        async with self._states_lock:
            if self._states_read_at < read_since or job.webhook.id not in self._states:
                ids = {held.webhook.id for held in self._held.values()} | {job.webhook.id}
                read_at = asyncio.get_running_loop().time()
                async with self.ctx.db.read() as conn:
                    states = await queries.webhook_states(conn, ids)
                self._states = {hook: states.get(hook) for hook in ids}
                self._states_read_at = read_at
            return self._states[job.webhook.id]

    async def _deliver(self, job: Job) -> None:
        """Send one delivery and wait until its outcome is written."""
        await self._recorder.record(await self._attempt(job))

    async def _attempt(self, job: Job) -> Finished:
        """Send one delivery and decide what it means; the outcome is not written yet."""
        claimed_in = self._claimed_in.pop(job.delivery_id, None)
        return await self._attempts.attempt(job, claimed_in=claimed_in)


async def start_worker(ctx: DeliveryContext) -> Callable[[], Awaitable[None]]:
    """The in-process worker as an app component: start it, return its `stop`."""
    worker = Worker(ctx)
    await worker.start()
    return worker.stop
