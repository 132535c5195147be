"""a site's storage as running totals kept by triggers, not summed at every write

Every write that stores bytes counted what the site keeps first, under the site's lock: a
sum over every document, template and answer set of the site (migrations 0029 and 0032
made it read indexes, not rows). Interviews are never pruned, so that grew with the site
for good: 30–40 ms at 200,000 interviews, on SQLite on the event loop every site's
requests share.

`storage_usage` holds what each change added or freed, a row per row written, and a site
keeps the sum of its rows, read from `ix_storage_usage_site` alone. Triggers write them, on
both stores, for every insert, delete and change of size of a row of `documents` (its
`size`, a file), `templates` (the length of its `content`, a file), `work_item_versions`
and `interviews` (their `answers_size`): whatever writes the row (the API, the web UI,
post-processing, a delete, a foreign key's cascade) is counted, and no code path can
forget to. A change of size is one row of the difference; moving a row to another site (the
code never does) would be two. `platform.storage` folds a site's rows into one when they
grow many.

Each site then gets one row of what it keeps now, summed as the quota summed it. The
triggers are made first: on PostgreSQL each takes a lock on its table that writers wait
for until this migration commits, so every row is counted either in that sum or by a
trigger, never both or neither. A later migration that rebuilds one of these tables on
SQLite (`batch_alter_table` copies it into a new table) drops its triggers and must make
them again.

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-09 13:00:00.000000
"""

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import op

revision: str = "0035"
down_revision: str | None = "0034"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@dataclass(frozen=True)
class _Counted:
    """A table the quota counts: the bytes of a row (`{row}` is OLD or NEW), the column
    whose change changes them, and whether each row is a file."""

    table: str
    size: str
    column: str
    files: int


_COUNTED = (
    _Counted("documents", "{row}.size", "size", 1),
    # length() of a blob (SQLite) or of bytea (PostgreSQL) is its bytes, read from the
    # value's header, not its content.
    _Counted("templates", "length({row}.content)", "content", 1),
    _Counted("work_item_versions", "{row}.answers_size", "answers_size", 0),
    _Counted("interviews", "{row}.answers_size", "answers_size", 0),
)

_INSERT = "INSERT INTO storage_usage (site_id, bytes, files)"


def _size(counted: _Counted, row: str) -> str:
    return counted.size.format(row=row)


def _function(counted: _Counted) -> str:
    return f"docuhooks_storage_usage_{counted.table}()"


def _postgres_upgrade(counted: _Counted) -> None:
    old, new, files = _size(counted, "OLD"), _size(counted, "NEW"), counted.files
    op.execute(
        f"""
        CREATE FUNCTION {_function(counted)} RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                IF OLD.site_id = NEW.site_id THEN
                    {_INSERT} VALUES (NEW.site_id, {new} - {old}, 0);
                    RETURN NULL;
                END IF;
            END IF;
            IF TG_OP <> 'INSERT' THEN
                {_INSERT} VALUES (OLD.site_id, -{old}, {-files});
            END IF;
            IF TG_OP <> 'DELETE' THEN
                {_INSERT} VALUES (NEW.site_id, {new}, {files});
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    table, function = counted.table, _function(counted)
    for name, event in (("inserted", "INSERT"), ("deleted", "DELETE")):
        op.execute(
            f"CREATE TRIGGER storage_usage_{table}_{name} AFTER {event} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {function}"
        )
    op.execute(
        f"CREATE TRIGGER storage_usage_{table}_changed "
        f"AFTER UPDATE OF site_id, {counted.column} ON {table} FOR EACH ROW "
        f"WHEN (OLD.site_id IS DISTINCT FROM NEW.site_id OR {old} IS DISTINCT FROM {new}) "
        f"EXECUTE FUNCTION {function}"
    )


def _sqlite_upgrade(counted: _Counted) -> None:
    old, new, files = _size(counted, "OLD"), _size(counted, "NEW"), counted.files
    table = counted.table
    op.execute(
        f"CREATE TRIGGER storage_usage_{table}_inserted AFTER INSERT ON {table} "
        f"BEGIN {_INSERT} VALUES (NEW.site_id, {new}, {files}); END"
    )
    op.execute(
        f"CREATE TRIGGER storage_usage_{table}_deleted AFTER DELETE ON {table} "
        f"BEGIN {_INSERT} VALUES (OLD.site_id, -{old}, {-files}); END"
    )
    op.execute(
        f"""
        CREATE TRIGGER storage_usage_{table}_changed
        AFTER UPDATE OF site_id, {counted.column} ON {table}
        WHEN OLD.site_id IS NOT NEW.site_id OR {old} IS NOT {new}
        BEGIN
            {_INSERT} SELECT NEW.site_id, {new} - {old}, 0 WHERE OLD.site_id IS NEW.site_id;
            {_INSERT} SELECT OLD.site_id, -{old}, {-files} WHERE OLD.site_id IS NOT NEW.site_id;
            {_INSERT} SELECT NEW.site_id, {new}, {files} WHERE OLD.site_id IS NOT NEW.site_id;
        END
        """
    )


def upgrade() -> None:
    op.create_table(
        "storage_usage",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_usage")),
    )
    op.create_index(
        "ix_storage_usage_site", "storage_usage", ["site_id", "bytes", "files"], unique=False
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for counted in _COUNTED:
        (_postgres_upgrade if postgres else _sqlite_upgrade)(counted)
    # What each site keeps now, as the quota summed it; from here on the triggers count.
    parts = " UNION ALL ".join(
        f"SELECT site_id, sum({_size(counted, counted.table)}) AS bytes, "
        f"{'count(*)' if counted.files else '0'} AS files "
        f"FROM {counted.table} GROUP BY site_id"
        for counted in _COUNTED
    )
    op.execute(
        f"{_INSERT} SELECT site_id, sum(bytes), sum(files) FROM ({parts}) AS kept GROUP BY site_id"
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for counted in reversed(_COUNTED):
        for name in ("changed", "deleted", "inserted"):
            trigger = f"storage_usage_{counted.table}_{name}"
            op.execute(
                f"DROP TRIGGER IF EXISTS {trigger} ON {counted.table}"
                if postgres
                else f"DROP TRIGGER IF EXISTS {trigger}"
            )
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {_function(counted)}")
    op.drop_index("ix_storage_usage_site", table_name="storage_usage")
    op.drop_table("storage_usage")
