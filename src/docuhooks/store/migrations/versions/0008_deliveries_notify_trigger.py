"""deliveries: new rows wake PostgreSQL workers from a trigger, not a statement per event

Every event written through the outbox ended with `SELECT pg_notify(…)`, a round trip of its
own: about a sixth of a producer's CPU time on PostgreSQL. A statement-level trigger sends
the same notification from inside the INSERT (PostgreSQL delivers it at commit, once per
transaction however many statements raise it). SQLite has no other process to wake.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 08:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The channel `store.notify.DELIVERIES_CHANNEL` names; workers LISTEN on it.
_CHANNEL = "docuhooks_deliveries"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION docuhooks_notify_new_deliveries() RETURNS trigger
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


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS deliveries_notify_new ON deliveries")
    op.execute("DROP FUNCTION IF EXISTS docuhooks_notify_new_deliveries()")
