"""SQLite for asyncio without a thread hop per statement: the `sqlite+docuhooks` dialect.

aiosqlite runs every statement on its own thread and hands the result back through the
event loop: each `execute`, `fetchall`, `commit` is a queue put, a thread wake-up and a
future resolved: more scheduling than SQLite takes to answer the statement itself, paid
again for every statement of a transaction (docs/performance.md has the figures).

This dialect runs the standard `sqlite3` module on the event loop's own thread, under
SQLAlchemy's async engine, so every query in docuhooks stays the same; its connections
(`InlineAsyncConnection`) run statements without the greenlet an awaiting driver needs, and
`KeptConnections` spares a transaction the pool round trip. What running inline must not do
is block the loop on something slow, and the two slow things SQLite does are handled here:

- **Waiting for another process's lock.** SQLite's busy handler sleeps on the calling
  thread, so it is off (`busy_timeout=0`) on every connection the loop uses. The waits that
  remain are taken where a transaction begins, the only place one can start: a writer's
  `BEGIN IMMEDIATE`, and a reader's first read (its WAL snapshot, taken at `BEGIN`, which
  waits only while another process recovers the WAL after a crash). When the database is
  locked the transaction waits with `asyncio.sleep` in SQLAlchemy's greenlet and tries
  again, up to the busy timeout; once begun, its statements never wait for a lock. Writers
  of the same process never get here: `Database.transaction` queues them first.
- **Checkpoints.** SQLite normally copies the WAL back into the database (and fsyncs it) in
  whichever commit crosses 1,000 pages. Here automatic checkpoints are off and a
  `Checkpointer` thread with its own connection runs them, so a commit only appends to the
  WAL (with `synchronous=NORMAL`, no fsync; with `FULL`, one fsync of the WAL, which is
  the durability the `sqlite_synchronous` setting chooses).

Every statement docuhooks runs on SQLite is an indexed lookup, a bounded batch (claims, the
recorder, pruning, recovery jobs), a count that stops at a cap (`/metrics`) or a single-row
write, so running them inline costs the loop less than the hops it saves; a test holds the
loop to 50 ms at most during a drain with scrapes and a recovery (test_loop_lag.py).
PostgreSQL keeps asyncpg, which is asynchronous all the way down.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import sqlite3
import threading
import time
import types
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine.interfaces import AdaptedConnection
from sqlalchemy.engine.url import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction
from sqlalchemy.util import await_
from sqlalchemy.util.concurrency import in_greenlet

from docuhooks.settings import SQLITE_SYNCHRONOUS

#: How long a transaction keeps trying for another process's write lock (seconds).
BUSY_TIMEOUT = 30.0
#: Waits between tries, growing to the last value.
_BUSY_BACKOFF = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


class _Cursor:
    """A `sqlite3` cursor whose rows are read as soon as it executes, as the async drivers'
    cursors do, so SQLAlchemy's async result can close it early (`_async_soft_close`)."""

    __slots__ = ("_cursor", "_next", "_rows")
    server_side = False

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._cursor = connection.cursor()
        self._rows: list[Any] = []
        self._next = 0

    def execute(self, operation: str, parameters: Any = None) -> None:
        cursor = self._cursor
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        self._rows = cursor.fetchall() if cursor.description else []
        self._next = 0

    def executemany(self, operation: str, parameters: Sequence[Any]) -> None:
        self._cursor.executemany(operation, parameters)
        self._rows = []
        self._next = 0

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        row = self._rows[self._next]
        self._next += 1
        return row

    def fetchmany(self, size: int | None = None) -> list[Any]:
        end = self._next + (size if size is not None else self._cursor.arraysize)
        rows = self._rows[self._next : end]
        self._next += len(rows)
        return rows

    def fetchall(self) -> list[Any]:
        rows = self._rows[self._next :] if self._next else self._rows
        self._rows, self._next = [], 0
        return rows

    def close(self) -> None:
        self._cursor.close()

    async def _async_soft_close(self) -> None:
        # The rows are already read; the description stays for the result to use.
        return None


