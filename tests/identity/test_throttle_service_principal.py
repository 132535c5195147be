"""The service-principal sign-in is throttled per account: spelling the same account another
way (spaces around the client or principal name, its display name for its login name, the
site's name for the client's) must not give a guesser a fresh count each time."""

from __future__ import annotations

import httpx
from tests.support import SiteUsers

from docuhooks.app import create_app
from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.identity.throttle import LoginThrottle

PASSWORD = "service principal password"


async def test_respelling_the_account_does_not_reset_its_count(
    ctx: AppContext, site: SiteUsers
) -> None:
    async with ctx.db.transaction() as conn:
        await identity.create_user(
            conn,
            site_id=site.site_id,
            login_name="robot@example.com",
            name="Robot",
            roles=["User"],
            password=PASSWORD,
            account_type="ServicePrincipal",
            client_name="acme-client",
            now=ctx.now(),
        )
    ctx.login_throttle = LoginThrottle(max_failures=3, window_seconds=600)
    app = create_app(ctx, migrate=False)
    spellings = [
        ("acme-client", "robot@example.com"),
        ("acme-client ", "robot@example.com"),
        ("acme-client", " robot@example.com"),
        ("acme-client  ", "ROBOT@example.com "),
        ("acme-client", "Robot"),
        ("acme-client", "  Robot"),
    ]
    statuses = []
    # Each guess from an address of its own, as a distributed guesser's would be: only the
    # account's count can stop them.
    for number, (client_name, principal) in enumerate(spellings):
        transport = httpx.ASGITransport(app=app, client=(f"192.0.2.{number + 1}", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.post(
                "/api/v1/auth/service-principal-login",
                json={"clientName": client_name, "principalName": principal, "password": "wrong"},
            )
            statuses.append(answer.status_code)
    assert statuses == [401, 401, 401, 429, 429, 429]
