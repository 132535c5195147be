"""The admin UI in real Chromium (Debian's `/usr/bin/chromium`, driven by Playwright) against
the real server on a socket, with the in-process worker delivering to a real receiver on
loopback: an administrator's session from signing in to deleting the webhook.

Without Chromium this skips and says why, except in CI (`CI=true`) or with
`DOCUHOOKS_REQUIRE_BROWSER=1`, where a missing browser is a failure."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from tests.support import LiveServer
from tests.ui.browser_support import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_chromium
from tests.ui.ui_support import PASSWORD, make_user

from docuhooks.context import AppContext
from docuhooks.delivery.worker import start_worker
from docuhooks.identity import service as identity
from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings
from docuhooks.store.database import Database

pytestmark = pytest.mark.slow


class Receiver:
    """A webhook receiver on loopback that answers 200 and keeps what it was sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        received = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                received.append({"headers": dict(self.headers), "body": body})
                reply = json.dumps({"received": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/docs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _context(settings: Settings) -> AppContext:
    return AppContext(
        settings=settings,
        db=Database.from_url(settings.resolved_database_url),
        box=SecretBox(settings.secret_key),
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[LiveServer, str, str]]:
    """The server on SQLite with its worker, an integration administrator's login name and a
    site administrator's."""
    require_chromium()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'docuhooks.db'}",
        secret_key="browser-test-secret-key-0123456789",
        base_url="http://127.0.0.1",
        dev_mode=True,  # lets the worker reach the receiver on loopback
        log_json=False,
    )

    async def bootstrap() -> tuple[str, str]:
        ctx = _context(settings)
        await ctx.db.upgrade()
        try:
            async with ctx.db.transaction() as conn:
                site_id = await identity.create_site(
                    conn, name="Acme Legal", base_url="http://127.0.0.1", now=ctx.now()
                )
            return (
                await make_user(ctx, site_id, "IntegrationAdministrator"),
                await make_user(ctx, site_id, "SiteAdministrator"),
            )
        finally:
            await ctx.db.dispose()

    login, site_admin = asyncio.run(bootstrap())
    with LiveServer(_context(settings), components=[start_worker]) as server:
        yield server, login, site_admin


def _claims(call: dict[str, Any], secret: str) -> dict[str, Any]:
    """The claims of an HMAC call's JWT, verified with `secret`."""
    token = parse_qs(call["body"])["token"][0]
    claims: dict[str, Any] = jwt.decode(
        token, secret, algorithms=["HS256"], options={"verify_aud": False}
    )
    return claims


