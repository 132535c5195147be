"""a site's stored bytes summed from an index

A site's storage quota (`platform.storage`) sums the sizes of its documents at every upload,
assembly and post-processing reply: `ix_documents_site_size` lets that read the index alone
instead of every document of every site.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-08 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_documents_site_size", "documents", ["site_id", "size"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_documents_site_size", table_name="documents")
