"""claim: the sites' and webhooks' locks, the ended calls forgotten and the counts, one trip

On PostgreSQL a worker's claim locks the sites of its candidate webhooks, then counts the
calls in flight again (`delivery.claims._locked`). The count has to see what a claim that
held the lock before committed, so it cannot be part of the locking statement (a statement
sees what was committed when it began): it was a statement of its own, a round trip more on
every claim. `docuhooks_lock_and_count` does both in one call: in a volatile function each
statement takes a new snapshot under READ COMMITTED, so the count after the lock sees every
claim committed before the lock was granted, as the second statement did.

After the sites it locks the candidate webhooks' rows, then deletes the `flights` rows of
`ended_ids`, calls of the worker `ended_owner` that have ended though their outcomes are not
yet written (that too was a statement of its own): a webhook's row before a call's `flights`
row, the order in which the recorder takes them, so a claim and a recorder never each wait
for the other.

It returns rows of (kind, key, n): for each webhook in `webhook_ids` its room under
`maxConcurrency` ('webhook'), and the calls in flight to each of `destination_keys`
('destination') and for each of `site_ids` ('site'); a call is in flight while its
`flights` row's lease (`expires_at`) has not ended at `in_flight_at`. SQLite has no such
function: a claim there is the only writer.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 04:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = """
CREATE FUNCTION docuhooks_lock_and_count(
    ended_owner text, ended_ids text[],
    site_ids text[], webhook_ids text[], destination_keys text[], in_flight_at timestamptz
) RETURNS TABLE (kind text, key text, n bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- In id order, so two claims never deadlock; the lock a producer's insert takes
    -- (KEY SHARE) is not blocked by it.
    PERFORM 1 FROM sites WHERE sites.id = ANY(site_ids) ORDER BY sites.id FOR NO KEY UPDATE;
    -- The candidate webhooks' rows before any `flights` row, the order the recorder takes
    -- them in (a delivery's row, its webhook's, then its call's `flights` row).
    PERFORM 1 FROM webhooks WHERE webhooks.id = ANY(webhook_ids)
        ORDER BY webhooks.id FOR NO KEY UPDATE;
    IF cardinality(ended_ids) > 0 THEN
        DELETE FROM flights f WHERE f.owner = ended_owner AND f.delivery_id = ANY(ended_ids);
    END IF;
    RETURN QUERY
        SELECT 'webhook'::text, w.id::text, (w.max_concurrency - (
            SELECT count(*) FROM flights f
            WHERE f.webhook_id = w.id AND f.expires_at >= in_flight_at
        ))::bigint
        FROM webhooks w WHERE w.id = ANY(webhook_ids)
        UNION ALL
        SELECT 'destination'::text, f.destination::text, count(*)::bigint
        FROM flights f WHERE f.destination = ANY(destination_keys) AND f.expires_at >= in_flight_at
        GROUP BY f.destination
        UNION ALL
        SELECT 'site'::text, f.site_id::text, count(*)::bigint
        FROM flights f WHERE f.site_id = ANY(site_ids) AND f.expires_at >= in_flight_at
        GROUP BY f.site_id;
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
    op.execute(
        "DROP FUNCTION docuhooks_lock_and_count(text, text[], text[], text[], text[], timestamptz)"
    )
