"""grace notices: remember which secret rotation's grace period has been announced

`WebhookSecretGraceEnding` fires once per rotation, when the old secret's grace period is
about to end. The upkeep marks a webhook with the id of the previous secret it announced
(`grace_notice_kid`); a new rotation has a new previous secret, so it is announced again.
The upkeep finds rotations by the end of their grace period, hence the index.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06 01:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("grace_notice_kid", sa.String(64), nullable=True))
    op.create_index("ix_webhooks_grace_ends", "webhooks", ["previous_secret_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_webhooks_grace_ends", table_name="webhooks")
    with op.batch_alter_table("webhooks") as batch:
        batch.drop_column("grace_notice_kid")
