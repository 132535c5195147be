"""webhook stats: each webhook's attempts by hour and by day, for charts

A roll-up the recorder adds to in the transaction that writes a batch of attempts: per
webhook, per UTC hour (kept 48 hours, then folded into its day) and per UTC day (kept 30
days), the attempts that
succeeded and failed (by error class), interview calls the budget cut off, and a fixed
log-spaced latency histogram (`core.latency`, 53 bins). Charts read it instead of the
attempt log, and its size is bounded by the number of webhooks, whatever the traffic.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As they were at this revision (the schema's constants may change later; this may not).
_ERROR_CLASSES = (
    "timeout",
    "connect",
    "dns",
    "tls",
    "blocked",
    "http_status",
    "invalid_response",
)
_LATENCY_BINS = 53


def _count(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "webhook_stats",
        sa.Column("webhook_id", sa.String(length=36), nullable=False),
        sa.Column("grain", sa.String(length=4), nullable=False),
        sa.Column(
            "bucket_start", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        _count("succeeded"),
        _count("failed"),
        *(_count(f"failed_{error_class}") for error_class in _ERROR_CLASSES),
        _count("budget_cut"),
        *(_count(f"latency_{index:02d}") for index in range(_LATENCY_BINS)),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_stats_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "webhook_id", "grain", "bucket_start", name=op.f("pk_webhook_stats")
        ),
    )
    op.create_index("ix_webhook_stats_site", "webhook_stats", ["site_id", "grain", "bucket_start"])
    op.create_index("ix_webhook_stats_bucket", "webhook_stats", ["grain", "bucket_start"])


def downgrade() -> None:
    op.drop_index("ix_webhook_stats_bucket", table_name="webhook_stats")
    op.drop_index("ix_webhook_stats_site", table_name="webhook_stats")
    op.drop_table("webhook_stats")
