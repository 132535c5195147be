"""Helpers the tests share (importable as `tests.support`)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from docuhooks.context import AppContext
from docuhooks.core.clock import SystemClock
from docuhooks.identity import service as identity
from docuhooks.store.schema import sites
from docuhooks.store.scoped import lock_site

T = TypeVar("T")


@dataclass(frozen=True)
class SiteUsers:
    """A site with one user per role, and each user's API token and login name (only the
    SiteAdministrator has a password: "correct horse battery")."""

    site_id: str
    tokens: dict[str, str]
    user_ids: dict[str, str]
    logins: dict[str, str]

    def auth(self, role: str = "SiteAdministrator") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def login(self, role: str) -> str:
        return self.logins[role]


ROLES = ("SiteAdministrator", "IntegrationAdministrator", "User")


async def make_site(ctx: AppContext, name: str = "Acme") -> SiteUsers:
    tag = uuid.uuid4().hex[:8]
    async with ctx.db.transaction() as conn:
        site_id = await identity.create_site(
            conn, name=f"{name} {tag}", base_url=f"https://{tag}.example", now=ctx.now()
        )
        tokens, users, logins = {}, {}, {}
        for role in ROLES:
            login = logins[role] = f"{role.lower()}-{tag}@example.com"
            users[role] = await identity.create_user(
                conn,
                site_id=site_id,
                login_name=login,
                name=f"{role} {tag}",
                roles=[role],
                password="correct horse battery" if role == "SiteAdministrator" else None,
                now=ctx.now(),
            )
            tokens[role] = await identity.create_token(conn, login_name=login, now=ctx.now())
    return SiteUsers(site_id, tokens, users, logins)


class LiveServer:
    """The real app on a real socket (uvicorn in a thread), for end-to-end tests over HTTP."""

    def __init__(self, ctx: AppContext, *, components: list[Any] | None = None) -> None:
        import socket

        from docuhooks.app import create_app

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(ctx, components=components, migrate=True)
        self._thread: threading.Thread | None = None
        self._server: Any = None

    def __enter__(self) -> LiveServer:
        import uvicorn

        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        assert self._thread is not None
        self._thread.join(timeout=20)


class MovedClock(SystemClock):
    """The system clock with its wall time moved (`ctx.clock = MovedClock(...)`): set to a
    fixed moment, or shifted by an offset from the real time. Durations and sleeps stay
    real, so the background parts keep running as they do in production."""

    def __init__(self, at: datetime | None = None, *, shift: timedelta = timedelta()) -> None:
        self.at = at
        self.shift = shift

    def now(self) -> datetime:
        return (self.at if self.at is not None else super().now()) + self.shift


def debian_program(name: str, *, package: str | None = None) -> str:
    """The path of a program from a Debian package that tests start (tinyproxy, pgbouncer).
    Missing, the test skips, or fails where `DOCUHOOKS_REQUIRE_POSTGRES=1` (CI, which
    installs it)."""
    found = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}") if os.path.exists(p)), None
    )
    if found is None:
        problem = f"{name} is not installed (apt-get install {package or name})"
        if os.environ.get("DOCUHOOKS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"DOCUHOOKS_REQUIRE_POSTGRES=1 (CI) but {problem}")
        pytest.skip(problem)
    return found


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def racing_at_the_site_lock(
    ctx: AppContext,
    site_id: str,
    *attempts: Callable[[], Coroutine[Any, Any, T]],
    in_turn: bool = False,
) -> list[T]:
    """PostgreSQL: start `attempts` together while the test holds `site_id`'s lock
    (`lock_site`) and its row `FOR UPDATE`, let them go once each of them waits for a lock,
    and return their results in order. `in_turn`: start each once the ones before it wait,
    so that they queue for the site's lock in that order (PostgreSQL grants a lock to its
    waiters first come, first served).

    Those locks keep out both the site's lock and any row referring to the site (an
    insert's foreign key check): an attempt that counts under the site's lock waits
    before it counts, while one that counts without it counts, then waits to write. So when
    they are let go, attempts that count under the lock count one after the other, and
    attempts that do not have all counted before any wrote. The bound only turns a hang into
    a failure."""
    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        await holder.execute(sa.select(sites.c.id).where(sites.c.id == site_id).with_for_update())
        await lock_site(holder, site_id)
        tasks: list[asyncio.Task[T]] = []
        for group in [[a] for a in attempts] if in_turn else [list(attempts)]:
            tasks += [asyncio.create_task(attempt()) for attempt in group]
            await until_waiting_for_locks(ctx, tasks)
        await holder.commit()
    return list(await asyncio.gather(*tasks))


async def until_waiting_for_locks(ctx: AppContext, tasks: Sequence[asyncio.Task[Any]]) -> None:
    """PostgreSQL: return once as many connections of the test's database wait for a lock as
    there are `tasks`; fail if one of them finishes first (it did not wait). The bound only
    turns a hang into a failure."""
    async with asyncio.timeout(30), ctx.db.engine.connect() as watcher:
        while True:
            # A fresh view of the server's activity each time (it is read once per
            # transaction). The second in line for a row waits for the first, not for
            # the holder: count every connection waiting for a lock.
            await watcher.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            waiting = (
                await watcher.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            ).scalar_one()
            if waiting >= len(tasks):
                return
            for task in tasks:
                if task.done():  # it wrote nothing the holder holds, or failed on its way
                    raise AssertionError(f"an attempt finished without waiting: {task.result()}")
            await asyncio.sleep(0.01)


@asynccontextmanager
async def statements_run(ctx: AppContext) -> AsyncIterator[list[str]]:
    """The SQL statements run through `ctx`'s store meanwhile, in order."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = ctx.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
