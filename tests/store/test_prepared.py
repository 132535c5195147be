"""Prepared statements: on SQLite and on PostgreSQL (asyncpg) they run on the driver directly,
in the caller's transaction, yet what reaches the database and what comes back are what
SQLAlchemy's own execution gives; elsewhere they are SQLAlchemy's execution."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import sqlite as sqlite_dialect

from docuhooks.context import AppContext
from docuhooks.store.prepared import Prepared, sqlite_utc_text
from docuhooks.store.schema import UtcDateTime

_table = sa.Table(
    "prepared_probe",
    sa.MetaData(),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("doc", sa.JSON(), nullable=False),
    sa.Column("at", UtcDateTime(timezone=True), nullable=True),
    sa.Column("n", sa.Integer(), nullable=False),
)
_INSERT = Prepared(_table.insert())
# Literals in the statement ("a", LIMIT 2) alongside the caller's parameters.
_SELECT = Prepared(
    sa.select(_table.c.id.label("the_id"), _table.c.doc, _table.c.at, _table.c.n)
    .where(_table.c.kind == "a", _table.c.n >= sa.bindparam("least"))
    .order_by(_table.c.n)
    .limit(2)
)
_BUMP = Prepared(
    _table.update().where(_table.c.id == sa.bindparam("which")).values(n=_table.c.n + 1, kind="b")
)
_MOMENT = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC)


@pytest.fixture
async def probe(ctx: AppContext) -> AsyncIterator[AppContext]:
    async with ctx.db.transaction() as conn:
        await conn.run_sync(lambda sync: _table.create(sync, checkfirst=True))
    yield ctx
    async with ctx.db.transaction() as conn:
        await conn.run_sync(lambda sync: _table.drop(sync))


async def _insert_three(ctx: AppContext) -> None:
    async with ctx.db.transaction() as conn:
        for i, kind in enumerate(["a", "a", "a"]):
            await _INSERT.execute(
                conn,
                {
                    "id": f"row-{i}",
                    "kind": kind,
                    "doc": {"i": i, "nested": ["x", None]},
                    "at": _MOMENT if i else None,
                    "n": i * 10,
                },
            )


async def test_rows_read_back_as_sqlalchemy_reads_them(probe: AppContext) -> None:
    ctx = probe
    await _insert_three(ctx)
    async with ctx.db.transaction() as conn:
        prepared = await _SELECT.all(conn, {"least": 5})
        plain = (await conn.execute(_SELECT.statement, {"least": 5})).all()
    assert [tuple(row) for row in prepared] == [tuple(row) for row in plain]
    assert [row.the_id for row in prepared] == ["row-1", "row-2"]
    assert prepared[0].doc == {"i": 1, "nested": ["x", None]}
    assert prepared[0].at == _MOMENT
    assert prepared[0].at.tzinfo is not None


async def test_writes_store_what_sqlalchemy_would(probe: AppContext) -> None:
    ctx = probe
    await _insert_three(ctx)
    async with ctx.db.transaction() as conn:
        await _BUMP.execute(conn, {"which": "row-0"})
    async with ctx.db.read() as conn:
        stored = (await conn.execute(sa.select(_table).order_by(_table.c.n))).all()
    assert [(r.id, r.kind, r.n) for r in stored] == [
        ("row-0", "b", 1),
        ("row-1", "a", 10),
        ("row-2", "a", 20),
    ]
    assert stored[1].at == _MOMENT
    assert stored[0].at is None


async def test_first_and_one(probe: AppContext) -> None:
    ctx = probe
    await _insert_three(ctx)
    async with ctx.db.transaction() as conn:
        assert (await _SELECT.first(conn, {"least": 100})) is None
        row = await _SELECT.first(conn, {"least": 15})
        assert row is not None and row.the_id == "row-2"
        assert (await _SELECT.one(conn, {"least": 15})).n == 20
        with pytest.raises(sa_exc.NoResultFound):
            await _SELECT.one(conn, {"least": 0})


async def test_a_missing_parameter_is_named(probe: AppContext) -> None:
    async with probe.db.transaction() as conn:
        with pytest.raises(sa_exc.SQLAlchemyError, match="least"):
            await _SELECT.all(conn, {})


async def test_a_failed_statement_is_reported_as_sqlalchemy_reports_it(probe: AppContext) -> None:
    ctx = probe
    await _insert_three(ctx)
    with pytest.raises(sa_exc.IntegrityError):
        async with ctx.db.transaction() as conn:
            await _INSERT.execute(conn, {"id": "row-0", "kind": "a", "doc": {}, "at": None, "n": 0})
    # The failed transaction changed nothing, and the next one works.
    async with ctx.db.transaction() as conn:
        assert len(await _SELECT.all(conn, {"least": 0})) == 2


async def test_a_transactions_first_statement_prepared_rolls_back_with_it(
    probe: AppContext,
) -> None:
    """On PostgreSQL SQLAlchemy sends BEGIN with a transaction's first statement; a prepared
    one that comes first must still be inside the transaction."""
    ctx = probe
    with pytest.raises(RuntimeError):
        async with ctx.db.transaction() as conn:
            await _INSERT.execute(conn, {"id": "gone", "kind": "a", "doc": {}, "n": 1})
            raise RuntimeError("the caller's change failed")
    async with ctx.db.read() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(_table))).scalar()
    assert count == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_on_postgresql_statements_bypass_sqlalchemys_execution(probe: AppContext) -> None:
    ctx = probe
    executed: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        executed.append(statement)

    sync_engine = ctx.db.engine.sync_engine
    sa.event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        await _insert_three(ctx)
        async with ctx.db.transaction() as conn:
            assert len(await _SELECT.all(conn, {"least": 0})) == 2
            await _BUMP.execute(conn, {"which": "row-0"})
    finally:
        sa.event.remove(sync_engine, "before_cursor_execute", seen)
    assert executed == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_on_postgresql_an_autocommit_statement_commits_by_itself(probe: AppContext) -> None:
    ctx = probe
    async with ctx.db.autocommit() as conn:
        await _INSERT.execute(conn, {"id": "alone", "kind": "a", "doc": {}, "n": 1})
        # Not committed with anything else: another connection sees it at once.
        async with ctx.db.read() as other:
            ids = (await other.execute(sa.select(_table.c.id))).scalars().all()
    assert ids == ["alone"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_statement_outside_a_transaction_is_refused(probe: AppContext) -> None:
    async with probe.db.engine.connect() as conn:
        with pytest.raises(RuntimeError, match="inside the caller's transaction"):
            await _SELECT.all(conn, {"least": 0})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_an_expanding_parameter_is_refused_when_compiled(probe: AppContext) -> None:
    statement = Prepared(
        sa.select(_table.c.id).where(_table.c.id.in_(sa.bindparam("ids", expanding=True)))
    )
    async with probe.db.transaction() as conn:
        with pytest.raises(ValueError, match="expands"):
            await statement.all(conn, {"ids": ["row-0"]})


async def test_executemany_writes_every_row_or_none(probe: AppContext) -> None:
    ctx = probe
    rows = [
        {"id": f"many-{i}", "kind": "a", "doc": {"i": i}, "at": _MOMENT, "n": 100 + i}
        for i in range(3)
    ]
    async with ctx.db.transaction() as conn:
        await _INSERT.executemany(conn, rows)
        await _INSERT.executemany(conn, [])
    async with ctx.db.transaction() as conn:
        assert [row.the_id for row in await _SELECT.all(conn, {"least": 100})] == [
            "many-0",
            "many-1",
        ]
    with pytest.raises(sa_exc.IntegrityError):
        async with ctx.db.transaction() as conn:
            await _INSERT.executemany(conn, [{**rows[0], "id": "many-new"}, rows[1]])
    async with ctx.db.read() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(_table))).scalar()
    assert count == 3


async def test_an_insert_writes_the_columns_it_is_given_values_for(probe: AppContext) -> None:
    """As SQLAlchemy compiles an INSERT: a column left out takes its default (here NULL)."""
    ctx = probe
    async with ctx.db.transaction() as conn:
        await _INSERT.execute(conn, {"id": "short", "kind": "a", "doc": [], "n": 7})
        await _INSERT.execute(conn, {"id": "long", "kind": "a", "doc": [], "n": 8, "at": _MOMENT})
    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(_table.c.id, _table.c.at).order_by(_table.c.n))).all()
    assert [tuple(row) for row in rows] == [("short", None), ("long", _MOMENT)]


@given(
    moment=st.datetimes(
        min_value=datetime(1000, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
        ),
    )
)
def test_utc_datetimes_are_bound_as_the_text_sqlalchemy_writes(moment: datetime) -> None:
    """SQLite compares stored datetimes as text: the fast bind must write the same bytes."""
    dialect = sqlite_dialect.dialect()
    sqlalchemy_writes = UtcDateTime(timezone=True)._cached_bind_processor(dialect)
    assert sqlalchemy_writes is not None
    assert sqlite_utc_text(moment) == sqlalchemy_writes(moment)


def test_a_naive_datetime_is_refused_by_the_fast_bind() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        sqlite_utc_text(datetime(2026, 11, 30, 1, 2, 3))
    assert sqlite_utc_text(None) is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_on_postgresql_a_begin_that_fails_is_reported_as_sqlalchemy_reports_it(
    probe: AppContext,
) -> None:
    """A transaction's first statement sends its BEGIN; when the server has gone meanwhile
    (a restart, an administrator's pg_terminate_backend), the caller gets SQLAlchemy's
    error, as from any statement, and the pool a fresh connection afterwards."""
    import asyncpg

    from docuhooks.delivery.wakeup import asyncpg_dsn

    ctx = probe
    with pytest.raises(sa_exc.DBAPIError):
        async with ctx.db.transaction() as conn:
            driver: Any = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
            admin = await asyncpg.connect(asyncpg_dsn(ctx.db.engine.url))
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", driver.get_server_pid())
            finally:
                await admin.close()
            await _INSERT.execute(conn, {"id": "lost", "kind": "a", "doc": {}, "n": 1})
    await _insert_three(ctx)
