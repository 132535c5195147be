"""PostgreSQL through a real PgBouncer in transaction pooling mode (`database_pooler =
transaction`): migrations, the delivery path (outbox, claim, send, record), an interview
step and the API, with
more clients than the pooler has server connections, so that consecutive transactions of one
client land on different server connections; LISTEN only on a direct URL; a migration that
needs a direct connection says so.

The pooler is Debian's pgbouncer 1.18, which keeps no prepared statement of a client: any
statement left prepared across transactions would fail here ("prepared statement … does not
exist"), as would anything else that relies on the session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy import exc as sa_exc
from tests.conftest import new_postgres_database
from tests.delivery.delivery_support import make_webhook, queue_event
from tests.interview_hooks.hooks_support import answer_json, hook_at, make_platform, serve
from tests.pgbouncer import PgBouncer, running_pgbouncer
from tests.support import make_site

from docuhooks.answers import Answer, AnswerSet, AnswerType
from docuhooks.app import create_app
from docuhooks.cli import main
from docuhooks.context import AppContext, database_of
from docuhooks.core.clock import FakeClock
from docuhooks.core.events import EventType
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.identity.secrets import SecretBox
from docuhooks.interview_hooks import run_interview_hooks
from docuhooks.settings import Settings, SettingsError
from docuhooks.store import database as database_module
from docuhooks.store.database import Database, DirectConnectionNeeded
from docuhooks.store.schema import attempts, deliveries


@pytest.fixture
def direct_url() -> Iterator[str]:
    with new_postgres_database("docuhooks_pgbouncer") as url:
        yield url


@pytest.fixture
def bouncer(direct_url: str) -> Iterator[PgBouncer]:
    # Two server connections for the database: a dozen clients share them.
    with running_pgbouncer(direct_url, pool_size=2) as running:
        yield running


def pooled_settings(tmp_path: Path, url: str, **more: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        database_pooler="transaction",
        secret_key="test-secret-key-0123456789",
        dev_mode=True,
        log_json=False,
        **more,  # type: ignore[arg-type]
    )


@pytest.fixture
async def pooled_ctx(
    tmp_path: Path, direct_url: str, bouncer: PgBouncer
) -> AsyncIterator[AppContext]:
    """A context whose every statement goes through the pooler; migrated through it too."""
    settings = pooled_settings(tmp_path, bouncer.url_for(direct_url))
    db = database_of(settings)
    await db.upgrade()
    ctx = AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))
    yield ctx
    await db.dispose()


async def test_delivery_and_the_api_work_through_pgbouncer(pooled_ctx: AppContext) -> None:
    ctx = pooled_ctx
    assert ctx.db.listen_dsn() is None  # nothing to LISTEN on: the worker polls
    site = await make_site(ctx)
    clock = FakeClock()
    hook, _secret = await make_webhook(ctx, site, "https://receiver.example/hook")
    # Every event is a new work item version: (12 producers × 5) deliveries.
    sent: list[OutboundRequest] = []

    def receive(request: OutboundRequest) -> TransportResult:
        sent.append(request)
        return TransportResult.response(200, b"ok", {})

    ctx.transport_override = MockTransport(receive)
    worker = Worker(
        ctx,
        WorkerOptions(
            schedule=RetrySchedule(delays=(0, 10)),
            lease=timedelta(seconds=30),
            probe_interval=timedelta(minutes=10),
            suspend_after_failures=3,
            suspend_after=timedelta(minutes=5),
            poll_seconds=0.05,
        ),
        clock=clock,
        rng=random.Random(7),
        worker_id="pooled",
    )

    async def producer(n: int) -> list[str]:
        ids: list[str] = []
        for version in range(1, 6):
            _event, queued = await queue_event(
                ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{n}", version=version
            )
            ids += queued
        return ids

    # Twelve producers over two server connections, interleaved with the worker's claims.
    queued = [i for ids in await asyncio.gather(*(producer(n) for n in range(12))) for i in ids]
    delivered: list[str] = []
    while len(delivered) < len(queued):
        done = await worker.run_once()
        assert done, "the worker found nothing to deliver"
        delivered += done
    assert sorted(delivered) == sorted(queued)
    async with ctx.db.read() as conn:
        statuses = set((await conn.execute(sa.select(deliveries.c.status))).scalars())
        recorded = (await conn.execute(sa.select(sa.func.count()).select_from(attempts))).scalar()
    assert statuses == {"succeeded"}
    assert recorded == len(queued) == len(sent)

    # The API: listing deliveries, redelivering one (a transaction, then a NOTIFY).
    app = create_app(ctx, migrate=False)
    transport = httpx.ASGITransport(app=app)
    headers = site.auth()
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        pages = await asyncio.gather(
            *(http.get(f"/api/v1/webhooks/{hook}/deliveries", headers=headers) for _ in range(8))
        )
        assert {page.status_code for page in pages} == {200}
        assert len(pages[0].json()["items"]) == 50
        again = await http.post(f"/api/v1/deliveries/{queued[0]}/redeliver", headers=headers)
        assert again.status_code == 202, again.text
        one = await http.get(f"/api/v1/deliveries/{queued[0]}", headers=headers)
        assert len(one.json()["attempts"]) == 1


async def test_an_interview_step_works_through_pgbouncer(pooled_ctx: AppContext) -> None:
    ctx = pooled_ctx
    site = await make_site(ctx)
    platform = await make_platform(ctx, site)
    try:
        async with serve() as receiver:
            await hook_at(ctx, site, receiver, "/load", answer_json({"Client Name": "Jane"}))

            async def step() -> AnswerSet:
                result = await run_interview_hooks(
                    ctx,
                    principal=platform.principal,
                    event_type=EventType.INTERVIEW_LOAD_EVENT,
                    interview_id=platform.interview_id,
                    work_item=platform.work_item,
                    version_id=platform.version_id,
                    template=platform.template,
                    current_answers=AnswerSet(),
                )
                assert result.warnings == []
                return result.answers

            # Several at once, over the pooler's two server connections.
            answers = await asyncio.gather(*(step() for _ in range(6)))
    finally:
        await ctx.close_transports()
    assert answers == [AnswerSet([Answer("Client Name", AnswerType.TEXT, "Jane")])] * 6
    async with ctx.db.read() as conn:
        statuses = list((await conn.execute(sa.select(deliveries.c.status))).scalars())
    assert statuses == ["succeeded"] * 6


async def test_listen_takes_the_direct_url(
    tmp_path: Path, direct_url: str, bouncer: PgBouncer
) -> None:
    via = bouncer.url_for(direct_url)
    listening = database_of(pooled_settings(tmp_path, via, database_listen_url=direct_url))
    plain = database_of(dataclasses.replace(pooled_settings(tmp_path, via), database_pooler="none"))
    try:
        assert listening.listen_dsn() == direct_url
        # Without a pooler in transaction mode the main URL is listened on, as always.
        assert plain.listen_dsn() == via
    finally:
        await listening.dispose()
        await plain.dispose()
    with pytest.raises(SettingsError, match="DOCUHOOKS_DATABASE_POOLER"):
        database_of(dataclasses.replace(pooled_settings(tmp_path, via), database_pooler="session"))
    with pytest.raises(SettingsError, match="DOCUHOOKS_DATABASE_DIRECT_URL"):
        database_of(pooled_settings(tmp_path, via, database_direct_url="sqlite:///x.db"))


@pytest.fixture
def migrations_with_a_concurrent_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The real migrations, and after them one that builds an index CONCURRENTLY (which
    cannot run inside a transaction) and so declares `needs_direct_connection`."""
    folder = tmp_path / "migrations"
    shutil.copytree(
        database_module.MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__")
    )
    versions = folder / "versions"
    head = max(p.name.split("_", 1)[0] for p in versions.glob("[0-9]*.py"))
    (versions / "9999_concurrent_index.py").write_text(
        f'''"""an index built without blocking writes

Revision ID: 9999
Revises: {head}
"""

from alembic import op

revision = "9999"
down_revision = "{head}"
branch_labels = None
depends_on = None
needs_direct_connection = True


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("CREATE INDEX CONCURRENTLY ix_test_concurrent ON attempts (status_code)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_test_concurrent")
'''
    )
    monkeypatch.setattr(database_module, "MIGRATIONS_DIR", folder)
    yield


