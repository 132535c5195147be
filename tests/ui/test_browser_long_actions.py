"""A long action in real Chromium: while a test call waits on a slow receiver, the page says
what it is doing, and the outcome is then said once.

Proved by order, not by the clock: the receiver holds its answer until the test has seen the
progress text, then lets it go. (The timeout case waits for the webhook's own 1-second
timeout, the limit the feature enforces.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from tests.support import LiveServer
from tests.ui.browser_support import CHROMIUM, CHROMIUM_ARGS, WAIT_MS
from tests.ui.test_browser import live  # noqa: F401
from tests.ui.ui_support import PASSWORD

pytestmark = pytest.mark.slow


class HeldReceiver:
    """An interview receiver on loopback that answers 204, but only once `release` is set;
    `arrived` is set when a call is in its hands."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        arrived, release = self.arrived, self.release

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                arrived.set()
                release.wait(timeout=120)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/lookup"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HeldReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()  # never leave a handler waiting
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[HeldReceiver]:
    with HeldReceiver() as held:
        yield held


def _interview_hook(server: LiveServer, login: str, url: str, timeout: int) -> str:
    with httpx.Client(base_url=server.url) as api:
        token = api.post("/api/v1/auth/tokens", json={"loginName": login, "password": PASSWORD})
        auth = {"Authorization": f"Bearer {token.json()['token']}"}
        body = {
            "name": f"Lookup {timeout}",
            "url": url,
            "eventType": "InterviewLoadEvent",
            "timeoutSeconds": timeout,
        }
        created = api.post("/api/v1/webhooks", json=body, headers=auth)
        assert created.status_code == 201, created.text
        return str(created.json()["id"])


def test_a_test_call_shows_its_progress_then_one_outcome(
    live: tuple[LiveServer, str, str],  # noqa: F811
    receiver: HeldReceiver,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, login, _ = live
    slow = _interview_hook(server, login, receiver.url, timeout=60)
    problems: list[str] = []
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{server.url}/ui/webhooks/{slow}")
        page.get_by_label("Login name (email)").fill(login)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()

        progress = page.locator("#test-progress")
        button = page.get_by_role("button", name="Send test event")
        expect(progress).to_be_hidden()
        button.click()
        # The call is in the receiver's hands, and it will not answer until released.
        assert receiver.arrived.wait(timeout=WAIT_MS / 1000)
        expect(progress).to_be_visible()
        expect(progress).to_have_text("Sending test event… (up to 60 s)")
        expect(button).to_be_focused()
        receiver.release.set()
        result = page.locator("#test-result")
        expect(result).to_contain_text("Test call succeeded: HTTP 204 in ")
        expect(progress).to_be_hidden()
        expect(button).to_be_focused()  # a keyboard user is where they were
        assert result.inner_text().count("Test call") == 1

        # A receiver that answers too late: the webhook's own timeout ends the call, and
        # the page says so once, in one sentence.
        receiver.arrived.clear()
        receiver.release.clear()
        late = _interview_hook(server, login, receiver.url, timeout=1)
        page.goto(f"{server.url}/ui/webhooks/{late}")
        page.get_by_role("button", name="Send test event").click()
        assert receiver.arrived.wait(timeout=WAIT_MS / 1000)
        expect(page.locator("#test-result")).to_contain_text("Test call failed: no answer within")
        text = page.locator("#test-result").inner_text().strip()
        assert text.endswith(" ms (timeout).") and text.count("Test call") == 1
        assert "timed out" not in page.locator("main").inner_text()
        receiver.release.set()
        browser.close()
    assert problems == []
