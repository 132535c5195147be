"""recovery jobs: recovering a webhook's failures runs in the background, in batches

`POST /webhooks/{id}/recover` used to load every failed delivery of its window in one
transaction, which on SQLite runs on the server's event loop and grows with the log. The
request now records a job here; a background task works through the window in short
batches, recording its progress (and its place, so another process can take it over). A
partial index of each webhook's failed deliveries lets each batch read only what it uses.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, docuhooks.store.schema.UtcDateTime(timezone=True), nullable=nullable)


_FAILED = sa.text("status = 'failed'")


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_webhook_failed",
        "deliveries",
        ["webhook_id", "created_at", "id"],
        unique=False,
        sqlite_where=_FAILED,
        postgresql_where=_FAILED,
    )
    op.create_table(
        "recovery_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("webhook_id", sa.String(length=36), nullable=False),
        _ts("since"),
        _ts("until"),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("done", sa.Integer(), server_default="0", nullable=False),
        sa.Column("redelivered", sa.Integer(), server_default="0", nullable=False),
        _ts("cursor_created_at", nullable=True),
        sa.Column("cursor_id", sa.String(length=36), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        _ts("lease_expires_at", nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_by_id", sa.String(length=36), nullable=True),
        sa.Column("created_by_login", sa.String(length=255), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("finished_at", nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_recovery_jobs_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_recovery_jobs_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_jobs")),
    )
    op.create_index(
        "ix_recovery_jobs_webhook_created", "recovery_jobs", ["webhook_id", "created_at"]
    )
    op.create_index("ix_recovery_jobs_status", "recovery_jobs", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_table("recovery_jobs")
    op.drop_index("ix_deliveries_webhook_failed", table_name="deliveries")