@pytest.mark.usefixtures("migrations_with_a_concurrent_index")
async def test_a_migration_that_needs_a_direct_connection_names_the_setting(
    tmp_path: Path, direct_url: str, bouncer: PgBouncer
) -> None:
    via = bouncer.url_for(direct_url)
    pooled = database_of(pooled_settings(tmp_path, via))
    try:
        with pytest.raises(DirectConnectionNeeded, match="DOCUHOOKS_DATABASE_DIRECT_URL") as err:
            await pooled.upgrade()
        assert "9999" in str(err.value)
        assert await pooled.current_revision() is None  # nothing half-done
    finally:
        await pooled.dispose()

    direct = database_of(pooled_settings(tmp_path, via, database_direct_url=direct_url))
    try:
        await direct.upgrade()  # on the direct connection
        assert await direct.current_revision() == "9999"
        async with direct.read() as conn:  # and the rest still through the pooler
            found = await conn.execute(
                sa.text("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_test_concurrent'")
            )
            assert found.scalar() == 1
    finally:
        await direct.dispose()


@pytest.mark.usefixtures("migrations_with_a_concurrent_index")
def test_serve_stops_with_the_same_message_when_a_migration_needs_a_direct_connection(
    tmp_path: Path, direct_url: str, bouncer: PgBouncer
) -> None:
    """`serve` migrates at start: the error is the one `db upgrade` prints (naming the
    setting), with no traceback, and it exits non-zero before it listens, its port closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    where = ["--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1", "--port", str(port)]
    result = CliRunner().invoke(
        main,
        ["serve", *where],
        env={
            "DOCUHOOKS_DATABASE_URL": bouncer.url_for(direct_url),
            "DOCUHOOKS_DATABASE_POOLER": "transaction",
            "DOCUHOOKS_DATABASE_DIRECT_URL": None,
            "DOCUHOOKS_LOG_JSON": "true",
        },
    )
    assert result.exit_code == 1, result.output
    assert "Error: migration 9999 cannot run through a connection pooler" in result.output
    assert "DOCUHOOKS_DATABASE_DIRECT_URL" in result.output
    assert "Traceback" not in result.output
    with socket.socket() as again:  # the port it had bound is free again
        again.bind(("127.0.0.1", port))


async def test_without_the_setting_pgbouncer_breaks_prepared_statements(
    direct_url: str, bouncer: PgBouncer
) -> None:
    """Why the setting exists: asyncpg's statement cache, as on a direct connection, fails
    through the pooler as soon as two clients share its server connections. Step by step,
    so that it fails every time: a statement prepared on one of the pooler's two server
    connections is run again from the cache on the other, which never had it."""
    db = Database.from_url(bouncer.url_for(direct_url))
    statement = sa.text("SELECT CAST(:n AS int)")
    try:
        async with db.engine.connect() as first, db.engine.connect() as second:
            # One client holds a server connection in its transaction...
            holding = await first.begin()
            await first.execute(sa.text("SELECT 1"))
            async with db.autocommit() as conn:
                # ...so this one's statement is prepared, and run, on the other...
                assert (await conn.execute(statement, {"n": 1})).scalar() == 1
                # ...which another client then holds, as the first lets its own go.
                async with second.begin():
                    await second.execute(sa.text("SELECT 1"))
                    await holding.commit()
                    with pytest.raises(
                        sa_exc.DBAPIError, match=r"prepared statement .* does not exist"
                    ):
                        await conn.execute(statement, {"n": 2})
    finally:
        await db.dispose()


async def test_a_worker_without_a_listen_url_polls_and_says_why(
    tmp_path: Path, direct_url: str, bouncer: PgBouncer
) -> None:
    """`docuhooks worker` through the pooler with no direct URL: no LISTEN (it would hear
    nothing), a log line naming the setting that would give it one."""
    settings = pooled_settings(tmp_path, bouncer.url_for(direct_url))
    db = database_of(settings)
    await db.upgrade()
    await db.dispose()
    env = {
        **os.environ,
        "DOCUHOOKS_DATABASE_URL": settings.database_url,
        "DOCUHOOKS_DATABASE_POOLER": "transaction",
        "DOCUHOOKS_DATA_DIR": str(settings.data_dir),
        "DOCUHOOKS_SECRET_KEY": settings.secret_key,
        "DOCUHOOKS_LOG_JSON": "true",
    }
    env.pop("DOCUHOOKS_DATABASE_LISTEN_URL", None)
    env.pop("DOCUHOOKS_DATABASE_DIRECT_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docuhooks",
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(60):
            while not any(line.get("event") == "worker.started" for line in seen):
                raw = await process.stdout.readline()
                assert raw, f"the worker exited: {seen}"
                if raw.startswith(b"{"):
                    seen.append(json.loads(raw))
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()
    (polling,) = [line for line in seen if line.get("event") == "worker.polling"]
    assert "DOCUHOOKS_DATABASE_LISTEN_URL" in str(polling["fix"])
    assert not any(line.get("event") == "listen.started" for line in seen)


def test_a_direct_url_that_is_the_pooler_itself_is_refused(tmp_path: Path) -> None:
    """A LISTEN through the pooler hears nothing and a migration through it may split across
    server connections: the same address as `database_url` is a mistake, not a direct URL."""
    via = "postgresql://app@pgbouncer.internal:6432/docuhooks"
    for setting in ("database_listen_url", "database_direct_url"):
        with pytest.raises(SettingsError, match=f"DOCUHOOKS_{setting.upper()}.*pooler"):
            database_of(pooled_settings(tmp_path, via, **{setting: via}))
    # Another address is taken as given, and without a pooler in transaction mode anything is.
    direct = "postgresql://app@db.internal:5432/docuhooks"
    database_of(pooled_settings(tmp_path, via, database_listen_url=direct))
    database_of(Settings(data_dir=tmp_path / "data", database_url=via, database_listen_url=via))
