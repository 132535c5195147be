"""templates keep how many variables they declare

Lists of templates (`GET /templates`, the web UI's templates, work items and webhook pages)
showed or counted each template's variables by reading its whole definition: up to about a
megabyte of JSON per template, decoded on the event loop every site's requests are served
by (5 templates of 5,000 variables made `GET /templates` take a quarter of a second). The
count is now a column, filled here for the templates already stored, so a list reads only
what it shows.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031"
down_revision: str | None = "0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.add_column(
            sa.Column("variable_count", sa.Integer(), nullable=False, server_default="0")
        )
    # SQLite's json_array_length and PostgreSQL's (of its json type) read the stored text.
    op.execute("UPDATE templates SET variable_count = json_array_length(variables)")


def downgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("variable_count")
