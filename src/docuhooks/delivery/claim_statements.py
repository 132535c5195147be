"""The statements of a claim (`delivery.claims`), built once: the candidates, a webhook's
share leased, the turns marked; and on PostgreSQL the calls of the functions that do the same
on the server (migrations 0019 and 0024)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from docuhooks.core.destinations import BreakerState
from docuhooks.delivery import queries
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import (
    deliveries,
    destinations,
    flights,
    probe_turns,
    state_key_of_webhook,
    webhooks,
)

__all__ = [
    "CANDIDATES",
    "CANDIDATES_ON_POSTGRESQL",
    "CLAIM",
    "CLAIM_AND_READ",
    "READ_JOBS",
    "SERVED",
    "candidates_statement",
    "lease_by_webhook",
]


def _in_flight(live: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    return (
        sa.select(sa.func.count())
        .select_from(flights)
        .where(flights.c.webhook_id == webhooks.c.id, live)
        .scalar_subquery()
    )


def _counted(where: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    return sa.select(sa.func.count()).select_from(flights).where(where).scalar_subquery()


def candidates_statement(*, not_ended: bool = False) -> sa.Select[Any]:
    """The candidates, with the calls in flight each counts; `not_ended` (PostgreSQL) leaves
    out of the counts the calls "ended" of the worker "owner", whose rows the claim deletes
    later."""
    now: sa.BindParameter[datetime] = sa.bindparam("now")
    live = flights.c.expires_at >= now
    if not_ended:
        ended = sa.and_(
            flights.c.owner == sa.bindparam("owner"),
            flights.c.delivery_id == sa.func.any(_array("ended")),
        )
        live = sa.and_(live, sa.not_(ended))
    in_flight = _in_flight(live)
    at_destination = _counted(sa.and_(flights.c.destination == webhooks.c.destination, live))
    at_site = _counted(sa.and_(flights.c.site_id == webhooks.c.site_id, live))
    # The adaptive limit is the site's own (`core.destinations`): it bounds the site's calls
    # to the destination, counted only where there is one.
    limited = sa.and_(
        destinations.c.concurrency.is_not(None),
        destinations.c.concurrency < sa.bindparam("ceiling"),
    )
    at_site_destination = sa.case(
        (
            limited,
            _counted(
                sa.and_(
                    flights.c.destination == webhooks.c.destination,
                    flights.c.site_id == webhooks.c.site_id,
                    live,
                )
            ),
        ),
        else_=0,
    )
    # A destination at its cap has no room for any of its webhooks, a site at its adaptive
    # limit there none for its own, nor a site at its cap for any of its own: they are not
    # candidates, or many webhooks on one throttled host (or of one busy site) would fill
    # every claim's list and leave other webhooks waiting. (A probe is one call whatever
    # the limit.)
    room_at_destination = sa.or_(
        destinations.c.state != BreakerState.CLOSED.value,
        sa.and_(
            at_destination < sa.bindparam("destination_cap"),
            sa.or_(sa.not_(limited), at_site_destination < destinations.c.concurrency),
        ),
    )
    # An EXISTS, not a scalar subquery with `LIMIT 1`: given statistics that promise a
    # webhook thousands of due deliveries (a few webhooks, one with a backlog), PostgreSQL
    # planned such a probe as a scan of the table, or of `ix_deliveries_due`, for the first
    # match it expected a few rows away, and stepped over a neighbour's whole backlog in
    # every claim. As a semi-join it probes each webhook's partial index. (On tables without
    # statistics that it takes for small, it may instead read their due deliveries grouped
    # by webhook: a few milliseconds, until autovacuum analyzes them.)
    has_due = sa.exists().where(
        deliveries.c.webhook_id == webhooks.c.id,
        queries.is_pending(),
        deliveries.c.next_attempt_at <= now,
        queries.unleased(now),
    )
    # A site's breaker due a probe waits while another site has the host's turn.
    host_turn_taken = sa.exists().where(
        probe_turns.c.destination == webhooks.c.destination, probe_turns.c.next_at > now
    )
    open_to_calls = sa.or_(
        destinations.c.origin.is_(None),
        sa.and_(
            sa.or_(destinations.c.paused_until.is_(None), destinations.c.paused_until <= now),
            sa.or_(
                destinations.c.state == BreakerState.CLOSED.value,
                sa.and_(destinations.c.next_probe_at <= now, sa.not_(host_turn_taken)),
            ),
        ),
    )
    served = (webhooks.c.claimed_at.nulls_first(), webhooks.c.id)
    eligible = (
        sa.select(
            webhooks.c.id,
            webhooks.c.site_id,
            webhooks.c.destination,
            webhooks.c.max_concurrency,
            webhooks.c.claimed_at,
            in_flight.label("in_flight"),
            at_destination.label("at_destination"),
            at_site.label("at_site"),
            at_site_destination.label("at_site_destination"),
            destinations.c.state,
            destinations.c.concurrency,
            # Its place in its site's round: the site's longest unserved webhook is 1.
            sa.func.row_number()
            .over(partition_by=webhooks.c.site_id, order_by=served)
            .label("turn"),
        )
        .select_from(
            webhooks.outerjoin(destinations, destinations.c.origin == state_key_of_webhook())
        )
        .where(
            webhooks.c.active.is_(True),
            webhooks.c.suspended_at.is_(None),
            open_to_calls,
            room_at_destination,
            at_site < sa.bindparam("site_cap"),
            has_due,
            in_flight < webhooks.c.max_concurrency,
        )
        .subquery("eligible")
    )
    return (
        sa.select(eligible)
        .order_by(eligible.c.turn, eligible.c.claimed_at.nulls_first(), eligible.c.id)
        .limit(sa.bindparam("webhooks"))
    )


def _array(name: str) -> sa.BindParameter[Any]:
    """A list passed as one PostgreSQL array."""
    return sa.bindparam(name, type_=postgresql.ARRAY(sa.String))


def _claim_arguments() -> list[Any]:
    """`docuhooks_claim`'s arguments (migration 0019), as bound parameters."""

    def array(name: str, of: Any) -> sa.BindParameter[Any]:
        return sa.bindparam(name, type_=postgresql.ARRAY(of))

    return [
        sa.bindparam("owner", type_=flights.c.owner.type),
        array("ended", sa.String),
        array("sites", sa.String),
        array("hooks", sa.String),
        array("shares", sa.Integer),
        array("probes", sa.Boolean),
        sa.bindparam("site_cap", type_=sa.Integer),
        sa.bindparam("destination_cap", type_=sa.Integer),
        sa.bindparam("ceiling", type_=sa.Integer),
        sa.bindparam("stamp_turns", type_=sa.Boolean),
        sa.bindparam("now", type_=flights.c.expires_at.type),
        sa.bindparam("until", type_=flights.c.expires_at.type),
        sa.bindparam("probe_interval", type_=sa.Interval),
    ]


