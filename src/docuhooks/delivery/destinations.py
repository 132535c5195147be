"""Destination health in the store: what each attempt's outcome does to its site's state of
its destination: circuit breaker, adaptive limit and pause (the rules are
`core.destinations`; each site's state of a destination is a row of its own, keyed by
`state_key`).

The recorder calls :func:`record` with every outcome it writes, in the same transaction. A
destination that has never shown trouble has no row and costs one primary-key read per
batch; a row is written only when something changed. On PostgreSQL the rows are read
`FOR UPDATE` (in key order), so two workers' outcomes for one destination add up instead of
overwriting each other.

A host whose own server answers a site whose breaker of it is open gets its probe turn back
(`probe_turns`), so the other sites whose breakers of it are open may probe it without
waiting for the interval.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.destinations import (
    BreakerPolicy,
    BreakerState,
    DestinationState,
    Signal,
    advance,
    split_state_key,
)
from docuhooks.delivery import operational
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import destinations, probe_turns

__all__ = ["Outcome", "Tracker", "Transition", "load", "record", "unsettled"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt, as far as its site's state of its destination is concerned."""

    #: `core.destinations.state_key`: the site and the destination.
    destination: str
    signal: Signal
    at: datetime
    #: Seconds a 429 or 503 asked for in `Retry-After`, if it did.
    retry_after: float | None = None
    #: The destination's own server answered (`core.destinations.host_answered`): it is up,
    #: whatever the answer said of the site's path.
    answered: bool = False


@dataclass(frozen=True, slots=True)
class Transition:
    destination: str
    before: DestinationState
    after: DestinationState


async def load(
    conn: AsyncConnection, origins: Iterable[str], *, lock: bool = False
) -> dict[str, DestinationState]:
    """The stored state of each destination that has a row."""
    keys = sorted(set(origins))
    if not keys:
        return {}
    statement = sa.select(destinations).where(destinations.c.origin.in_(keys))
    if lock and conn.dialect.name == "postgresql":
        statement = statement.order_by(destinations.c.origin).with_for_update()
    rows = (await conn.execute(statement)).all()
    return {row.origin: _state(row) for row in rows}


class Tracker:
    """What one process knows of which destinations have a stored state that is not at rest,
    so that a batch of plain successes to healthy destinations costs no statement at all.

    Its knowledge is refreshed from the store every `refresh_seconds` (another worker may have
    opened a breaker or lowered a limit meanwhile) and updated by every write of its own; a
    success this process does not fold in for that reason is one a probe or the next refresh
    makes up for (the breaker closes on its probe; the limit grows by the next successes).
    """

    def __init__(self, *, refresh_seconds: float = 1.0) -> None:
        self._refresh_seconds = refresh_seconds
        self._unsettled: set[str] = set()
        self._refreshed_at = float("-inf")

    async def quiet(
        self,
        conn: AsyncConnection,
        policy: BreakerPolicy,
        *,
        clock: float,
        quiet: Callable[[set[str]], bool],
    ) -> bool:
        """Whether `record` would skip a batch that `quiet` (given the destinations not at
        rest) says is quiet, refreshing what this process knows first if it is due."""
        if clock >= self._refreshed_at + self._refresh_seconds:
            self._unsettled = await unsettled(conn, policy.max_concurrency)
            self._refreshed_at = clock
        return quiet(self._unsettled)

    async def record(
        self,
        conn: AsyncConnection,
        outcomes: Sequence[Outcome] | Callable[[], Sequence[Outcome]],
        policy: BreakerPolicy,
        now: datetime,
        *,
        clock: float,
        quiet: Callable[[set[str]], bool] | None = None,
    ) -> int:
        """`record`, skipped when every outcome is a success (or says nothing) to a
        destination at rest. `clock` is a monotonic time for the refresh. Returns the
        operational events' deliveries its breaker transitions queued.

        `outcomes` may be a function that makes them, and `quiet` one that tells, given the
        destinations not at rest, whether the outcomes would all be skipped: the recorder
        then makes no `Outcome` for a batch of plain successes to healthy destinations."""
        if quiet is not None and await self.quiet(conn, policy, clock=clock, quiet=quiet):
            return 0
        if callable(outcomes):
            outcomes = outcomes()
        if all(
            o.signal in (Signal.HEALTHY, Signal.NONE)
            and not o.retry_after
            and o.destination not in self._unsettled
            for o in outcomes
        ):
            return 0
        states, announced = await record(conn, outcomes, policy, now)
        for origin, state in states.items():
            if state.at_rest(policy.max_concurrency):
                self._unsettled.discard(origin)
            else:
                self._unsettled.add(origin)
        return announced


async def unsettled(conn: AsyncConnection, ceiling: int) -> set[str]:
    """The destinations whose stored state is not at rest (a small set: the troubled ones),
    `ceiling` being the adaptive limit's ceiling."""
    rows = await _UNSETTLED.all(conn, {"ceiling": ceiling})
    return {row.origin for row in rows}


