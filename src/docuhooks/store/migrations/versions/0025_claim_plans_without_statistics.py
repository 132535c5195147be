"""the claim's candidates and leases keep index plans whatever the statistics say (PostgreSQL)

Three parts of a PostgreSQL claim were planned from the statistics, and the plans they
got could cost a claim milliseconds, or seconds:

- **The candidates** (webhooks with due work, below their limits). On tables not yet
  analyzed (a new installation, or a burst autovacuum has not caught up with), the planner
  took `deliveries` for a small table: it read every due delivery, sorted them and kept one
  per webhook, 3.3 ms a claim at 5,000 due (and 0.4–0.6 s at a million); analyzed, it
  took 57–86 ms at 100,000 to a million pending over 20,000 webhooks, 200 of them busy.
  `docuhooks_candidates` runs the query
  with sorts off as well as `docuhooks_claim`'s settings (sequential scans and JIT off, one
  plan per statement kept for the connection), and asks `ix_deliveries_webhook_due`
  (`webhook_id`, `next_attempt_at`, `id`, pending deliveries only) twice per webhook with
  pending deliveries, and never about the others: a loose scan finds those webhooks one
  index step each (the first pending delivery after the previous webhook's), and a probe,
  fenced off with `OFFSET 0` so that the planner cannot turn it into a join, asks each for a
  due delivery no worker holds. Both ask for rows in that index's order, which with sorts
  off no other index can give: so that index is their plan whatever the statistics say.
  Without the order, the fenced probe's kept plan followed the statistics: with two
  webhooks holding every delivery beside 300 idle ones, it walked every due delivery in
  time order (`ix_deliveries_due`) for each idle webhook, expecting one of its own every
  other row (0.56 s a claim); declaring more webhooks to the planner (`n_distinct`) only
  moved the failure to other table sizes and indexes. (The sorts the query needs, for its
  round and its order, are made all the same: with sorts off the planner only avoids one
  where a plan without it exists.)
- **The counts of calls in flight**, in the candidates and in `docuhooks_claim`. Each
  stated the expiry as an index condition, which the other `flights` indexes also carry
  (second). A plan made while `flights` was empty (vacuumed to no pages, as when idle), kept
  for the connection, counted a webhook's calls by scanning the destinations' index whole:
  0.14–0.59 s a claim once a burst filled the table, until it was analyzed. The expiry is
  now a filter (`IS TRUE`), and each count can only read its own index.
- **The lease** in `docuhooks_claim` (0019). Its `UPDATE` joined the chosen deliveries to
  `deliveries` by id; once analyzed at about 10,000 rows, the kept plan was a merge join
  that read the whole primary key (4,800 entries for a share of 64: 4.8 ms instead of 2.3).
  It now updates `WHERE id = ANY(ARRAY(…chosen…))`, a lookup per id whatever the plan.
  `CREATE OR REPLACE` resets a function's settings, so they are stated with it.

The worker calls `docuhooks_candidates` where it sent the candidates' query; SQLite keeps
that query (`delivery.claim_statements.candidates_statement`), and tests run both stores'
claims on the same cases. A worker of the previous version, still running during a rolling
upgrade, sends its query and calls the replaced `docuhooks_claim`, whose arguments and
results are unchanged.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 21:00:00.000000
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The settings of every function on the worker's hot path (migrations 0022 and 0023).
SETTINGS = """
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
"""

#: `docuhooks_candidates`' settings: the probe's order keeps it on the webhook's index.
CANDIDATES_SETTINGS = SETTINGS + "SET enable_sort = off\nSET enable_incremental_sort = off\n"

CANDIDATES_SIGNATURE = (
    "docuhooks_candidates(timestamptz, integer, integer, integer, integer, text, text[])"
)

CANDIDATES = f"""
CREATE FUNCTION docuhooks_candidates(
    claim_at timestamptz, max_webhooks integer, site_cap integer, destination_cap integer,
    limit_ceiling integer, claim_owner text, ended_ids text[]
) RETURNS TABLE (
    id text, site_id text, destination text, max_concurrency integer,
    claimed_at timestamptz, in_flight bigint, at_destination bigint, at_site bigint,
    state text, concurrency integer
)
LANGUAGE plpgsql STABLE
{CANDIDATES_SETTINGS}AS $$
BEGIN
    RETURN QUERY
    WITH RECURSIVE pending AS (
        -- The webhooks with a pending delivery, in id order: one step along
        -- `ix_deliveries_webhook_due` each, however many deliveries they have, and
        -- nothing for the webhooks with none. Ordered as that index is, which with sorts
        -- off no other index can give (`ix_deliveries_webhook_created` would step over
        -- settled deliveries).
        (SELECT p.webhook_id FROM deliveries p WHERE p.status = 'pending'
            ORDER BY p.webhook_id, p.next_attempt_at, p.id LIMIT 1)
        UNION ALL
        SELECT (SELECT p.webhook_id FROM deliveries p
                WHERE p.status = 'pending' AND p.webhook_id > pending.webhook_id
                ORDER BY p.webhook_id, p.next_attempt_at, p.id LIMIT 1)
        FROM pending WHERE pending.webhook_id IS NOT NULL
    ), busy AS MATERIALIZED (
        -- Those active, with a due delivery no worker holds: one descent of the webhook's
        -- partial index each. OFFSET 0 keeps each probe and lookup a probe, and the
        -- probe's order, with sorts off, keeps it on that index.
        SELECT w.id, w.site_id, w.destination, w.max_concurrency, w.claimed_at
        FROM pending, LATERAL (
            SELECT w.* FROM webhooks w
            WHERE w.id = pending.webhook_id AND w.active AND w.suspended_at IS NULL
            OFFSET 0) w
        WHERE EXISTS (
            SELECT 1 FROM deliveries due
            WHERE due.webhook_id = w.id AND due.status = 'pending'
                AND due.next_attempt_at <= claim_at
                AND (due.lease_expires_at IS NULL OR due.lease_expires_at < claim_at)
            ORDER BY due.webhook_id, due.next_attempt_at, due.id
            OFFSET 0)
    ), counted AS (
        -- Calls in flight across all workers, but those of `claim_owner` that have ended
        -- (`ended_ids`), whose rows the claim deletes. Each count reads its own index:
        -- the expiry, a filter (`IS TRUE`), is no index condition that another index
        -- could be scanned whole for.
        SELECT b.*, d.origin, d.state, d.concurrency, d.paused_until, d.next_probe_at,
            (SELECT count(*) FROM flights f
                WHERE f.webhook_id = b.id AND (f.expires_at >= claim_at) IS TRUE
                    AND NOT (f.owner = claim_owner AND f.delivery_id = ANY(ended_ids))
            ) AS in_flight,
            (SELECT count(*) FROM flights f
                WHERE f.destination = b.destination AND (f.expires_at >= claim_at) IS TRUE
                    AND NOT (f.owner = claim_owner AND f.delivery_id = ANY(ended_ids))
            ) AS at_destination,
            (SELECT count(*) FROM flights f
                WHERE f.site_id = b.site_id AND (f.expires_at >= claim_at) IS TRUE
                    AND NOT (f.owner = claim_owner AND f.delivery_id = ANY(ended_ids))
            ) AS at_site
        FROM busy b LEFT JOIN LATERAL (
            SELECT * FROM destinations d WHERE d.origin = b.destination OFFSET 0) d ON true
        OFFSET 0
    ), eligible AS (
        SELECT c.*,
            -- Its place in its site's round: the site's longest unserved webhook is 1.
            row_number() OVER (
                PARTITION BY c.site_id ORDER BY c.claimed_at NULLS FIRST, c.id) AS turn
        FROM counted c
        WHERE c.in_flight < c.max_concurrency
            AND c.at_site < site_cap
            -- Not paused by a Retry-After, and its breaker closed or due a probe.
            AND (c.origin IS NULL OR (
                (c.paused_until IS NULL OR c.paused_until <= claim_at)
                AND (c.state = 'closed' OR c.next_probe_at <= claim_at)))
            -- Room at its destination (a probe is one call whatever the limit).
            AND (c.state <> 'closed'
                OR c.at_destination < destination_cap
                    AND (c.concurrency IS NULL OR c.concurrency >= limit_ceiling
                        OR c.at_destination < c.concurrency))
    )
    SELECT e.id::text, e.site_id::text, e.destination::text, e.max_concurrency,
        e.claimed_at, e.in_flight, e.at_destination, e.at_site, e.state::text,
        e.concurrency
    FROM eligible e
    ORDER BY e.turn, e.claimed_at NULLS FIRST, e.id
    LIMIT max_webhooks;
