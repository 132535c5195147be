"""answer sets count towards a site's storage quota, summed from indexes

An interview's answers and its version's (up to `max_answer_set_bytes` each, 5 MiB by
default, kept on every version and on every interview opened) were stored without counting:
a site could fill the disk every site shares with them. The storage quota
(`platform.storage`) now counts them, by their size kept beside them (`answers_size`, the
bytes of their stored JSON text, filled in here for the rows already stored) and summed
from an index of each table by site and size, as documents are (migration 0029). The quota
also sums the originals kept for versions in post-processing by site: an index lets that
read only the site's.

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-09 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032"
down_revision: str | None = "0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("work_item_versions", "interviews")


def upgrade() -> None:
    # The bytes of the stored text: SQLite's length() of text counts characters, of a blob
    # bytes; PostgreSQL's json keeps the text as written.
    if op.get_bind().dialect.name == "sqlite":
        size = "length(CAST(answers AS BLOB))"
    else:
        size = "octet_length(CAST(answers AS TEXT))"
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("answers_size", sa.BigInteger(), nullable=False, server_default="0")
            )
        op.execute(f"UPDATE {table} SET answers_size = {size}")
        op.create_index(
            f"ix_{table}_site_answers_size", table, ["site_id", "answers_size"], unique=False
        )
    op.create_index(
        "ix_post_processing_originals_site",
        "post_processing_originals",
        ["site_id", "version_id", "size"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_post_processing_originals_site", table_name="post_processing_originals")
    for table in reversed(_TABLES):
        op.drop_index(f"ix_{table}_site_answers_size", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("answers_size")
