"""deliveries: room on each page for the claim's update (PostgreSQL)

A claim changes only a delivery's lease columns, which no index holds, so PostgreSQL can
write the new row version on the same page without touching any index (a HOT update), but
only if the page has room. Full pages made every claim a new entry in every index of the
table, the due index included, right where the next claim starts reading, until vacuum
removes them; a large backlog drained ever slower. Pages filled to 70 % leave that room.
SQLite updates rows in place: nothing to do there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 23:45:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
