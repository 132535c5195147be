"""claim: locks, counts, probe turns and leases in one call, run outside a transaction

A PostgreSQL worker's claim was five round trips, its candidates' sites locked across
three of them: `BEGIN`, the candidates, `docuhooks_lock_and_count` (0018), the leases,
`COMMIT`. Under load each round trip is also a turn of the worker's event loop, and the
claim was most of an event's latency. `docuhooks_claim` does everything after the
candidates in one call, which the worker runs with no transaction around it: the claim is
then three round trips (the candidates, this call, the jobs' rows), one when nothing is
due, and the sites stay locked only while the call runs on the server.

The worker decides the shares from the candidates' statement, read without locks
(`delivery.claims._shares`, the same code as on SQLite); the function holds each share to
what it finds under the locks, so the caps hold across workers whatever those counts
missed:

1. it refuses to run under any isolation but READ COMMITTED: in a volatile function each
   statement then takes a new snapshot, so a count below sees every claim committed
   before the locks were granted (and this call's own leases before it);
2. it locks the sites of `hook_ids` (`site_ids`, in id order), then the webhooks' rows (in
   id order): in the order the recorder takes a webhook's row before a call's `flights`
   row; and deletes the `flights` rows of `ended_ids`, calls of `claim_owner` that have
   ended though their outcomes are not written yet;
3. takes the probe turns of the webhooks of `hook_probes` (each its destination's probe),
   in the destinations' order, each only if its webhook and its site have room: a
   conditional update of the destination's row gives the interval's one probe;
4. for each webhook of `hook_ids` in order, as it is now (one deleted, deactivated or
   suspended since, or whose destination's breaker opened or was paused since, takes
   nothing): a probe whose turn was won takes one delivery; any other takes at most
   `hook_shares[i]`, the room left under its `maxConcurrency`, under its destination's
   limit (`destination_cap`, or the adaptive limit when it is lower and below
   `limit_ceiling`) and under `site_cap`, each counted in a statement of its own;
5. leases the share from the webhook's oldest due deliveries (`FOR UPDATE SKIP LOCKED`,
   through the partial index, an ordered webhook's in order) and writes their `flights`
   rows, replacing a dead worker's;
6. with `stamp_turns`, marks the turn (`claimed_at`) of every webhook given a share; one
   left without room keeps its place.

It returns the leased deliveries' ids. The rule for what a claim may take is the one
`delivery.queries.first_in_order` and `delivery.claim_statements._due_of_webhook` state for SQLite;
tests run the claim on both stores. 0018's function stays, unused, for workers of the
previous version still running during a rolling upgrade; a later migration drops it.

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
    "docuhooks_claim(text, text[], text[], text[], integer[], boolean[], integer, integer,"
    " integer, boolean, timestamptz, timestamptz, interval)"
)

_FUNCTION = """
CREATE FUNCTION docuhooks_claim(
    claim_owner text, ended_ids text[], site_ids text[],
    hook_ids text[], hook_shares integer[], hook_probes boolean[],
    site_cap integer, destination_cap integer, limit_ceiling integer, stamp_turns boolean,
    claim_at timestamptz, lease_until timestamptz, probe_interval interval
) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    probe record;
    hook record;
    share integer;
    in_flight bigint;
    destination_limit integer;
    probes_won text[] := '{}';
    served text[] := '{}';
BEGIN
    -- Each count below must see the claims committed while this call waited for its locks.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'docuhooks_claim needs READ COMMITTED, not %',
            current_setting('transaction_isolation')
            USING HINT = 'reset default_transaction_isolation for the docuhooks database role';
    END IF;
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
    -- Probe turns first, in the destinations' order (two claims never take two turns in
    -- opposite orders), each only where its webhook and its site have room.
    FOR probe IN
        SELECT w.id, w.site_id, w.destination, w.max_concurrency
        FROM unnest(hook_ids, hook_probes) AS h(id, probe)
        JOIN webhooks w ON w.id = h.id
        WHERE h.probe AND w.active AND w.suspended_at IS NULL
        ORDER BY w.destination, w.id
    LOOP
        SELECT count(*) INTO in_flight FROM flights f
            WHERE f.webhook_id = probe.id AND f.expires_at >= claim_at;
        CONTINUE WHEN in_flight >= probe.max_concurrency;
        SELECT count(*) INTO in_flight FROM flights f
            WHERE f.site_id = probe.site_id AND f.expires_at >= claim_at;
        CONTINUE WHEN in_flight >= site_cap;
        UPDATE destinations d
            SET state = 'half_open', next_probe_at = claim_at + probe_interval,
                updated_at = claim_at
            WHERE d.origin = probe.destination AND d.state <> 'closed'
                AND d.next_probe_at <= claim_at;
        IF FOUND THEN
            probes_won := probes_won || probe.id::text;
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(cardinality(hook_ids), 0) LOOP
        -- As the webhook and its destination are now: deleted, deactivated or suspended
        -- since the candidates were read, it takes nothing.
        SELECT w.id, w.site_id, w.destination, w.max_concurrency,
                d.state, d.paused_until, d.concurrency
            INTO hook
            FROM webhooks w LEFT JOIN destinations d ON d.origin = w.destination
            WHERE w.id = hook_ids[i] AND w.active AND w.suspended_at IS NULL;
        CONTINUE WHEN NOT FOUND;
        IF hook_probes[i] THEN
            CONTINUE WHEN NOT hook.id::text = ANY(probes_won);
            share := 1;
        ELSE
            -- Its breaker opened, or a Retry-After paused it, since the candidates were read.
            CONTINUE WHEN hook.state IS NOT NULL AND hook.state <> 'closed';
            CONTINUE WHEN hook.paused_until IS NOT NULL AND hook.paused_until > claim_at;
            destination_limit := destination_cap;
            IF hook.concurrency IS NOT NULL AND hook.concurrency < limit_ceiling THEN
                destination_limit := least(destination_cap, hook.concurrency);
            END IF;
            share := hook_shares[i];
            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.webhook_id = hook.id AND f.expires_at >= claim_at;
            share := least(share, hook.max_concurrency - in_flight);
            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.destination = hook.destination AND f.expires_at >= claim_at;
            share := least(share, destination_limit - in_flight);
            SELECT count(*) INTO in_flight FROM flights f
                WHERE f.site_id = hook.site_id AND f.expires_at >= claim_at;
            share := least(share, site_cap - in_flight);
        END IF;
        -- One left without room keeps its turn, so a shared room alternates.
        CONTINUE WHEN share <= 0;
        served := served || hook.id::text;
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
    -- Every webhook given a share has had its turn, whether its lease found anything or not
    -- (an ordered webhook waiting for the version in flight).
    IF stamp_turns AND cardinality(served) > 0 THEN
        UPDATE webhooks SET claimed_at = claim_at WHERE webhooks.id = ANY(served);
    END IF;
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
