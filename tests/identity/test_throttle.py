"""Sign-in throttling: wrong passwords are counted per account and per address; past the
limit, attempts are refused with 429 and Retry-After until the window has passed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.identity.secrets import SecretBox
from docuhooks.identity.throttle import LoginThrottle, login_keys
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.store.schema import sign_in_failures


def Clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))


async def test_the_limit_holds_for_the_window_then_lifts(ctx: AppContext) -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=60, clock=clock)
    keys = login_keys("Ann@Example.com", "10.1.2.3")
    for _ in range(3):
        assert await throttle.retry_after(ctx.db, keys) is None
        await throttle.failed(ctx.db, keys)
        clock.advance(1)
    assert await throttle.retry_after(ctx.db, keys) == 57
    # The account is throttled from any address, and the address for any account.
    assert await throttle.retry_after(ctx.db, login_keys("ann@example.com", "192.0.2.9"))
    assert await throttle.retry_after(ctx.db, login_keys("bob@example.com", "10.1.2.3"))
    clock.advance(57)
    assert await throttle.retry_after(ctx.db, keys) is None


async def test_more_failures_than_the_limit_keep_it_until_enough_have_passed(
    ctx: AppContext,
) -> None:
    """Processes racing past the limit add failures beyond it; the throttle lifts only when
    fewer than the limit are left in the window."""
    clock = Clock()
    throttle = LoginThrottle(max_failures=2, window_seconds=60, clock=clock)
    keys = login_keys("ann@example.com", None)
    for _ in range(4):
        await throttle.failed(ctx.db, keys)
        clock.advance(10)
    # Failures at 0, 10, 20, 30 s; now 40 s: the limit lifts once the one at 20 s is past.
    assert await throttle.retry_after(ctx.db, keys) == 40


async def test_a_right_password_clears_the_account_but_not_the_address(ctx: AppContext) -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=2, window_seconds=60, clock=clock)
    ann = login_keys("ann@example.com", "10.1.2.3")
    await throttle.failed(ctx.db, ann)
    await throttle.failed(ctx.db, ann)
    await throttle.succeeded(ctx.db, ann[0])
    assert await throttle.retry_after(ctx.db, [ann[0]]) is None
    assert await throttle.retry_after(ctx.db, [ann[1]]) is not None


async def test_a_sign_in_with_no_wrong_passwords_writes_nothing(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual sign-in follows no failure: it must not take the write lock (on SQLite it
    would queue behind the delivery worker's writes) to delete nothing."""
    writes = 0
    transaction = ctx.db.transaction

    def counted(**kwargs: Any) -> Any:
        nonlocal writes
        writes += 1
        return transaction(**kwargs)

    monkeypatch.setattr(ctx.db, "transaction", counted)
    throttle = LoginThrottle(max_failures=2, window_seconds=60, clock=Clock())
    ann, bob = login_keys("ann@example.com", "10.1.2.3"), login_keys("bob@example.com", None)
    await throttle.failed(ctx.db, bob)
    writes = 0
    await throttle.succeeded(ctx.db, ann[0])
    assert writes == 0
    await throttle.succeeded(ctx.db, bob[0])  # bob's failure is cleared: that one writes
    assert writes == 1
    async with ctx.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(sign_in_failures)) == 0


async def test_failures_past_the_window_are_deleted(ctx: AppContext) -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=5, window_seconds=60, clock=clock)
    await throttle.failed(ctx.db, login_keys("ann@example.com", "10.1.2.3"))
    clock.advance(61)
    await throttle.failed(ctx.db, login_keys("bob@example.com", None))
    async with ctx.db.read() as conn:
        kept = (await conn.execute(sa.select(sign_in_failures.c.key))).scalars().all()
    assert kept == ["login:bob@example.com"]


async def test_every_process_on_the_database_counts_the_same_failures(
    ctx: AppContext, settings: Settings
) -> None:
    """Two processes (two contexts with their own throttles and connections) behind a load
    balancer: wrong passwords sent to either count against both."""
    other = AppContext(
        settings=settings,
        db=Database.from_url(settings.resolved_database_url),
        box=SecretBox(settings.secret_key),
    )
    try:
        here = LoginThrottle(max_failures=4, window_seconds=600)
        there = LoginThrottle(max_failures=4, window_seconds=600)
        keys = login_keys("ann@example.com", "10.1.2.3")
        for throttle, db in [(here, ctx.db), (there, other.db)] * 2:
            await throttle.failed(db, keys)
        assert await here.retry_after(ctx.db, keys) is not None
        assert await there.retry_after(other.db, keys) is not None
    finally:
        await other.close()


async def test_the_token_route_refuses_guessing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    clock = Clock()
    ctx.login_throttle = LoginThrottle(max_failures=3, window_seconds=600, clock=clock)
    login = {"loginName": "nobody@example.com", "password": "wrong-password"}
    for _ in range(3):
        assert (await client.post("/api/v1/auth/tokens", json=login)).status_code == 401
    refused = await client.post("/api/v1/auth/tokens", json=login)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert 590 <= int(refused.headers["Retry-After"]) <= 600
    # Past the limit a right password is refused too: guessing gains nothing.
    right = {"loginName": site.login("SiteAdministrator"), "password": "correct horse battery"}
    assert (await client.post("/api/v1/auth/tokens", json=right)).status_code == 429
    clock.advance(600)  # the window has passed
    assert (await client.post("/api/v1/auth/tokens", json=right)).status_code == 201


async def test_the_admin_ui_refuses_guessing(ctx: AppContext, client: httpx.AsyncClient) -> None:
    ctx.login_throttle = LoginThrottle(max_failures=2, window_seconds=600)
    page = await client.get("/ui/login")
    statuses = []
    for _ in range(3):
        # Each login page carries a fresh CSRF token of its own.
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        fields = {"login_name": "nobody@example.com", "password": "wrong", "csrf_token": csrf}
        page = await client.post("/ui/login", data=fields)
        statuses.append(page.status_code)
    assert statuses == [401, 401, 429]
    assert "try again in 10 minute(s)" in page.text
