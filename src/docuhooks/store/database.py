"""The `Database`: an async engine over SQLite or PostgreSQL, its transactions and migrations.

SQLite is the embedded default: one file in WAL mode, every write transaction `BEGIN
IMMEDIATE` so concurrent writers queue instead of failing on a lock upgrade. Statements run
on the event loop's thread (`sqlite_inline`: no thread hop per statement) and a background
thread checkpoints the WAL. Writers in one process queue on an in-process FIFO lock before
they ask SQLite; a writer of another process holding the lock is waited for with
`asyncio.sleep`, never by blocking the loop.
PostgreSQL is for scale-out: many processes, row claims with `FOR UPDATE SKIP LOCKED`.

Behind a pooler in transaction mode (PgBouncer's `pool_mode = transaction`), consecutive
transactions of one client connection may run on different server connections, so nothing
may outlive a transaction: `POOLERS` says how the engine is then set up (no named prepared
statement kept, `Database.listen_dsn` names no connection to `LISTEN` on unless a direct one
is configured, migrations run on the direct connection when there is one). The code keeps no
session state anywhere (docs/design.md, "PostgreSQL session state").
"""

from __future__ import annotations

import asyncio
import random
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from docuhooks.core import jsontext
from docuhooks.core.database_url import KEPT_IN_URL, connect_args, read_url, same_server
from docuhooks.settings import DATABASE_POOLERS
from docuhooks.store import postgres_connections, sqlite_inline
from docuhooks.store.private_files import create_private_file, make_private_dir

Dialect = Literal["sqlite", "postgresql"]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: The advisory lock key migrations take on PostgreSQL ("dhmigrat" as a 64-bit number).
_MIGRATION_LOCK = int.from_bytes(b"dhmigrat", "big") - 2**63
#: What stands between docuhooks and PostgreSQL (`database_pooler`): nothing, or a pooler
#: that hands each transaction whichever server connection is free.
POOLERS = DATABASE_POOLERS


class DirectConnectionNeeded(RuntimeError):
    """A pending migration cannot run through a pooler in transaction mode."""


def normalize_url(url: str) -> str:
    """Accept the URLs people write (`postgresql://…`, `sqlite:///…`) and pick the async driver.

    A PostgreSQL URL keeps only the query parameters SQLAlchemy reads itself (the host and
    port): the others reach the driver as `connect_args(url)`, under the names it takes."""
    parsed = read_url(url)
    backend = parsed.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        kept = {name: value for name, value in parsed.query.items() if name in KEPT_IN_URL}
        parsed = parsed.set(drivername="postgresql+asyncpg", query=kept)
        return parsed.render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+docuhooks").render_as_string(hide_password=False)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:///path or postgresql://…")


def sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names (None for PostgreSQL or an in-memory database)."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def display_url(url: str) -> str:
    """The URL as people may see it: without its password."""
    return make_url(url).render_as_string(hide_password=True)


_T = TypeVar("_T")

#: SQLSTATEs of a transaction PostgreSQL aborted to let another go on: a deadlock, a
#: serialization failure.
_CONFLICT_STATES = frozenset({"40P01", "40001"})


def sqlstate(exc: sa_exc.DBAPIError) -> str | None:
    """The SQLSTATE the server gave for `exc` (asyncpg's or psycopg's name for it), if any."""
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state if isinstance(state, str) else None


def _aborted_by_a_conflict(exc: sa_exc.DBAPIError) -> bool:
    """Whether PostgreSQL aborted the transaction to end a deadlock or a serialization
    failure: it is safe, and usually enough, to run it again."""
    return sqlstate(exc) in _CONFLICT_STATES


