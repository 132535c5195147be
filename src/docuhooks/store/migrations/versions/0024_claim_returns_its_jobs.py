"""a claim's leases and its jobs' rows in one round trip (PostgreSQL)

A PostgreSQL worker's claim was three round trips: the candidates, `docuhooks_claim`
(0019), then the jobs' rows, read by the leased ids in a statement of their own. Planned
from the statistics, that read was planned again on every call (about 0.4 ms), and on
tables without statistics it joined the ids to a scan of the whole `deliveries` table.

- `docuhooks_jobs(ids)` reads what the worker sends for each of those deliveries, as one
  JSON text: `jobs`, an array per delivery in the order they were made (id, attempts,
  webhook id, event id, event type, the payload as text, the site's base URL, traceparent,
  tracestate), and `webhooks`, each webhook's row once (`to_json`, so a column added to
  `webhooks` later needs no new function, and a worker that does not know it ignores it).
  It runs with `docuhooks_claim`'s settings (0022, 0023): sequential scans and JIT off, one
  plan per statement kept for the connection; and in UTC, so its times read back whatever
  the session's time zone (`to_json` writes them with the session's offset, which near the
  ends of the calendar leaves Python's range). The webhooks' part is JSON text within the
  text, which the worker decodes as SQLAlchemy decodes a JSON column.
- The procedure `docuhooks_claim_and_read` calls `docuhooks_claim`, commits, then calls
  `docuhooks_jobs`, and returns the leased ids and the jobs. The commit releases the sites'
  and webhooks' locks before the jobs are read and sent, so no claim waits for another
  worker's payloads to cross the network or for its event loop to read them. If the read
  fails (a timeout or a cancel included), the procedure hands the leases and their
  `flights` rows back itself and returns the error, which the worker reports. A procedure
  that commits cannot have settings of its own, hence the two functions it calls; and it
  can only be called outside a transaction, as the worker claims (`Database.autocommit`):
  inside one (behind PgBouncer in transaction pooling, say) the worker calls the two
  functions one after the other, in that transaction, and the locks last until it
  commits, as they did before this migration.

A claim is two round trips. `docuhooks_claim` stays as it is, for workers of the previous
version still running during a rolling upgrade.

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

_CLAIM_ARGUMENTS = (
    "text, text[], text[], text[], integer[], boolean[], integer, integer, integer, boolean,"
    " timestamptz, timestamptz, interval"
)

_JOBS = """
CREATE FUNCTION docuhooks_jobs(ids text[]) RETURNS text
LANGUAGE plpgsql STABLE
SET enable_seqscan = off
SET jit = off
SET plan_cache_mode = force_generic_plan
SET TimeZone = 'UTC'
AS $$
BEGIN
    RETURN json_build_object(
        'jobs', coalesce(
            (SELECT json_agg(
                    json_build_array(d.id, d.attempts, d.webhook_id, e.id, e.event_type,
                        e.payload::text, s.base_url, e.traceparent, e.tracestate)
                    ORDER BY d.created_at, d.id)
                FROM deliveries d
                JOIN events e ON e.id = d.event_id
                JOIN sites s ON s.id = d.site_id
                WHERE d.id = ANY(ids)),
            '[]'),
        -- As text within the text: the worker decodes it as SQLAlchemy decodes a JSON
        -- column, keeping integers of any size exact.
        'webhooks', coalesce(
            (SELECT json_object_agg(w.id, to_json(w))
                FROM webhooks w
                WHERE w.id IN (SELECT d.webhook_id FROM deliveries d WHERE d.id = ANY(ids))),
            '{}')::text
    )::text;
END
$$
"""

_CLAIM_AND_READ = """
CREATE PROCEDURE docuhooks_claim_and_read(
    claim_owner text, ended_ids text[], site_ids text[],
    hook_ids text[], hook_shares integer[], hook_probes boolean[],
    site_cap integer, destination_cap integer, limit_ceiling integer, stamp_turns boolean,
    claim_at timestamptz, lease_until timestamptz, probe_interval interval,
    INOUT leased text[] DEFAULT NULL, INOUT jobs text DEFAULT NULL
)
LANGUAGE plpgsql AS $$
BEGIN
    leased := ARRAY(
        SELECT docuhooks_claim(
            claim_owner, ended_ids, site_ids, hook_ids, hook_shares, hook_probes,
            site_cap, destination_cap, limit_ceiling, stamp_turns,
            claim_at, lease_until, probe_interval
        )
    );
    -- The leases are kept, and the sites' and webhooks' locks released, before the jobs
    -- are read and sent.
    COMMIT;
    IF cardinality(leased) = 0 THEN
        RETURN;
    END IF;
    BEGIN
        jobs := docuhooks_jobs(leased);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        -- The leases and their `flights` rows go back at once, whether or not the worker
        -- is still there to hear why (a statement timeout or a cancel ends its wait too).
        UPDATE deliveries d SET lease_owner = NULL, lease_expires_at = NULL
            WHERE d.id = ANY(leased) AND d.lease_owner = claim_owner;
        DELETE FROM flights f WHERE f.owner = claim_owner AND f.delivery_id = ANY(leased);
        jobs := json_build_object('error', SQLERRM)::text;
    END;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_JOBS)
    op.execute(_CLAIM_AND_READ)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP PROCEDURE docuhooks_claim_and_read({_CLAIM_ARGUMENTS}, text[], text)")
    op.execute("DROP FUNCTION docuhooks_jobs(text[])")
