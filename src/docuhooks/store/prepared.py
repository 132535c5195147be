"""Statements on the hottest paths, compiled once and run on the database's driver directly.

Through SQLAlchemy a cached statement on SQLite costs several times what `sqlite3`
itself takes (docs/performance.md): the rest is the execution context, the parameter and result
processing set up again for each call, and the events. That was most of the cost of the
transaction that opens an interview, and about half of writing an event through the outbox;
it grows when the process has just been idle, because SQLAlchemy's execution path is a lot
of code to bring back into the CPU's caches.

A `Prepared` statement is an ordinary Core statement, written once where it is used. On the
`sqlite+docuhooks` dialect it is compiled once per set of parameter names (as SQLAlchemy
compiles: an INSERT writes the columns it is given values for) and executed on the `sqlite3`
connection of the transaction the caller holds, with the same bind and result processors
SQLAlchemy would apply, so what reaches SQLite and what comes back are the same. On any
other dialect (and for anything this module does not take on) it is simply executed
through SQLAlchemy.

On PostgreSQL (`postgresql+asyncpg`) it is the same idea: compiled once with SQLAlchemy's
asyncpg dialect (its `$n` parameters and casts) and run with asyncpg's own `fetch`,
`execute` and `executemany` on the connection of the caller's transaction. A statement still
costs one round trip; what goes is SQLAlchemy's execution context around it, about half a
worker's CPU per statement. asyncpg's statement cache (whose size the engine's connect
arguments set, 0 behind PgBouncer in transaction pooling) decides whether the statement is
named; nothing here keeps a statement or any other session state of its own. Errors come
back as SQLAlchemy's, as they do through it.

Only the paths a person or the delivery rate waits on use it (opening an interview, the
outbox, the delivery worker's claim and attempt log): most queries are not worth a second
way to run them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from docuhooks.store.schema import UtcDateTime
from docuhooks.store.sqlite_inline import InlineAsyncConnection

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Fixed:
    value: Any


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    #: For each `?` in order: the parameter's name, its fixed value (a literal the statement
    #: carries) or None when the caller passes it, and the bind processor or None.
    binds: tuple[tuple[str, _Fixed | None, _Processor], ...]
    #: The row type (None for a statement that returns nothing) and each column's processor.
    row_type: type[tuple[Any, ...]] | None
    results: tuple[_Processor, ...]


class Prepared:
    """A Core statement executed in the caller's transaction; see the module's notes.

    Rows come back as named tuples on SQLite and as SQLAlchemy rows elsewhere: read them by
    attribute (`row.id`), which both offer.
    """

    __slots__ = ("_compiled", "_compiled_asyncpg", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        #: By the names of the parameters passed, as SQLAlchemy compiles: an INSERT writes
        #: exactly the columns it is given values for.
        self._compiled: dict[frozenset[str], _Compiled] = {}
        self._compiled_asyncpg: dict[frozenset[str], _Compiled] = {}

    async def all(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        if not isinstance(conn, InlineAsyncConnection):
            driver = await _asyncpg_driver(conn)
            if driver is None:
                return (await conn.execute(self.statement, params)).all()
            return await self._run_asyncpg(conn, driver, params)
        return self._run(conn, params)

    async def first(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any | None:
        rows = await self.all(conn, params)
        return rows[0] if rows else None

    async def one(self, conn: AsyncConnection, params: Mapping[str, Any]) -> Any:
        rows = await self.all(conn, params)
        if len(rows) != 1:
            raise sa_exc.NoResultFound(f"expected one row, got {len(rows)}")
        return rows[0]

    async def execute(self, conn: AsyncConnection, params: Mapping[str, Any]) -> None:
        """Run a statement whose rows (if any) are not wanted."""
        if not isinstance(conn, InlineAsyncConnection):
            driver = await _asyncpg_driver(conn)
            if driver is None:
                await conn.execute(self.statement, params)
            else:
                await self._run_asyncpg(conn, driver, params)
            return
        self._run(conn, params)

    async def executemany(self, conn: AsyncConnection, params: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement that returns nothing once per parameter set (one INSERT of many
        rows, say)."""
        if not params:
            return
        if not isinstance(conn, InlineAsyncConnection):
            driver = await _asyncpg_driver(conn)
            if driver is None:
                await conn.execute(self.statement, list(params))
            else:
                await self._executemany_asyncpg(conn, driver, params)
            return
        compiled = self._prepare(conn, params[0])
        if compiled.row_type is not None:
            raise ValueError("executemany runs statements that return no rows")
        values = [_values(compiled, one) for one in params]
        try:
            _driver(conn).executemany(compiled.sql, values)
        except sqlite3.Error as exc:
            raise _reported(compiled, values, exc, conn) from exc

    def _prepare(self, conn: InlineAsyncConnection, params: Mapping[str, Any]) -> _Compiled:
        if not conn.in_transaction():
            # sqlite3 runs a statement outside a transaction on its own: a caller that
            # forgot to begin one would lose its atomicity without noticing.
            raise RuntimeError("a Prepared statement runs inside the caller's transaction")
        keys = frozenset(params)
        compiled = self._compiled.get(keys)
        if compiled is None:
            compiled = self._compiled[keys] = _compile(
                self.statement, conn.sync_engine.dialect, keys
            )
        return compiled

    def _run(self, conn: InlineAsyncConnection, params: Mapping[str, Any]) -> list[Any]:
        compiled = self._prepare(conn, params)
        values = _values(compiled, params)
        try:
            cursor = _driver(conn).execute(compiled.sql, values)
            fetched = cursor.fetchall() if compiled.row_type is not None else []
        except sqlite3.Error as exc:
            raise _reported(compiled, values, exc, conn) from exc
        if compiled.row_type is None:
            return []
        make, processors = compiled.row_type, compiled.results
        return [
            make(*(v if p is None else p(v) for v, p in zip(row, processors, strict=True)))
            for row in fetched
        ]

    # --- PostgreSQL, on asyncpg ---------------------------------------------------------------

    def _prepare_asyncpg(self, conn: AsyncConnection, params: Mapping[str, Any]) -> _Compiled:
        keys = frozenset(params)
        compiled = self._compiled_asyncpg.get(keys)
        if compiled is None:
            compiled = self._compiled_asyncpg[keys] = _compile(self.statement, conn.dialect, keys)
        return compiled

    async def _run_asyncpg(
        self, conn: AsyncConnection, driver: Any, params: Mapping[str, Any]
    ) -> list[Any]:
        compiled = self._prepare_asyncpg(conn, params)
        values = _values(compiled, params)
        try:
            if compiled.row_type is None:
                await driver.execute(compiled.sql, *values)
                return []
            fetched = await driver.fetch(compiled.sql, *values)
        except Exception as exc:
            raise _asyncpg_reported(conn, compiled, values, exc) from exc
        make, processors = compiled.row_type, compiled.results
        return [
            make(*(v if p is None else p(v) for v, p in zip(row, processors, strict=True)))
            for row in fetched
        ]

    async def _executemany_asyncpg(
        self, conn: AsyncConnection, driver: Any, params: Sequence[Mapping[str, Any]]
    ) -> None:
        compiled = self._prepare_asyncpg(conn, params[0])
        if compiled.row_type is not None:
            raise ValueError("executemany runs statements that return no rows")
        values = [_values(compiled, one) for one in params]
        try:
            # asyncpg sends every row's Bind and Execute, then one Sync: one round trip.
            await driver.executemany(compiled.sql, values)
        except Exception as exc:
            raise _asyncpg_reported(conn, compiled, values, exc) from exc