class _Connection(AdaptedConnection):
    """The DBAPI connection SQLAlchemy sees: `sqlite3`'s, with buffered cursors."""

    __slots__ = ()
    # AdaptedConnection's slot, typed for the async drivers it usually holds.
    _connection: sqlite3.Connection  # type: ignore[assignment]

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def cursor(self, server_side: bool = False) -> _Cursor:
        return _Cursor(self._connection)

    def execute(self, operation: str, parameters: Any = None) -> _Cursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        self._connection.close()

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        self._connection.isolation_level = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _DBAPI(types.ModuleType):
    """`sqlite3` as SQLAlchemy's DBAPI module, handing out `_Connection`s."""

    paramstyle = "qmark"

    def __init__(self) -> None:
        super().__init__("docuhooks_sqlite3")

    def connect(self, *args: Any, **kwargs: Any) -> _Connection:
        return _Connection(sqlite3.connect(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)


class SQLiteDialect_docuhooks(SQLiteDialect_pysqlite):
    """`sqlite3` on the event loop's thread, under SQLAlchemy's async engine."""

    driver = "docuhooks"
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return _DBAPI()

    def get_driver_connection(self, connection: Any) -> Any:
        return connection._connection

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # The async engine needs the asyncio-aware pool; a file database gets a real pool.
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    def create_connect_args(self, url: URL) -> Any:
        args, kwargs = super().create_connect_args(url)
        # Connections are used only on the loop's thread, but the pool may close one from
        # another (garbage collection at exit), which sqlite3 would otherwise refuse.
        kwargs["check_same_thread"] = False
        return args, kwargs


registry.register("sqlite.docuhooks", __name__, "SQLiteDialect_docuhooks")


class InlineAsyncConnection(AsyncConnection):
    """An AsyncConnection whose statements run straight on the sync connection.

    SQLAlchemy's AsyncConnection runs each statement in a new greenlet so the driver can
    await its I/O; `sqlite3` has no I/O to await, so the greenlet (and the check that the
    driver awaited) is pure cost: about a third of a cached statement's overhead. A
    transaction begins without it too when SQLite's lock is free (`_InlineTransaction`), and
    ends without it; connecting and closing still go through the greenlet, since the pool
    may wait on the loop. The results are the same buffered `CursorResult`s. `stream()` is
    not offered: SQLite's results are read whole anyway, so `execute()` is the one to use."""

    def begin(self) -> AsyncTransaction:
        assert self._proxied
        return _InlineTransaction(self)

    async def stream(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        raise NotImplementedError(
            "stream() is not supported on SQLite here: results are read whole; use execute()"
        )

    async def execute(
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        if not self._proxied.in_transaction():
            # The statement would begin a transaction itself (autobegin), which may have to
            # wait for another process's lock: it goes through the greenlet, where it can.
            return await super().execute(statement, parameters, execution_options=execution_options)
        return self._proxied.execute(statement, parameters, execution_options=execution_options)

    async def exec_driver_sql(
        self,
        statement: str,
        parameters: Any = None,
        execution_options: Any = None,
    ) -> Any:
        if not self._proxied.in_transaction():  # autobegin: see `execute`
            return await super().exec_driver_sql(statement, parameters, execution_options)
        return self._proxied.exec_driver_sql(
            statement, parameters, execution_options=execution_options
        )

    async def scalar(
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        result = await self.execute(statement, parameters, execution_options=execution_options)
        return result.scalar()

    async def scalars(
        self,
        statement: Any,
        parameters: Any = None,
        *,
        execution_options: Any = None,
    ) -> Any:
        result = await self.execute(statement, parameters, execution_options=execution_options)
        return result.scalars()


class _InlineTransaction(AsyncTransaction):
    """A transaction begun and ended on the loop's thread, without a greenlet.

    Beginning tries SQLite once (`begin_at_once`); only when another process holds the
    write lock does it take SQLAlchemy's way, in a greenlet, where `on_begin` can
    wait with `asyncio.sleep`. Committing and rolling back never wait: this connection
    holds the lock (or, reading, needs none), and checkpoints are another connection's.
    Only `begin()` makes one: a savepoint (`begin_nested()`) stays SQLAlchemy's own."""

    __slots__ = ()

    async def start(self, is_ctxmanager: bool = False) -> AsyncTransaction:
        sync_connection = self.connection._proxied
        driver: sqlite3.Connection = sync_connection.connection.driver_connection  # type: ignore[assignment]
        readonly = bool(sync_connection.get_execution_options().get(READONLY_OPTION, False))
        if not begin_at_once(driver, readonly=readonly):
            return await super().start(is_ctxmanager)
        token = _BEGUN.set(True)
        try:
            # SQLite's transaction is open: SQLAlchemy's `begin` hook sees `_BEGUN`.
            self.sync_transaction = self._assign_proxied(sync_connection.begin())
        except BaseException:
            driver.rollback()
            raise
        finally:
            _BEGUN.reset(token)
        if is_ctxmanager:
            self.sync_transaction.__enter__()
        return self

    async def commit(self) -> None:
        self._proxied.commit()

    async def rollback(self) -> None:
        self._proxied.rollback()

    async def close(self) -> None:
        self._proxied.close()

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        self._proxied.__exit__(type_, value, traceback)


#: The execution option that makes a connection's transactions read-only (`BEGIN`).
READONLY_OPTION = "docuhooks_readonly"
#: Set while SQLAlchemy begins a transaction `_InlineTransaction` has already begun.
_BEGUN: contextvars.ContextVar[bool] = contextvars.ContextVar("sqlite_begun", default=False)


def begin_at_once(dbapi_conn: sqlite3.Connection, *, readonly: bool) -> bool:
    """Begin now if no waiting is needed: `BEGIN` and the snapshot for a reader, `BEGIN
    IMMEDIATE` for a writer whose lock is free. False when another process holds the lock."""
    return _try_begin(dbapi_conn, readonly=readonly) is None


def _try_begin(
    dbapi_conn: sqlite3.Connection, *, readonly: bool
) -> sqlite3.OperationalError | None:
    """One try at beginning, without SQLite's busy handler (off on these connections: it would
    sleep on the loop's thread): None if it began, SQLite's error if another connection holds
    the lock (nothing is left open then).

    A reader takes its WAL snapshot here (`PRAGMA schema_version` reads the database header)
    rather than at its first query, so the one moment a reader can meet a lock (another
    process recovering the WAL) is met where it can be waited for without blocking."""
    try:
        if not readonly:
            dbapi_conn.execute("BEGIN IMMEDIATE")
            return None
        dbapi_conn.execute("BEGIN")
        try:
            dbapi_conn.execute("PRAGMA schema_version")
        except BaseException:
            dbapi_conn.rollback()
            raise
        return None
    except sqlite3.OperationalError as exc:
        if not _is_locked(exc):
            # As SQLAlchemy reports any statement's failure, so callers see one kind.
            raise sa_exc.OperationalError("BEGIN", None, exc) from exc
        return exc


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def on_begin(conn: Any) -> None:
    """SQLAlchemy's `begin` hook for this dialect's connections: readers take no write lock
    (WAL lets them run beside the writer); writers take it up front, so two writers queue
    instead of deadlocking on a lock upgrade."""
    if _BEGUN.get():
        return
    driver = conn.connection.driver_connection
    readonly = bool(conn.get_execution_options().get(READONLY_OPTION, False))
    _wait_for_lock(lambda: _try_begin(driver, readonly=readonly), "BEGIN")


class InlineAsyncEngine(AsyncEngine):
    """The async engine over `sqlite+docuhooks`: hands out `InlineAsyncConnection`s."""

    _connection_cls = InlineAsyncConnection


#: `PRAGMA synchronous` values the `sqlite_synchronous` setting may choose.
SYNCHRONOUS = SQLITE_SYNCHRONOUS


def configure_connection(dbapi_conn: sqlite3.Connection, *, synchronous: str = "normal") -> None:
    """Pragmas for a docuhooks connection: WAL, no busy handler, no inline checkpoint, and
    the chosen durability: `NORMAL` (in WAL mode, a commit survives the process crashing but
    the last ones may be lost if the machine loses power) or `FULL` (an fsync of the WAL per
    commit, which the loop waits for: the one wait on the loop left by choice, bounded by the
    disk, documented with the setting)."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}: {synchronous!r}")
    dbapi_conn.isolation_level = None  # transactions are begun by `on_begin`/`begin_at_once`
    # No busy handler: SQLite's sleeps on the calling thread, the event loop's here. A lock is
    # waited for only where a transaction begins (`_wait_for_lock`); once begun, a writer
    # holds the write lock and a reader its snapshot, and their statements never wait.
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    # Runs as the pool connects, inside SQLAlchemy's greenlet: the one pragma that can meet
    # another process's lock (switching a new file to WAL) waits without blocking the loop.
    _wait_for_lock(lambda: _try_pragma(dbapi_conn, "PRAGMA journal_mode=WAL"), "journal_mode")
    dbapi_conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    dbapi_conn.execute("PRAGMA foreign_keys=ON")
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


def _try_pragma(dbapi_conn: sqlite3.Connection, pragma: str) -> sqlite3.OperationalError | None:
    try:
        dbapi_conn.execute(pragma)
        return None
    except sqlite3.OperationalError as exc:
        if not _is_locked(exc):
            raise
        return exc


def _wait_for_lock(attempt: Callable[[], sqlite3.OperationalError | None], what: str) -> None:
    """Run `attempt` until it gets the lock, waiting between tries with `asyncio.sleep` up to
    `BUSY_TIMEOUT`; SQLite's error when it gives up.

    The wait needs SQLAlchemy's greenlet (the `begin` and `connect` events run in it, and
    `InlineAsyncConnection` sends statements that would begin a transaction there). Outside
    one there is no way to wait without blocking the thread, so the lock error is raised at
    once, as SQLite itself would with no busy timeout: the loop is never put to sleep."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    tries = 0
    while (locked := attempt()) is not None:
        if time.monotonic() >= deadline or not in_greenlet():
            raise sa_exc.OperationalError(what, None, locked) from locked
        await_(asyncio.sleep(_BUSY_BACKOFF[min(tries, len(_BUSY_BACKOFF) - 1)]))
        tries += 1


class Checkpointer:
    """Copies the WAL into the database from a thread of its own, every `interval` seconds.

    PASSIVE checkpoints never wait for readers or writers; when the WAL has grown past
    `truncate_pages` a TRUNCATE checkpoint is tried as well, so a busy database's WAL file
    does not keep the size of its largest burst."""

    def __init__(self, path: str, *, interval: float = 0.5, truncate_pages: int = 16_384):
        self._path = path
        self._interval = interval
        self._truncate_pages = truncate_pages
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="docuhooks-sqlite-checkpoint", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=1, isolation_level=None)
        try:
            while not self._stop.wait(self._interval):
                self.checkpoint(conn)
            self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _busy, wal_pages, _done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if wal_pages >= self._truncate_pages:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            # A locked or busy moment: the next round tries again.
            return


class WriteLock:
    """The turn-taking of one process's SQLite writers: first come, first served, except
    that an urgent writer goes before every ordinary one still waiting.

    The lock is handed straight to the next waiter on release, so nobody arriving meanwhile
    can take it first. Each hand-over costs the new holder an event-loop iteration to
    resume, and under load an iteration lasts milliseconds: a delivery worker's claim,
    which serves every event already committed, would otherwise wait for one iteration per
    producer queued ahead of it. The worker claims at most every couple of milliseconds
    while busy, so ordinary writers are not starved."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: collections.deque[asyncio.Future[None]] = collections.deque()
        self._ordinary: collections.deque[asyncio.Future[None]] = collections.deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self, *, urgent: bool = False) -> None:
        if not self._held:
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._ordinary).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over as the cancel came: pass it on
            raise

    def release(self) -> None:
        for queue in (self._urgent, self._ordinary):
            while queue:
                turn = queue.popleft()
                if not turn.done():  # a cancelled waiter's turn is skipped
                    turn.set_result(None)  # the lock stays held, now by that waiter
                    return
        self._held = False

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()


class KeptConnections:
    """Connections a `Database` keeps checked out between transactions, for one event loop,
    and the lock its writers take turns on.

    Taking a connection from the pool and handing it back costs two greenlet round trips and
    the pool's bookkeeping, more than a short transaction's statements. On SQLite writers
    take turns anyway, so one connection serves them all; read transactions can overlap, so
    up to `idle_readers` connections wait for the next one and any beyond come from the pool.
    A connection that may still be in a transaction (its unit of work failed, or its task was
    cancelled during the rollback) or is broken is not used again: it goes back to the pool,
    whose reset rolls back whatever it left open, and a fresh one takes its place."""

    def __init__(self, engine: AsyncEngine, *, idle_readers: int = 4) -> None:
        self._engine = engine
        self._idle_readers = idle_readers
        #: Writers of this process queue here, before SQLite's lock.
        self.write_lock = WriteLock()
        self._writer: AsyncConnection | None = None
        self._readers: list[AsyncConnection] = []

    async def writer(self) -> AsyncConnection:
        conn = self._writer
        if conn is None or not _reusable(conn):
            if conn is not None:
                await conn.close()
            conn = self._writer = await self._engine.connect()
        return conn

    async def writer_failed(self) -> None:
        """The writer's transaction raised: its connection goes back to the pool, whose reset
        rolls back whatever the failure left open (a failed COMMIT leaves SQLite's
        transaction open while SQLAlchemy's has ended)."""
        conn, self._writer = self._writer, None
        if conn is not None and not conn.closed:
            await conn.close()

    async def reader(self) -> AsyncConnection:
        while self._readers:
            conn = self._readers.pop()
            if _reusable(conn):
                return conn
            await conn.close()
        conn = await self._engine.connect()
        await conn.execution_options(**{READONLY_OPTION: True})
        return conn

    async def done_reading(self, conn: AsyncConnection, *, failed: bool = False) -> None:
        if not failed and len(self._readers) < self._idle_readers and _reusable(conn):
            self._readers.append(conn)
        elif not conn.closed:
            await conn.close()

    async def close(self) -> None:
        kept = [*self._readers, *([self._writer] if self._writer is not None else [])]
        self._readers, self._writer = [], None
        for conn in kept:
            if not conn.closed:
                await conn.close()


def _reusable(conn: AsyncConnection) -> bool:
    """Open, and in no transaction as far as SQLAlchemy or SQLite can tell."""
    if conn.closed or conn.invalidated or conn.in_transaction():
        return False
    raw = conn.sync_connection.connection.driver_connection if conn.sync_connection else None
    return raw is not None and not raw.in_transaction
