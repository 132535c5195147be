"""Shared fixtures. Integration tests run against both stores: a real SQLite file and the real
PostgreSQL server (DOCUHOOKS_TEST_POSTGRES_URL, default 127.0.0.1:5432). Without a server the
PostgreSQL half skips with the reason; with DOCUHOOKS_REQUIRE_POSTGRES=1 (as in CI) it fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.support import SiteUsers, make_site

from docuhooks import logs, tracing
from docuhooks.app import create_app
from docuhooks.context import AppContext
from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.store.schema import metadata

POSTGRES_ADMIN_URL = os.environ.get(
    "DOCUHOOKS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("DOCUHOOKS_REQUIRE_POSTGRES") == "1"


def _postgres_available() -> str | None:
    """None if the server answers, else why not."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable: {exc}"
    return None


@contextlib.contextmanager
def new_postgres_database(prefix: str) -> Iterator[str]:
    """An empty PostgreSQL database of its own (its URL), dropped afterwards; skips with the
    reason where there is no server, or fails where one is required."""
    problem = _postgres_available()
    if problem:
        if REQUIRE_POSTGRES:
            pytest.fail(f"DOCUHOOKS_REQUIRE_POSTGRES=1 but {problem}")
        pytest.skip(problem)
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of its own for this test session, dropped at the end."""
    with new_postgres_database("docuhooks_test") as url:

        async def migrate() -> None:
            db = Database.from_url(url)
            await db.upgrade()
            await db.dispose()

        asyncio.run(migrate())
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each integration test runs once per store."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'docuhooks.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    yield url

    async def truncate() -> None:
        db = Database.from_url(url)
        async with db.transaction() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
        await db.dispose()

    asyncio.run(truncate())


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        secret_key="test-secret-key-0123456789",
        base_url="http://testserver",
        dev_mode=True,
        log_json=False,
    )


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    db = Database.from_url(settings.resolved_database_url)
    await db.upgrade()
    context = AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))
    yield context
    if context.render_pool_override is not None:
        await context.render_pool_override.close()
    await db.dispose()


@pytest.fixture
async def client(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """An API client speaking ASGI in-process (no socket), for fast route tests."""
    app = create_app(ctx, migrate=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def site(ctx: AppContext) -> SiteUsers:
    return await make_site(ctx)


@pytest.fixture
async def other_site(ctx: AppContext) -> SiteUsers:
    return await make_site(ctx, "Other")


@pytest.fixture(autouse=True)
def process_wide_logging_and_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with structlog's defaults and tracing off, as a new process does. A
    command run in-process (`serve`, `worker`) configures logging for the whole process, at
    `info`: a later test that captured a debug line (a successful delivery's) saw none. So
    logging is reset after every test, and tracing too. `OTEL_*` (a developer's shell) are
    unset: with them a command would set OpenTelemetry's tracer provider, which a process can
    set once only and no test could undo."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    yield
    logs.reset()
    tracing.use_provider(None)
