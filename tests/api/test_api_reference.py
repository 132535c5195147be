"""The API reference (/docs, /redoc) works with no network beyond the server: every script,
style sheet and icon its pages load comes from the server itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support import LiveServer
from tests.ui.browser_support import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_chromium
from tests.ui.test_browser import _context

from docuhooks.settings import Settings

PAGES = ("/docs", "/redoc")


def referenced(html: str) -> list[str]:
    """What a page loads: the src and href of its tags, and the URLs its inline script names."""
    found = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    found += re.findall(r"""\b(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""", html)
    return found


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("page", PAGES)
async def test_the_reference_loads_only_what_the_server_serves(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assets = referenced(response.text)
    assert any(a.endswith(".js") for a in assets), response.text
    for asset in assets:
        parts = urlsplit(asset)
        assert not parts.scheme and not parts.netloc, f"{page} loads {asset} from elsewhere"
        assert asset.startswith("/"), asset
        loaded = await client.get(asset)
        assert loaded.status_code == 200, asset
        assert loaded.content, asset


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    require_chromium()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'docuhooks.db'}",
        secret_key="api-reference-test-key-0123456789",
        log_json=False,
    )
    with LiveServer(_context(settings)) as server:
        yield server


@pytest.mark.slow
def test_swagger_ui_shows_the_api_with_every_other_host_unreachable(live: LiveServer) -> None:
    from playwright.sync_api import Route, expect, sync_playwright

    elsewhere: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(live.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(WAIT_MS)
            page.route("**/*", only_the_server)
            page.goto(live.url + "/docs")
            expect(page.get_by_text("/api/v1/webhooks/{webhook_id}").first).to_be_visible(
                timeout=WAIT_MS
            )
            page.goto(live.url + "/redoc")
            expect(page.get_by_text("/api/v1/webhooks/{webhook_id}").first).to_be_attached(
                timeout=WAIT_MS
            )
        finally:
            browser.close()
    assert elsewhere == []
