"""autovacuum settings for the two tables that grow with traffic (PostgreSQL)

PostgreSQL's defaults vacuum a table once a fifth of it is dead rows, and analyze it once a
tenth has changed. At 10,000,000 attempts and a few million deliveries that is millions of
dead rows before a vacuum starts: the claim's partial indexes fill with entries of rows
long settled, each claim reads past them, and the attempt log's pruned pages wait days to
be reused. Per-table settings make both tables be vacuumed and analyzed in small, frequent
rounds instead (docs/operations.md, "Autovacuum"):

- deliveries: every claim and every outcome updates a row; vacuum at 2 % dead rows, analyze
  at 2 % changed (the claim's plan depends on how many are pending).
- attempts: insert-only but for pruning, which deletes a day's attempts an hour at a time;
  vacuum at 2 % dead rows, and after 5 % new rows (PostgreSQL 13 or later) so the
  visibility map stays current.

SQLite has no autovacuum of this kind: nothing to do there.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DELIVERIES = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_analyze_scale_factor": "0.02",
}
ATTEMPTS = {
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_analyze_scale_factor": "0.05",
}
#: PostgreSQL 13 and later: vacuum after inserts too (the table is mostly inserted into).
ATTEMPTS_13 = {"autovacuum_vacuum_insert_scale_factor": "0.05"}


def _options(table: str) -> dict[str, str]:
    if table == "deliveries":
        return DELIVERIES
    bind = op.get_bind()
    version = int(bind.execute(sa.text("SHOW server_version_num")).scalar_one())
    return {**ATTEMPTS, **(ATTEMPTS_13 if version >= 130000 else {})}


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in ("deliveries", "attempts"):
        settings = ", ".join(f"{k} = {v}" for k, v in _options(table).items())
        op.execute(f"ALTER TABLE {table} SET ({settings})")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in ("deliveries", "attempts"):
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(_options(table))})")
