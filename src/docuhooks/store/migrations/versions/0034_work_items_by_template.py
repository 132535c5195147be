"""work items found by their template

Deleting a template asks how many work items use it (refused while any do), and the work
items' list filters by template (`GET /workitems?templateId=`, linked from the template's
delete page); PostgreSQL's `ON DELETE CASCADE` from templates looks them up too. Without
`ix_work_items_template` each read every work item of every site.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-09 12:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0034"
down_revision: str | None = "0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_work_items_template", "work_items", ["template_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_work_items_template", table_name="work_items")