def test_an_administrators_session(live: tuple[LiveServer, str, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, login, site_admin = live
    expect.set_options(timeout=WAIT_MS)  # the delivery list refreshes every 5 s
    problems: list[str] = []
    with Receiver() as receiver, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        # A CSP violation or a script error shows up here: the page must produce none.
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "response",
            lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )

        # Signing in: the server's address leads to the login page, and back after it.
        page.goto(server.url + "/")
        expect(page).to_have_url(f"{server.url}/ui/login?next=%2Fui%2F")
        page.get_by_label("Login name (email)").fill(login)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
        expect(page.get_by_text("No webhooks yet.")).to_be_visible()

        # Creating: the secret is shown once and copies to the clipboard.
        page.get_by_role("link", name="New webhook").click()
        page.get_by_label("Name (required)").fill("Archive")
        page.get_by_label("URL (required)").fill(receiver.url)
        page.get_by_label("Event type").select_option("NewWorkItemVersionComplete")
        page.get_by_role("button", name="Create webhook").click()
        expect(
            page.get_by_text("Store this secret now: it will not be shown again.")
        ).to_be_visible()
        page.screenshot(path=str(tmp_path / "secret-once.png"), full_page=True)
        secret = page.locator("#secret").input_value()
        assert len(secret) >= 32
        page.get_by_role("button", name="Copy secret").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == secret
        page.get_by_role("link", name="I have stored it: go to the webhook").click()
        expect(page.get_by_role("heading", name="Archive", exact=True)).to_be_visible()
        assert secret not in page.content()

        # Deactivating and activating happen in place: the page is not reloaded.
        page.evaluate("window.stillTheSamePage = true")
        page.get_by_role("button", name="Deactivate webhook").click()
        expect(page.locator("#status-panel .badge")).to_have_text("inactive")
        page.get_by_role("button", name="Activate webhook").click()
        expect(page.locator("#status-panel .badge")).to_have_text("active")
        assert page.evaluate("window.stillTheSamePage") is True

        # A test event goes through the worker to the receiver, and the list refreshes itself.
        page.get_by_role("button", name="Send test event").click()
        expect(page.get_by_text("Test event queued")).to_be_visible()
        expect(page.locator("#deliveries .delivery-succeeded")).to_have_count(1)
        assert page.evaluate("window.stillTheSamePage") is True
        page.screenshot(path=str(tmp_path / "webhook.png"), full_page=True)
        assert len(receiver.calls) == 1
        first = _claims(receiver.calls[0], secret)  # the shown secret verifies the call
        assert first["test"] is True

        # The site's events: the test event, its payload, and where it went.
        page.get_by_role("link", name="Events", exact=True).click()
        expect(page.get_by_role("heading", name="Events")).to_be_visible()
        page.locator("table.list tbody a").first.click()
        expect(page.get_by_role("heading", name="Where it went")).to_be_visible()
        expect(page.locator("pre.body")).to_contain_text(first["eventId"])
        expect(page.get_by_role("link", name="Archive")).to_be_visible()

        page.goto(server.url + "/ui/")
        expect(page.get_by_role("link", name="Archive")).to_be_visible()
        page.screenshot(path=str(tmp_path / "webhook-list.png"), full_page=True)

        # One delivery's attempts, then redelivery (same event, a new delivery).
        page.get_by_role("link", name="Archive").click()
        page.locator("#deliveries tbody a").first.click()
        expect(page.get_by_role("heading", name="Attempt 1: HTTP 200")).to_be_visible()
        page.get_by_text("Request headers").click()
        expect(page.locator("table.headers").first).to_contain_text("User-Agent")
        expect(page.locator("pre.body")).to_contain_text('"received": true')
        assert secret not in page.content()
        page.screenshot(path=str(tmp_path / "delivery-attempts.png"), full_page=True)
        page.get_by_role("button", name="Redeliver event").click()
        expect(page.get_by_text("The event is queued again as a new delivery")).to_be_visible()
        for _ in range(100):
            if len(receiver.calls) >= 2:
                break
            page.wait_for_timeout(200)
        assert len(receiver.calls) == 2
        assert _claims(receiver.calls[1], secret)["eventId"] == first["eventId"]

        # Deleting asks first.
        page.get_by_role("link", name="Archive").click()
        page.get_by_role("link", name="Delete webhook").click()
        expect(page.get_by_text("This cannot be undone.")).to_be_visible()
        page.get_by_role("button", name="Delete webhook Archive").click()
        expect(page.get_by_text("Webhook deleted.")).to_be_visible()
        expect(page.get_by_text("No webhooks yet.")).to_be_visible()

        # A new password from the account page, then signing in with it.
        page.locator("a.who").click()
        expect(page.get_by_role("heading", name="Your account")).to_be_visible()
        page.get_by_label("Current password", exact=True).fill(PASSWORD)
        page.get_by_label("New password", exact=True).fill("a brand new password")
        page.get_by_label("New password, again", exact=True).fill("a brand new password")
        page.get_by_role("button", name="Change password").click()
        expect(page.get_by_text("Your password is changed.")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("Login name (email)").fill(login)
        page.get_by_label("Password").fill("a brand new password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()

        # A site administrator adds a person, who then signs in with the password given.
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("Login name (email)").fill(site_admin)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Users", exact=True).click()
        page.get_by_role("link", name="New user").click()
        page.get_by_label("Login name (an email address)").fill("sam@example.com")
        page.get_by_label("Name", exact=True).fill("Sam Okafor")
        page.get_by_label("IntegrationAdministrator").check()
        page.get_by_label("User", exact=True).uncheck()
        page.get_by_label("Password", exact=True).fill("sam's first password")
        page.get_by_role("button", name="Create user").click()
        expect(page.get_by_text("User created.")).to_be_visible()
        expect(page.get_by_role("heading", name="Sam Okafor")).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("Login name (email)").fill("sam@example.com")
        page.get_by_label("Password").fill("sam's first password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()

        browser.close()
    assert problems == []