async def record(
    conn: AsyncConnection, outcomes: Sequence[Outcome], policy: BreakerPolicy, now: datetime
) -> tuple[dict[str, DestinationState], int]:
    """Fold `outcomes` (in the order they ended) into their destinations' stored state;
    return each such destination's state now, and the deliveries of the operational events
    (`DestinationBreakerOpened`, `DestinationBreakerClosed`) its transitions queued.

    The rows are read locked (PostgreSQL), so of two workers folding outcomes into one
    destination, the second sees the first's state: a transition is made, and announced,
    by one of them only."""
    # An answer that says nothing of the destination's health (a final 1xx) still shows the
    # host is up, which gives its probe turn back.
    meaningful = [o for o in outcomes if o.signal is not Signal.NONE or o.retry_after or o.answered]
    if not meaningful:
        return {}, 0
    stored = await load(conn, (o.destination for o in meaningful), lock=True)
    before = dict(stored)
    current = dict(stored)
    # Hosts that answered a site whose breaker of them is open: they are up (`_release`).
    answering: set[str] = set()
    for outcome in sorted(meaningful, key=lambda o: o.at):
        state = current.get(outcome.destination, DestinationState())
        if outcome.answered and state.state is not BreakerState.CLOSED:
            answering.add(split_state_key(outcome.destination)[1])
        current[outcome.destination] = advance(
            state, outcome.signal, outcome.at, policy, retry_after=outcome.retry_after
        )
    rows = []
    transitions = []
    for origin, state in sorted(current.items()):
        old = before.get(origin)
        if state == (old or DestinationState()):
            continue
        if old is None and state.at_rest(policy.max_concurrency):
            continue
        rows.append(_row(origin, state, now))
        if state.state is not (old or DestinationState()).state:
            transitions.append(Transition(origin, old or DestinationState(), state))
    if rows:
        await _upsert(conn.dialect.name).executemany(conn, rows)
    if answering:
        await _release(conn, answering)
    announced = 0
    for t in transitions:
        site_id, destination = split_state_key(t.destination)
        getattr(log, "warning" if t.after.state is BreakerState.OPEN else "info")(
            f"destination.breaker_{t.after.state.value}",
            site_id=site_id,
            destination=destination,
            failures=t.after.failures,
            next_probe_at=t.after.next_probe_at.isoformat() if t.after.next_probe_at else None,
        )
        # Opened from closed, or closed again; a failed probe (half open → open) is neither.
        opened = t.before.state is BreakerState.CLOSED and t.after.state is BreakerState.OPEN
        if opened or t.after.state is BreakerState.CLOSED:
            announced += await operational.announce_breaker(
                conn,
                site_id,
                destination,
                opened=opened,
                failures=t.after.failures,
                next_probe_at=t.after.next_probe_at,
                opened_at=t.before.since,
                now=t.after.since or now,
            )
    return current, announced


async def _release(conn: AsyncConnection, hosts: set[str]) -> None:
    """Give back the probe turns of `hosts` (`probe_turns`), whose servers answered a probe:
    only a host that fails every probe is held to one probe per interval from the whole
    installation, and the other sites whose breakers of it are open need not wait for its
    turn to try theirs (`delivery.claims`).

    The rows are locked in the order the claim takes them (`docuhooks_claim`: by
    destination, in the database's collation), after the sites' rows this transaction holds:
    a claim skips a site's row that is locked rather than wait for it while holding a turn."""
    chosen = (
        sa.select(probe_turns.c.destination)
        .where(probe_turns.c.destination.in_(sorted(hosts)))
        .order_by(probe_turns.c.destination)
    )
    if conn.dialect.name == "postgresql":
        chosen = chosen.with_for_update()
    await conn.execute(probe_turns.delete().where(probe_turns.c.destination.in_(chosen)))


def _state(row: Any) -> DestinationState:
    return DestinationState(
        state=BreakerState(row.state),
        failures=row.failures,
        since=row.since,
        next_probe_at=row.next_probe_at,
        concurrency=row.concurrency,
        paused_until=row.paused_until,
    )


def _row(origin: str, state: DestinationState, now: datetime) -> dict[str, Any]:
    return {
        "origin": origin,
        "state": state.state.value,
        "failures": state.failures,
        "since": state.since,
        "next_probe_at": state.next_probe_at,
        "concurrency": state.concurrency,
        "paused_until": state.paused_until,
        "updated_at": now,
    }


@functools.cache
def _upsert(dialect: str) -> Prepared:
    insert: Any = (
        postgresql.insert(destinations) if dialect == "postgresql" else sqlite.insert(destinations)
    )
    columns = ("state", "failures", "since", "next_probe_at", "concurrency", "paused_until")
    return Prepared(
        insert.on_conflict_do_update(
            index_elements=[destinations.c.origin],
            set_={name: getattr(insert.excluded, name) for name in (*columns, "updated_at")},
        )
    )


_UNSETTLED = Prepared(
    sa.select(destinations.c.origin).where(
        sa.or_(
            destinations.c.state != BreakerState.CLOSED.value,
            destinations.c.failures > 0,
            destinations.c.concurrency < sa.bindparam("ceiling"),
            destinations.c.paused_until.is_not(None),
        )
    )
)