async def _asyncpg_driver(conn: AsyncConnection) -> Any | None:
    """The asyncpg connection under `conn`, inside the caller's transaction; None where a
    statement goes through SQLAlchemy instead (another dialect, or neither a transaction
    begun nor `AUTOCOMMIT`: SQLAlchemy's own `execute` begins one, which this must not do
    behind its back).

    SQLAlchemy's asyncpg adapter sends `BEGIN` with the transaction's first statement, not
    when the transaction begins; if none has run yet it is sent here, as the adapter would.
    On an `AUTOCOMMIT` connection (`Database.autocommit`) each statement commits itself."""
    if conn.dialect.driver != "asyncpg":
        return None
    if not conn.in_transaction() and not is_autocommit(conn):
        return None
    # In a transaction the pooled connection is there (or the transaction is invalid, which
    # this raises as SQLAlchemy would), so this reads it without a trip through a greenlet.
    fairy = conn.sync_connection.connection  # type: ignore[union-attr]
    adapter: Any = fairy.dbapi_connection
    if adapter._transaction is None and not adapter.autocommit:
        try:
            await adapter._start_transaction()
        except adapter.dbapi.Error as exc:
            # The adapter's own error (the server gone, say): reported as SQLAlchemy
            # reports a failed statement, so callers catch one kind here too.
            raise sa_exc.DBAPIError.instance(
                "BEGIN", None, exc, adapter.dbapi.Error, dialect=conn.dialect
            ) from exc
    return fairy.driver_connection


