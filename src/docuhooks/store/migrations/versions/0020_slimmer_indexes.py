"""deliveries: the ordering index holds pending ordered deliveries only; flights: no owner index

Every delivery's row is written twice after its insert: a lease, and its outcome. The
outcome changes its status, so on PostgreSQL it is a new row version in every index whose
definition covers it. Two indexes were written for rows no query reads:

- `ix_deliveries_ordering` (`webhook_id`, `ordering_key`, `ordering_seq`): only the
  ordered-delivery rule reads it (`delivery.queries.first_in_order`, and `docuhooks_claim`
  of migration 0019), for an earlier *pending* delivery of the same work item. It is now
  where `status = 'pending' AND ordering_key IS NOT NULL`: a settled delivery leaves it
  (it held every delivery of the retention window), and one of an event without an order
  (an interview call's `sync` row, an operational event, a test event) is never in it.
  The rule states both conditions (the status as a literal, which a partial index needs in
  a prepared statement's generic plan; the equality of `ordering_key`, which implies it is
  not null), so it still reads this index.
- `ix_flights_owner`: the table holds one row per call in flight; the statements that pick
  a worker's rows pick them by delivery (the primary key), and the one that takes them all
  (a worker's shutdown) reads a table of a few hundred rows. Each call wrote and deleted an
  entry of it.

`ix_deliveries_due` stays as it is: made partial in the same way, it was small enough that
PostgreSQL's planner preferred it for one webhook's due deliveries, filtering every other
webhook's out (`tests/delivery/test_claim_plans.py` has a neighbour's backlog for this).

Built inside the migration's transaction, as the other indexes were: PostgreSQL holds off
writes to `deliveries` while it reads the table (about a second per million rows here),
once, at the upgrade.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ORDERED_PENDING = sa.text("status = 'pending' AND ordering_key IS NOT NULL")
_COLUMNS = ["webhook_id", "ordering_key", "ordering_seq"]


def upgrade() -> None:
    op.drop_index("ix_deliveries_ordering", table_name="deliveries")
    op.create_index(
        "ix_deliveries_ordering",
        "deliveries",
        _COLUMNS,
        unique=False,
        sqlite_where=_ORDERED_PENDING,
        postgresql_where=_ORDERED_PENDING,
    )
    op.drop_index("ix_flights_owner", table_name="flights")


def downgrade() -> None:
    op.create_index("ix_flights_owner", "flights", ["owner"], unique=False)
    op.drop_index("ix_deliveries_ordering", table_name="deliveries")
    op.create_index("ix_deliveries_ordering", "deliveries", _COLUMNS, unique=False)
