"""Sign-in throttling: wrong passwords are counted per account and per address; past the
limit, attempts are refused with 429 and Retry-After until the window has passed."""

from __future__ import annotations

import httpx
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.identity.throttle import LoginThrottle, login_keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limit_holds_for_the_window_then_lifts() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window_seconds=60, clock=clock)
    keys = login_keys("Ann@Example.com", "10.1.2.3")
    for _ in range(3):
        assert throttle.retry_after(keys) is None
        throttle.failed(keys)
        clock.now += 1
    wait = throttle.retry_after(keys)
    assert wait is not None and 57 <= wait <= 58
    # The account is throttled from any address, and the address for any account.
    assert throttle.retry_after(login_keys("ann@example.com", "192.0.2.9")) is not None
    assert throttle.retry_after(login_keys("bob@example.com", "10.1.2.3")) is not None
    clock.now += 60
    assert throttle.retry_after(keys) is None


def test_a_right_password_clears_the_account_but_not_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=2, window_seconds=60, clock=clock)
    ann = login_keys("ann@example.com", "10.1.2.3")
    throttle.failed(ann)
    throttle.failed(ann)
    throttle.succeeded(ann[0])
    assert throttle.retry_after([ann[0]]) is None
    assert throttle.retry_after([ann[1]]) is not None


async def test_the_token_route_refuses_guessing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.login_throttle = LoginThrottle(max_failures=3, window_seconds=600)
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
    ctx.login_throttle = LoginThrottle(max_failures=3, window_seconds=600)
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
