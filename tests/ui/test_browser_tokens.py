"""API tokens in real Chromium: a person makes a token, sees it once with focus on it,
copies it, uses it, and revokes it after a confirmation."""

from __future__ import annotations

import httpx
import pytest
from tests.support import LiveServer
from tests.ui.browser_support import CHROMIUM, CHROMIUM_ARGS, WAIT_MS
from tests.ui.test_browser import live  # noqa: F401
from tests.ui.ui_support import PASSWORD

pytestmark = pytest.mark.slow


def test_a_token_is_made_shown_once_copied_used_and_revoked(
    live: tuple[LiveServer, str, str],  # noqa: F811
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, login, _ = live
    problems: list[str] = []
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright, httpx.Client(base_url=server.url) as api:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context()
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(server.url + "/ui/")
        page.get_by_label("Login name (email)").fill(login)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        page.get_by_role("link", name="Tokens", exact=True).click()
        expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
        expect(page.get_by_text("You have no API tokens.")).to_be_visible()
        # A mistake: said at the top, with the focus there, and at its field.
        page.get_by_role("button", name="Create token").click()
        expect(page.locator("#form-problems")).to_be_focused()
        expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
        page.get_by_label("Name").fill("Archive receiver")
        page.get_by_label("Expires after").select_option(label="90 days")
        page.get_by_role("button", name="Create token").click()

        # Shown once, with the focus on it so a screen reader starts there.
        heading = page.get_by_role("heading", name="Token Archive receiver created")
        expect(heading).to_be_focused()
        expect(page.get_by_text("Copy this token now: it will not be shown again.")).to_be_visible()
        token = page.get_by_label("Your new token").input_value()
        assert token.startswith("dht_")
        page.get_by_role("button", name="Copy token").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        expect(page.locator("#copy-status")).to_have_text("The token is on the clipboard.")
        assert page.evaluate("navigator.clipboard.readText()") == token
        auth = {"Authorization": f"Bearer {token}"}
        assert api.get("/api/v1/users/me", headers=auth).json()["loginName"] == login

        # Listed by name and prefix, never again in full.
        page.get_by_role("link", name="Tokens", exact=True).click()
        row = page.get_by_role("row", name="Archive receiver")
        expect(row).to_contain_text(token[:10] + "…")
        assert token not in page.content()

        # Revoking asks first, then the token stops working.
        row.get_by_role("link", name="Revoke token Archive receiver").click()
        expect(page.get_by_role("heading", name="Revoke token Archive receiver?")).to_be_visible()
        page.get_by_role("button", name="Revoke token Archive receiver").click()
        expect(page.get_by_text("Token revoked: it no longer works anywhere.")).to_be_visible()
        expect(page.get_by_text("You have no API tokens.")).to_be_visible()
        assert api.get("/api/v1/users/me", headers=auth).status_code == 401
        browser.close()
    # The one mistake's 422 page is logged by the browser; nothing else may be.
    assert problems == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