def is_autocommit(conn: AsyncConnection) -> bool:
    """`conn` runs each statement in a transaction of its own (`Database.autocommit` on
    PostgreSQL without a pooler in transaction mode)."""
    sync = conn.sync_connection
    return sync is not None and sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def _asyncpg_reported(
    conn: AsyncConnection, compiled: _Compiled, values: Any, exc: Exception
) -> BaseException:
    """asyncpg's error as SQLAlchemy reports it through its adapter (`IntegrityError`,
    `DataError`, … with the SQLSTATE on `orig`), so callers catch one kind; anything that is
    not a database error (a cancellation, say) as it was."""
    adapter: Any = conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    try:
        adapter._handle_exception(exc)
    except adapter.dbapi.Error as translated:
        reported: BaseException = sa_exc.DBAPIError.instance(
            compiled.sql, values, translated, adapter.dbapi.Error, dialect=conn.dialect
        )
        return reported
    except BaseException as same:
        return same
    return exc


def _values(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    values = []
    for name, fixed, process in compiled.binds:
        if fixed is not None:
            value = fixed.value
        else:
            try:
                value = params[name]
            except KeyError:
                raise sa_exc.InvalidRequestError(
                    f"A value is required for bind parameter {name!r}"
                ) from None
        values.append(value if process is None else process(value))
    return values


def _driver(conn: InlineAsyncConnection) -> sqlite3.Connection:
    driver: sqlite3.Connection = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr,assignment]
    return driver


def _reported(
    compiled: _Compiled, values: Any, exc: sqlite3.Error, conn: InlineAsyncConnection
) -> sa_exc.StatementError:
    """The error as SQLAlchemy reports a failed statement, so callers catch one kind."""
    return sa_exc.DBAPIError.instance(
        compiled.sql, values, exc, sqlite3.Error, dialect=conn.sync_engine.dialect
    )


def _compile(statement: Executable, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))
    assert isinstance(compiled, SQLCompiler)
    if compiled.insert_prefetch or compiled.update_prefetch:
        # SQLAlchemy computes those values while executing; this module does not.
        raise ValueError("column defaults computed in Python are not supported here")
    if compiled.positiontup is None:
        raise ValueError(f"{dialect.name} does not use positional parameters")
    processors = compiled._bind_processors
    binds: list[tuple[str, _Fixed | None, _Processor]] = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        if bind.expanding:
            raise ValueError(f"parameter {name!r} expands (IN): not supported here")
        # A parameter the caller passes (sa.bindparam("x"), an INSERT's column) is required;
        # a literal in the statement (status == "open", LIMIT 1) has its value here.
        fixed = None if bind.required else _Fixed(bind.effective_value)
        process = processors.get(name)
        if dialect.name == "sqlite" and isinstance(bind.type, UtcDateTime):
            process = sqlite_utc_text
        if process is not None and not callable(process):
            # A tuple type's processors, one per element: none of ours has them.
            raise ValueError(f"parameter {name!r} is a tuple: not supported here")
        binds.append((name, fixed, process))
    columns = compiled._result_columns
    if not columns:
        return _Compiled(str(compiled), tuple(binds), None, ())
    row_type = NamedTuple(  # type: ignore[misc]
        "PreparedRow", [(column[0], Any) for column in columns]
    )
    results = tuple(column[3]._cached_result_processor(dialect, None) for column in columns)
    return _Compiled(str(compiled), tuple(binds), row_type, results)


def sqlite_utc_text(value: datetime | None) -> str | None:
    """A `UtcDateTime` as SQLite stores it: the text SQLAlchemy writes (UTC, no offset,
    always six digits of microseconds), from one C call instead of a dictionary formatted
    through a chain of Python processors. Columns are compared as text, so it must be the
    same text to the byte (a property test checks it against SQLAlchemy's)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"