def _claim_statement() -> sa.Select[Any]:
    """PostgreSQL, in a transaction: one call of `docuhooks_claim` (migration 0019), a row
    per leased delivery's id."""
    return sa.select(sa.func.docuhooks_claim(*_claim_arguments()).label("id"))


def _claim_and_read_statement() -> sa.TextualSelect:
    """PostgreSQL, outside a transaction: `CALL docuhooks_claim_and_read` (migration 0024),
    which leases through `docuhooks_claim`, commits, and reads the jobs
    (`docuhooks_jobs`): one row of the leased ids and the jobs' JSON."""
    arguments = _claim_arguments()
    placeholders = ", ".join(f":{argument.key}" for argument in arguments)
    return (
        sa.text(f"CALL docuhooks_claim_and_read({placeholders}, NULL, NULL)")
        .bindparams(*arguments)
        .columns(sa.column("leased", postgresql.ARRAY(sa.String)), sa.column("jobs", sa.Text))
    )


def _due_of_webhook() -> sa.Select[Any]:
    """A webhook's ("hook") oldest "n" due deliveries a claim may take (in order, for an
    ordered webhook), through the partial index."""
    now: sa.BindParameter[datetime] = sa.bindparam("now")
    return (
        sa.select(deliveries.c.id)
        .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
        .where(
            deliveries.c.webhook_id == sa.bindparam("hook"),
            queries.is_pending(),
            deliveries.c.next_attempt_at <= now,
            queries.unleased(now),
            queries.first_in_order(),
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(sa.bindparam("n"))
    )


@functools.cache
def lease_by_webhook(dialect: str) -> Prepared:
    return Prepared(queries.lease_statement(dialect, _due_of_webhook()))


CANDIDATES = Prepared(candidates_statement())
CANDIDATES_ON_POSTGRESQL = Prepared(candidates_statement(not_ended=True))
CLAIM = Prepared(_claim_statement())
CLAIM_AND_READ = Prepared(_claim_and_read_statement())
#: `docuhooks_jobs` (migration 0024): the leased deliveries' jobs as one JSON text.
READ_JOBS = Prepared(
    sa.select(sa.func.docuhooks_jobs(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String))))
)
SERVED = queries.ByIds(
    lambda ids_in: (
        webhooks.update().where(ids_in(webhooks.c.id)).values(claimed_at=sa.bindparam("now"))
    )
)
