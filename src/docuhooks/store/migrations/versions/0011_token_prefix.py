"""token prefix: the first characters of each API token, so people can tell tokens apart

The token itself is stored only as its sha256, so a list of tokens could show their names
and dates but nothing that matches what a person holds. The prefix (`dht_` and six random
characters, 36 of the token's 256 random bits) is shown in the admin UI and `GET /tokens`.
Tokens made before this revision have none.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("prefix", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("prefix")