END
$$
"""

CLAIM_SIGNATURE = (
    "docuhooks_claim(text, text[], text[], text[], integer[], boolean[], integer, integer,"
    " integer, boolean, timestamptz, timestamptz, interval)"
)
_JOINED = "                FROM chosen WHERE d.id = chosen.id\n"
_BY_ID = "                WHERE d.id = ANY(ARRAY(SELECT chosen.id FROM chosen))\n"


def _claim_of_0019() -> str:
    """`docuhooks_claim` as migration 0019 wrote it."""
    path = Path(__file__).with_name("0019_claim_in_one_call.py")
    spec = importlib.util.spec_from_file_location("migration_0019", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: str = module._FUNCTION
    assert function.count(_JOINED) == 1
    return function


_COUNTED_LIVE = "AND f.expires_at >= claim_at;"
_COUNTED_LIVE_BY_ITS_INDEX = "AND (f.expires_at >= claim_at) IS TRUE;"


def claim_function() -> str:
    """`docuhooks_claim` with its lease by id, its counts each on its own index, and its
    settings stated."""
    function = _claim_of_0019()
    assert function.count(_COUNTED_LIVE) == 5
    return (
        function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        .replace(_JOINED, _BY_ID)
        .replace(_COUNTED_LIVE, _COUNTED_LIVE_BY_ITS_INDEX)
        .replace("LANGUAGE plpgsql VOLATILE AS $$", f"LANGUAGE plpgsql VOLATILE{SETTINGS}AS $$")
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(CANDIDATES)
    op.execute(claim_function())


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        _claim_of_0019()
        .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        .replace("LANGUAGE plpgsql VOLATILE AS $$", f"LANGUAGE plpgsql VOLATILE{SETTINGS}AS $$")
    )
    op.execute(f"DROP FUNCTION {CANDIDATES_SIGNATURE}")