class Database:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        url: str = "",
        checkpointer: sqlite_inline.Checkpointer | None = None,
        pooler: str = "none",
        listen_url: str = "",
        direct_url: str = "",
    ) -> None:
        self.engine = engine
        #: The URL as given, its query parameters too (the engine's URL has only the host
        #: and port ones): what a `LISTEN` connection to the same server connects with.
        self._url = url or engine.url.render_as_string(hide_password=False)
        self._checkpointer = checkpointer
        self.pooler = pooler
        #: A direct connection (not through the pooler) for `LISTEN`, and for migrations.
        self._listen_url = listen_url
        self._direct_url = direct_url
        backend = engine.dialect.name
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported dialect {backend}")
        self.dialect: Dialect = backend  # type: ignore[assignment]
        # On SQLite: the writers' lock and the connections kept between transactions, one set
        # per event loop: an asyncio.Lock belongs to the loop it first waits on, and tests
        # (and `asyncio.run` twice in a CLI) may use one Database from several.
        self._kept: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, sqlite_inline.KeptConnections
        ] = weakref.WeakKeyDictionary()
        # On PostgreSQL: the connections `transaction` and `autocommit` keep out of the pool
        # between units of work (`postgres_connections`), per event loop too, since an
        # asyncpg connection belongs to the loop that opened it.
        self._postgres_kept: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _KeptByKind] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        sqlite_synchronous: str = "normal",
        pooler: str = "none",
        listen_url: str = "",
        direct_url: str = "",
    ) -> Database:
        """`sqlite_synchronous` is SQLite's durability (`normal` or `full`, see
        `sqlite_inline.configure_connection`); PostgreSQL ignores it. `pooler` is what
        `url` goes through (`POOLERS`); `listen_url` and `direct_url` reach PostgreSQL
        directly, for `LISTEN` and for migrations (each defaults to the other)."""
        if sqlite_synchronous not in sqlite_inline.SYNCHRONOUS:
            raise ValueError(
                f"sqlite_synchronous must be one of {', '.join(sqlite_inline.SYNCHRONOUS)}, "
                f"not {sqlite_synchronous!r}"
            )
        if pooler not in POOLERS:
            raise ValueError(f"database_pooler must be one of {', '.join(POOLERS)}, not {pooler!r}")
        for name, other in (
            ("database_listen_url", listen_url),
            ("database_direct_url", direct_url),
        ):
            if other and make_url(normalize_url(other)).get_backend_name() != "postgresql":
                raise ValueError(f"{name} must be a postgresql:// URL")
            if other and pooler == "transaction" and same_server(other, url):
                # A LISTEN through the pooler hears nothing, and a migration through it may
                # be split across server connections: the pooler's own address is a mistake.
                raise ValueError(
                    f"{name} is database_url's address, which database_pooler = transaction "
                    "says is the pooler; give PostgreSQL's own address (or leave it empty)"
                )
        async_url = normalize_url(url)
        driver_args = connect_args(url)
        kwargs: dict[str, Any] = {}
        checkpointer = None
        if async_url.startswith("sqlite"):
            path = make_url(async_url).database
            if path and path != ":memory:":
                # Created here, 0600, before SQLite opens it: SQLite gives its -wal, -shm and
                # journal files the database file's own mode, so they are private too.
                make_private_dir(Path(path).parent)
                create_private_file(Path(path))
                checkpointer = sqlite_inline.Checkpointer(path)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size)
            if pooler == "transaction":
                driver_args.update(_transaction_pooler_args())
            kwargs["connect_args"] = driver_args
        # JSON columns (events, attempts, answers) are written with orjson: see `jsontext`.
        engine = create_async_engine(async_url, json_serializer=jsontext.dumps, **kwargs)
        if engine.dialect.name == "sqlite":
            engine = sqlite_inline.InlineAsyncEngine(engine.sync_engine)
            _configure_sqlite(engine, checkpointer, sqlite_synchronous)
        else:
            postgres_connections.check_liveness_on_checkout(engine)
        return cls(
            engine,
            url=url,
            checkpointer=checkpointer,
            pooler=pooler,
            listen_url=listen_url or direct_url,
            direct_url=direct_url or listen_url,
        )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def listen_dsn(self) -> str | None:
        """The `postgresql://` URL a `LISTEN` connection opens, with its query parameters as
        written (`notify.ChannelListener` gives them to asyncpg as the engine's are given),
        or None where there is none: on SQLite, and behind a pooler in transaction mode
        without a direct URL (the pooler would hand the `LISTEN` to whichever server
        connection is free, and the notifications would go nowhere); the callers then
        poll."""
        if self.is_sqlite:
            return None
        if self._listen_url:
            url = read_url(self._listen_url)
        elif self.pooler == "transaction":
            return None
        else:
            url = read_url(self._url)
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """One unit of work: committed when the block ends, rolled back if it raises.

        On SQLite, write transactions of this process run one at a time, first come first
        served, except that an `urgent` one (the delivery worker's claim) goes before those
        still waiting; a transaction must not open another inside itself (it would wait
        forever, as it would wait on SQLite's lock without this one).
        """
        if not self.is_sqlite:
            async with self._postgres_transaction() as conn:
                yield conn
            return
        kept = self._kept_connections()
        async with kept.write_lock.hold(urgent=urgent):
            conn = await kept.writer()
            try:
                async with conn.begin():
                    yield conn
            except BaseException:
                await kept.writer_failed()
                raise

    async def retried(
        self, work: Callable[[AsyncConnection], Awaitable[_T]], *, attempts: int = 5
    ) -> _T:
        """`work` in a transaction of its own, run again from the start (up to `attempts`
        times in all) when PostgreSQL aborted it to end a deadlock or a serialization
        failure: nothing of it was committed, and running it again is what its caller would
        do. For work that takes rows other writers take in another order, such as an
        administrator's change to a webhook and its deliveries beside workers recording
        their outcomes (a delivery's row, its webhook's, and for a resumed webhook its other
        deliveries'): no one order keeps clear of all of them. `work` must do nothing
        outside the transaction that a second run would repeat wrongly."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction() as conn:
                    return await work(conn)
            except sa_exc.DBAPIError as exc:
                if attempt == attempts or not _aborted_by_a_conflict(exc):
                    raise
            # The other side is finishing: a short, spread wait, so two retried ones do not
            # meet again in step.
            await asyncio.sleep(random.uniform(0.0, 0.02 * attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    @asynccontextmanager
    async def autocommit(self, *, urgent: bool = False) -> AsyncIterator[AsyncConnection]:
        """For work that is a single statement, atomic by itself: on PostgreSQL it runs with
        no transaction around it, sparing the BEGIN and COMMIT round trips (each statement
        commits on its own, so never use it for two that belong together). On SQLite it is
        `transaction(urgent=…)`, where a transaction costs no round trip, and so it is
        behind a pooler in transaction mode, where SQLAlchemy's prepared statement (which it
        always names) and its execution, outside a transaction, may reach two different
        server connections.
        """
        if self.is_sqlite or self.pooler == "transaction":
            async with self.transaction(urgent=urgent) as conn:
                yield conn
            return
        async with self._postgres_connections().autocommit.lent() as conn:
            yield conn

    async def warm_up(self, connections: int) -> None:
        """On PostgreSQL, open up to `connections` pooled connections now, together, so the
        first requests after start-up do not each wait for one (a new connection costs
        several round trips: TCP, authentication, the driver's type set-up). Nothing to do on
        SQLite. Opened connections stay in the pool; if the server refuses, the first
        requests connect as they would have."""
        if self.is_sqlite or connections < 1:
            return
        wanted = min(connections, self.engine.pool.size())  # type: ignore[attr-defined]
        opened = [self.engine.connect() for _ in range(wanted)]
        try:
            await asyncio.gather(*(conn.start() for conn in opened))
        finally:
            await asyncio.gather(*(conn.close() for conn in opened), return_exceptions=True)

    @asynccontextmanager
    async def _postgres_transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on a kept connection (`postgres_connections`), which goes back to
        be kept only if the transaction committed."""
        async with self._postgres_connections().transactions.lent() as conn, conn.begin():
            yield conn

    def _postgres_connections(self) -> _KeptByKind:
        loop = asyncio.get_running_loop()
        kept = self._postgres_kept.get(loop)
        if kept is None:
            kept = self._postgres_kept[loop] = _KeptByKind.of(self.engine)
        return kept

    def _kept_connections(self) -> sqlite_inline.KeptConnections:
        loop = asyncio.get_running_loop()
        kept = self._kept.get(loop)
        if kept is None:
            kept = self._kept[loop] = sqlite_inline.KeptConnections(self.engine)
        return kept

    @asynccontextmanager
    async def read(self, *, single_statement: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work: on SQLite it runs beside a writer instead of queueing.

        `single_statement`: the work is one statement, consistent by itself; on PostgreSQL it
        then runs with no transaction around it (`autocommit`), one round trip where BEGIN
        and COMMIT made it three."""
        if not self.is_sqlite and single_statement:
            async with self.autocommit() as conn:
                yield conn
            return
        if not self.is_sqlite:
            # A transaction like any other: PostgreSQL's readers never wait for writers.
            async with self._postgres_transaction() as conn:
                yield conn
            return
        kept = self._kept_connections()
        conn = await kept.reader()
        failed = True
        try:
            async with conn.begin():
                yield conn
            failed = False
        finally:
            await kept.done_reading(conn, failed=failed)

    async def upgrade(self) -> None:
        """Apply every pending migration (Alembic), as `docuhooks db upgrade` does.

        On PostgreSQL, processes starting together (several `serve` behind a load balancer)
        take turns on an advisory lock held to the end of the migration's transaction: the
        first migrates, the others then find the database at head.

        With `direct_url` the migrations run there, not through the pooler; without one,
        behind a pooler in transaction mode, they run through it (the whole upgrade is one
        transaction, which the pooler keeps on one server connection), unless a pending
        migration declares `needs_direct_connection` (DDL that cannot run in a transaction,
        such as `CREATE INDEX CONCURRENTLY`): then `DirectConnectionNeeded` names the fix."""
        if self._direct_url:
            direct = create_async_engine(
                normalize_url(self._direct_url),
                poolclass=sa.NullPool,
                connect_args=connect_args(self._direct_url),
            )
            try:
                await _upgrade(direct, needs_direct_ok=True)
            finally:
                await direct.dispose()
            return
        await _upgrade(self.engine, needs_direct_ok=self.pooler != "transaction")

    async def current_revision(self) -> str | None:
        async with self.read() as conn:
            return await conn.run_sync(_current_revision)

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(5), self.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        for kept in list(self._kept.values()):
            await kept.close()
        self._kept.clear()
        # This loop's kept connections go back to the pool, to be closed with it; another
        # loop's (one that has ended, in tests and CLIs that ran one before) cannot be used
        # from this one, and are dropped.
        kept_pg = self._postgres_kept.get(asyncio.get_running_loop())
        if kept_pg is not None:
            await kept_pg.close()
        self._postgres_kept.clear()
        await self.engine.dispose()
        if self._checkpointer is not None:
            # Off the loop: the last checkpoint may take a moment.
            await asyncio.to_thread(self._checkpointer.stop)


@dataclass(frozen=True, slots=True)
class _KeptByKind:
    """One event loop's kept PostgreSQL connections, by the kind of work they do."""

    transactions: postgres_connections.KeptConnections
    autocommit: postgres_connections.KeptConnections

    @classmethod
    def of(cls, engine: AsyncEngine) -> _KeptByKind:
        # At most half the pool's size for transactions (reads among them) and a quarter for
        # single statements: the pool opens as many again past its size, so work of the
        # other kind still finds connections beside the idle ones kept here (a pool of one
        # keeps none).
        size: int = engine.pool.size()  # type: ignore[attr-defined]
        return cls(
            transactions=postgres_connections.KeptConnections(engine, capacity=size // 2),
            autocommit=postgres_connections.KeptConnections(
                engine, capacity=size // 4, prepare=_in_autocommit
            ),
        )

    async def close(self) -> None:
        await self.transactions.close()
        await self.autocommit.close()


async def _in_autocommit(conn: AsyncConnection) -> None:
    await conn.execution_options(isolation_level="AUTOCOMMIT")


async def _upgrade(engine: AsyncEngine, *, needs_direct_ok: bool) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Transaction-scoped: the one kind of advisory lock a transaction pooler keeps.
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
            )
        needing = (
            await conn.run_sync(_needing_direct_connection)
            if engine.dialect.name == "postgresql"
            else []
        )
        if needing and not needs_direct_ok:
            raise DirectConnectionNeeded(
                f"migration {', '.join(needing)} cannot run through a connection pooler "
                "in transaction mode (database_pooler = transaction): set "
                "DOCUHOOKS_DATABASE_DIRECT_URL (database_direct_url) to a postgresql:// "
                "URL that reaches the server directly, and run `docuhooks db upgrade` "
                "(or start `docuhooks serve`) again"
            )
        if not needing:
            await conn.run_sync(_run_upgrade)
            return
    # A migration that needs the session (an index built CONCURRENTLY, outside any
    # transaction): each migration in a transaction of its own, under a session-level
    # lock, which this direct connection keeps.
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        await conn.commit()
        try:
            await conn.run_sync(_run_upgrade, per_migration=True)
        finally:
            await conn.rollback()
            await conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
            await conn.commit()


def _transaction_pooler_args() -> dict[str, Any]:
    """asyncpg behind a pooler in transaction mode: no statement cache (its named
    statements would be looked for on whichever server connection the next transaction
    gets), and SQLAlchemy's own prepared statements, which it always names, under a unique
    name each, so that two clients never collide on one server connection."""
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__docuhooks_{uuid.uuid4().hex}__",
    }


def _configure_sqlite(
    engine: AsyncEngine, checkpointer: sqlite_inline.Checkpointer | None, synchronous: str
) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Takes transaction control from the driver so the "begin" hook below decides.
        sqlite_inline.configure_connection(dbapi_conn, synchronous=synchronous)
        if checkpointer is not None:
            checkpointer.start()

    event.listen(engine.sync_engine, "begin", sqlite_inline.on_begin)


def alembic_config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run_upgrade(connection: sa.Connection, *, per_migration: bool = False) -> None:
    from alembic import command

    cfg = alembic_config(connection)
    cfg.attributes["transaction_per_migration"] = per_migration
    command.upgrade(cfg, "head")


def _needing_direct_connection(connection: sa.Connection) -> list[str]:
    """The pending migrations whose module says `needs_direct_connection = True`."""
    from alembic.script import ScriptDirectory

    current = _current_revision(connection)
    script = ScriptDirectory.from_config(alembic_config())
    return sorted(
        revision.revision
        for revision in script.iterate_revisions("heads", current)
        if getattr(revision.module, "needs_direct_connection", False)
    )


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
