"""a claim's leases and its jobs' rows in one call (PostgreSQL)

A PostgreSQL worker's claim was three round trips: the candidates, `docuhooks_claim`
(0019), then the jobs' rows, read by the leased ids in a statement of their own. Planned
from the statistics, that read was planned again on every call (about 0.4 ms), and on
tables without statistics it joined the ids to a scan of the whole `deliveries` table.

`docuhooks_claim_jobs` takes `docuhooks_claim`'s arguments, calls it, and returns what the
worker sends for each delivery it leased, in the order they were made: the delivery's id
and attempts, its event (id, type, payload as text), its site's base URL, the trace context,
and its webhook's row as JSON (`to_json`, so a column added to `webhooks` later needs no
new function, and a worker that does not know the column ignores it). The read is a
statement of its own after the leases, so it sees every row they took. It runs with
`docuhooks_claim`'s settings (0022, 0023): sequential scans and JIT off, and one plan per
statement kept for the connection. A claim is now two round trips.

`docuhooks_claim` stays as it is, for workers of the previous version still running during
a rolling upgrade.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 18:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURE = (
    "docuhooks_claim_jobs(text, text[], text[], text[], integer[], boolean[], integer,"
    " integer, integer, boolean, timestamptz, timestamptz, interval)"
)

_FUNCTION = """
CREATE FUNCTION docuhooks_claim_jobs(
    claim_owner text, ended_ids text[], site_ids text[],
    hook_ids text[], hook_shares integer[], hook_probes boolean[],
    site_cap integer, destination_cap integer, limit_ceiling integer, stamp_turns boolean,
    claim_at timestamptz, lease_until timestamptz, probe_interval interval
) RETURNS TABLE (
    id varchar, attempts integer, webhook_id varchar, event_id varchar, event_type varchar,
    payload_text text, base_url varchar, traceparent varchar, tracestate varchar,
    webhook json
)
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    leased text[];
BEGIN
    leased := ARRAY(
        SELECT docuhooks_claim(
            claim_owner, ended_ids, site_ids, hook_ids, hook_shares, hook_probes,
            site_cap, destination_cap, limit_ceiling, stamp_turns,
            claim_at, lease_until, probe_interval
        )
    );
    IF cardinality(leased) = 0 THEN
        RETURN;
    END IF;
    -- A statement of its own, after the leases: its snapshot sees every row they took.
    RETURN QUERY
        SELECT d.id, d.attempts, d.webhook_id, e.id, e.event_type, e.payload::text,
            s.base_url, e.traceparent, e.tracestate, to_json(w)
        FROM deliveries d
        JOIN events e ON e.id = d.event_id
        JOIN sites s ON s.id = d.site_id
        JOIN webhooks w ON w.id = d.webhook_id
        WHERE d.id = ANY(leased)
        ORDER BY d.created_at, d.id;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
