"""isolation: per-webhook concurrency, destination health, fair claims

A receiver that never answers held every sender of the worker, whoever else was waiting.
Webhooks now carry `max_concurrency` (calls in flight at most, across workers) and their
`destination` (scheme, host and port, whose circuit breaker and adaptive limit they obey);
`claimed_at` lets claims serve webhooks in turn. `destinations` holds the health of each
destination that has shown trouble; `flights` one row per leased delivery, so a claim counts
calls in flight (per webhook, per site and per destination) without an index on the lease
columns of `deliveries` (kept free of them for HOT updates). A partial index lets a claim
take a webhook's oldest due deliveries directly.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 04:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema
from docuhooks.core.destinations import destination_of

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.add_column(
        "webhooks",
        sa.Column("max_concurrency", sa.Integer(), nullable=False, server_default="10"),
    )
    op.add_column(
        "webhooks",
        sa.Column("destination", sa.String(length=2100), nullable=False, server_default=""),
    )
    op.add_column(
        "webhooks",
        sa.Column("claimed_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=True),
    )
    bind = op.get_bind()
    hooks = sa.table("webhooks", sa.column("id"), sa.column("url"), sa.column("destination"))
    for webhook_id, url in bind.execute(sa.select(hooks.c.id, hooks.c.url)).all():
        bind.execute(
            hooks.update().where(hooks.c.id == webhook_id).values(destination=destination_of(url))
        )
    op.create_index("ix_webhooks_destination", "webhooks", ["destination"], unique=False)
    op.create_index("ix_webhooks_claimed", "webhooks", ["claimed_at"], unique=False)
    op.create_table(
        "destinations",
        sa.Column("origin", sa.String(length=2100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("since", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "next_probe_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("paused_until", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("origin", name=op.f("pk_destinations")),
    )
    op.create_index(
        "ix_deliveries_webhook_due",
        "deliveries",
        ["webhook_id", "next_attempt_at", "id"],
        unique=False,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.create_table(
        "flights",
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("webhook_id", sa.String(length=36), nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("destination", sa.String(length=2100), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("expires_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_flights_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_flights")),
    )
    op.create_index("ix_flights_webhook", "flights", ["webhook_id", "expires_at"], unique=False)
    op.create_index("ix_flights_site", "flights", ["site_id", "expires_at"], unique=False)
    op.create_index(
        "ix_flights_destination", "flights", ["destination", "expires_at"], unique=False
    )
    op.create_index("ix_flights_owner", "flights", ["owner"], unique=False)


def downgrade() -> None:
    op.drop_table("flights")
    op.drop_index("ix_deliveries_webhook_due", table_name="deliveries")
    op.drop_table("destinations")
    op.drop_index("ix_webhooks_claimed", table_name="webhooks")
    op.drop_index("ix_webhooks_destination", table_name="webhooks")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("destination")
        batch_op.drop_column("max_concurrency")
