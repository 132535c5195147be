"""outbox in one statement: delivery ids made in SQL, and no wake-up for an empty insert

On PostgreSQL the outbox writes an event, matches its webhooks and inserts their deliveries
in one statement (`delivery.outbox`), so the deliveries' ids are made by the database:
`docuhooks_uuid7()` makes the same time-ordered UUIDs (version 7, RFC 9562) as
`core.ids.uuid7`, the time from the server's clock. And that statement's delivery insert runs
even when the event reaches no webhook, so the trigger that wakes the workers now does so
only when the insert wrote a row. SQLite has neither.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 01:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The channel `store.notify.DELIVERIES_CHANNEL` names; workers LISTEN on it.
_CHANNEL = "docuhooks_deliveries"

# The 48-bit Unix time in milliseconds over the first six bytes of a random (version 4)
# UUID, then the version bits 0100 made 0111 (bits 52 and 53, counted from the right of
# each byte): 74 random bits are left, as `core.ids.uuid7` leaves them.
_UUID7 = """
CREATE FUNCTION docuhooks_uuid7() RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(
        set_bit(
            set_bit(
                overlay(
                    uuid_send(gen_random_uuid())
                    PLACING substring(
                        int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                        FROM 3
                    )
                    FROM 1 FOR 6
                ),
                52, 1
            ),
            53, 1
        ),
        'hex'
    )::uuid::text
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_UUID7)
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION docuhooks_notify_new_deliveries() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM inserted) THEN
                PERFORM pg_notify('{_CHANNEL}', '');
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    op.execute("DROP TRIGGER deliveries_notify_new ON deliveries")
    op.execute(
        "CREATE TRIGGER deliveries_notify_new AFTER INSERT ON deliveries "
        "REFERENCING NEW TABLE AS inserted "
        "FOR EACH STATEMENT EXECUTE FUNCTION docuhooks_notify_new_deliveries()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER deliveries_notify_new ON deliveries")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION docuhooks_notify_new_deliveries() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{_CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER deliveries_notify_new AFTER INSERT ON deliveries "
        "FOR EACH STATEMENT EXECUTE FUNCTION docuhooks_notify_new_deliveries()"
    )
    op.execute("DROP FUNCTION docuhooks_uuid7()")
