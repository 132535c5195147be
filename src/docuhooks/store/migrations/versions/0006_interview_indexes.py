"""interviews: indexes for a version's open interview and for a work item's interviews

Opening an interview marks the version's earlier open interview replaced, and finishing
and post-processing look it up the same way; with no index each of them read every
interview in the store, so opening slowed as interviews accumulated. Deleting a work item
removes its interviews, which PostgreSQL's cascade finds by work item.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 01:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("interviews", schema=None) as batch_op:
        batch_op.create_index("ix_interviews_version_status", ["version_id", "status"])
        batch_op.create_index("ix_interviews_work_item", ["work_item_id"])


def downgrade() -> None:
    with op.batch_alter_table("interviews", schema=None) as batch_op:
        batch_op.drop_index("ix_interviews_work_item")
        batch_op.drop_index("ix_interviews_version_status")
