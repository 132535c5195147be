"""claim: locks, counts, probe turns and leases in one call, run outside a transaction

A PostgreSQL worker's claim was five round trips, its candidates' sites locked across
three of them: `BEGIN`, the candidates, `docuhooks_lock_and_count` (0018), the leases,
`COMMIT`. Under load each round trip is also a turn of the worker's event loop, and the
claim was most of an event's latency. `docuhooks_claim` does everything after the
candidates in one call, which the worker runs with no transaction around it: the claim is
then three round trips (the candidates, this call, the jobs' rows), one when nothing is
due, and the sites stay locked only while the call runs on the server.

The worker decides the shares from the candidates' statement, read without locks
(`delivery.claims._shares`, the same code as on SQLite); the function then holds each share
to the room it finds under the locks, so the caps hold across workers whatever those counts
missed:

1. it locks the sites of `hook_ids` (`site_ids`, in id order), then the webhooks' rows (in
   id order): as 0018 did, and in the order the recorder takes a webhook's row before a
   call's `flights` row;
2. deletes the `flights` rows of `ended_ids`, calls of `claim_owner` that have ended though
   their outcomes are not written yet;
3. stamps the turn (`claimed_at`) of `served_ids`;
4. for each webhook of `hook_ids` in order: counts its calls in flight, its destination's
   and its site's, each in a statement of its own (in a volatile function each statement
   takes a new snapshot under READ COMMITTED, so a count sees every claim committed before
   the locks were granted, and the leases this call has made for the webhooks before it);
   its share is at most `hook_shares[i]` and the room left under its `maxConcurrency`,
   under `hook_destination_limits[i]` and under `site_cap`. A webhook of `hook_probes` is
   its destination's probe instead: one delivery, if the conditional update of the
   destination's row gives this call the interval's turn;
5. leases the share from the webhook's oldest due deliveries (`FOR UPDATE SKIP LOCKED`,
   through the partial index, an ordered webhook's in order) and writes their `flights`
   rows, replacing a dead worker's.

It returns the leased deliveries' ids. The rule for what a claim may take is the one
`delivery.queries.first_in_order` and `delivery.claims._due_of_webhook` state for SQLite;
tests run the claim on both stores. 0018's function is no longer called and goes.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SIGNATURE = (
    "docuhooks_claim(text, text[], text[], text[], integer[], integer[], boolean[], integer,"
    " text[], timestamptz, timestamptz, interval)"
)

_FUNCTION = """
CREATE FUNCTION docuhooks_claim(
    claim_owner text, ended_ids text[], site_ids text[],
    hook_ids text[], hook_shares integer[], hook_destination_limits integer[],
    hook_probes boolean[], site_cap integer, served_ids text[],
    claim_at timestamptz, lease_until timestamptz, probe_interval interval
) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    hook record;
    share integer;
    in_flight bigint;
BEGIN
    -- In id order, so two claims never deadlock; the lock a producer's insert takes
    -- (KEY SHARE) is not blocked by it.
    PERFORM 1 FROM sites WHERE sites.id = ANY(site_ids) ORDER BY sites.id FOR NO KEY UPDATE;
    -- The webhooks' rows before any `flights` row, the order the recorder takes them in
    -- (a delivery's row, its webhook's, then its call's `flights` row).
    PERFORM 1 FROM webhooks WHERE webhooks.id = ANY(hook_ids)
        ORDER BY webhooks.id FOR NO KEY UPDATE;
    IF cardinality(ended_ids) > 0 THEN
        DELETE FROM flights f WHERE f.owner = claim_owner AND f.delivery_id = ANY(ended_ids);
    END IF;
    IF cardinality(served_ids) > 0 THEN
        UPDATE webhooks SET claimed_at = claim_at WHERE webhooks.id = ANY(served_ids);
    END IF;
    FOR i IN 1 .. coalesce(cardinality(hook_ids), 0) LOOP
        SELECT w.id, w.site_id, w.destination, w.max_concurrency INTO hook
            FROM webhooks w WHERE w.id = hook_ids[i];
        CONTINUE WHEN NOT FOUND;  -- deleted since the candidates were read
        IF hook_probes[i] THEN
            UPDATE destinations d
                SET state = 'half_open', next_probe_at = claim_at + probe_interval,
                    updated_at = claim_at
                WHERE d.origin = hook.destination AND d.state <> 'closed'
                    AND d.next_probe_at <= claim_at;
            CONTINUE WHEN NOT FOUND;  -- another claim has this interval's probe
            share := 1;
        ELSE
            share := hook_shares[i];
            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.webhook_id = hook.id AND f.expires_at >= claim_at;
            share := least(share, hook.max_concurrency - in_flight);
            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.destination = hook.destination AND f.expires_at >= claim_at;
            share := least(share, hook_destination_limits[i] - in_flight);
            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.site_id = hook.site_id AND f.expires_at >= claim_at;
            share := least(share, site_cap - in_flight);
        END IF;
        CONTINUE WHEN share <= 0;
        RETURN QUERY
            WITH chosen AS (
                SELECT d.id FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
                WHERE d.webhook_id = hook.id AND d.status = 'pending'
                    AND d.next_attempt_at <= claim_at
                    AND (d.lease_expires_at IS NULL OR d.lease_expires_at < claim_at)
                    AND (w.ordered_delivery IS false OR d.ordering_key IS NULL
                        OR NOT EXISTS (
                            SELECT 1 FROM deliveries earlier
                            WHERE earlier.webhook_id = d.webhook_id
                                AND earlier.ordering_key = d.ordering_key
                                AND earlier.status = 'pending'
                                AND (earlier.ordering_seq < d.ordering_seq
                                    OR earlier.ordering_seq = d.ordering_seq
                                    AND (earlier.created_at, earlier.id)
                                        < (d.created_at, d.id))))
                ORDER BY d.next_attempt_at, d.id
                LIMIT share
                FOR UPDATE OF d SKIP LOCKED
            ), leased AS (
                UPDATE deliveries d SET lease_owner = claim_owner, lease_expires_at = lease_until
                FROM chosen WHERE d.id = chosen.id
                RETURNING d.id, d.webhook_id, d.site_id
            ), flown AS (
                INSERT INTO flights
                    (delivery_id, webhook_id, site_id, destination, owner, expires_at)
                SELECT leased.id, leased.webhook_id, leased.site_id, hook.destination,
                    claim_owner, lease_until
                FROM leased
                ON CONFLICT (delivery_id) DO UPDATE SET
                    owner = excluded.owner, expires_at = excluded.expires_at,
                    webhook_id = excluded.webhook_id, site_id = excluded.site_id,
                    destination = excluded.destination
            )
            SELECT leased.id::text FROM leased;
    END LOOP;
END
$$
"""

#: 0018's function, as it made it: the downgrade puts it back.
_LOCK_AND_COUNT = """
CREATE FUNCTION docuhooks_lock_and_count(
    ended_owner text, ended_ids text[],
    site_ids text[], webhook_ids text[], destination_keys text[], in_flight_at timestamptz
) RETURNS TABLE (kind text, key text, n bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM 1 FROM sites WHERE sites.id = ANY(site_ids) ORDER BY sites.id FOR NO KEY UPDATE;
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
    op.execute(
        "DROP FUNCTION docuhooks_lock_and_count(text, text[], text[], text[], text[], timestamptz)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_LOCK_AND_COUNT)
    op.execute(f"DROP FUNCTION {_SIGNATURE}")
