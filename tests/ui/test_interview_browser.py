"""The people who assemble documents, in real Chromium against the real server (with its
worker and post-processing driver) and real receiver processes: a User creates a work item,
runs its interview (prefill, a lookup button, repeat rows, bad input, answer files), finishes
it through post-processing and downloads the documents; at desktop width and at 390 × 844
with a receiver too slow for the interview budget.

Screenshots of each page go to `screenshots/` at the repository root (ignored by git).
Without Chromium this skips, as `test_browser.py` does."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from docx import Document
from tests.interview_hooks.hooks_support import Hook
from tests.interview_hooks.test_receiver_processes import receiver_process
from tests.support import LiveServer
from tests.ui.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    WAIT_MS,
    require_chromium,
)
from tests.ui.test_browser import _context
from tests.ui.ui_support import PASSWORD, make_user

from docuhooks.demo import template as demo
from docuhooks.identity import service as identity
from docuhooks.server import components
from docuhooks.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.slow

RECEIVER = Path(__file__).with_name("platform_receiver.py")
#: The interview budget of these servers; the slow receiver replies well after it.
BUDGET_SECONDS = 2.0
SLOW_REPLY_SECONDS = 6.0

PREFILL = {"prefill": {"Client Name": "Jane Smith"}}
LOOKUP = {
    "lookups": {
        demo.LOOKUP_BUTTON: {
            "key": "Client Name",
            "rows": {
                "Jane Smith": {
                    "Fee": 2400,
                    "Is Company": True,
                    "Contact Name": ["Ann Lee", "Bob Chan"],
                    # Not a variable of the template: a warning, and no obstacle to finishing.
                    "Region": "North",
                }
            },
        }
    }
}
HOTDOCS_FILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<AnswerSet version="1.1">
  <Answer name="Client Name"><TextValue>Jane Smith-Okafor</TextValue></Answer>
</AnswerSet>"""


@dataclass
class Site:
    server: LiveServer
    user: str
    admin_token: str
    tmp: Path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The server as `docuhooks serve` runs it (worker, post-processing driver, interview
    log writer), on SQLite, with a User who signs in and a site administrator's API token."""
    require_chromium()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'docuhooks.db'}",
        secret_key="interview-browser-secret-key-0123456789",
        base_url="http://127.0.0.1",
        dev_mode=True,  # receivers on loopback
        log_json=False,
        interview_budget_seconds=BUDGET_SECONDS,
    )

    async def bootstrap() -> tuple[str, str]:
        ctx = _context(settings)
        await ctx.db.upgrade()
        try:
            async with ctx.db.transaction() as conn:
                site_id = await identity.create_site(
                    conn, name="Lee & Haddad", base_url="http://127.0.0.1", now=ctx.now()
                )
            admin = await make_user(ctx, site_id, "SiteAdministrator")
            async with ctx.db.transaction() as conn:
                token = await identity.create_token(conn, login_name=admin, now=ctx.now())
            return await make_user(ctx, site_id, "User"), token
        finally:
            await ctx.db.dispose()

    user, token = asyncio.run(bootstrap())
    with LiveServer(_context(settings), components=components(settings)) as server:
        yield Site(server, user, token, tmp_path)


def _hook(api: httpx.Client, event_type: str, name: str, **extra: Any) -> Hook:
    made = api.post(
        "/api/v1/webhooks",
        json={"name": name, "url": "http://127.0.0.1:9/unused", "eventType": event_type, **extra},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    return Hook(body["id"], body["name"], body["secret"], None)


def _point(api: httpx.Client, hook: Hook, url: str) -> None:
    moved = api.patch(f"/api/v1/webhooks/{hook.id}", json={"url": url})
    assert moved.status_code == 200, moved.text


@contextmanager
def _platform_receiver(hooks: list[Hook], tmp: Path) -> Iterator[tuple[str, Path, Path]]:
    """`platform_receiver.py` for `hooks`: its URL, its events file and its release file."""
    events, release = tmp / "completed.jsonl", tmp / "release"
    env = {
        **os.environ,
        "DOCUHOOKS_WEBHOOK_SECRETS": ",".join(h.secret or "" for h in hooks),
        "DOCUHOOKS_WEBHOOK_IDS": ",".join(h.id for h in hooks),
        "EVENTS_FILE": str(events),
        "RELEASE_FILE": str(release),
    }
    process = subprocess.Popen(
        [sys.executable, str(RECEIVER)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield line.split()[-1] + "/hook", events, release
    finally:
        process.terminate()
        process.wait(timeout=5)


@contextmanager
def _receivers(site: Site, *, slow: bool) -> Iterator[tuple[Path, Path]]:
    """The demo template, a work group, and every webhook of the journey pointed at its
    running receiver process; yields the completion events file and the release file."""
    auth = {"Authorization": f"Bearer {site.admin_token}"}
    with ExitStack() as stack:
        api = stack.enter_context(httpx.Client(base_url=site.server.url, headers=auth))
        uploaded = api.post(
            "/api/v1/templates",
            files={"file": (demo.FILE_NAME, demo.build_docx())},
            data={"definition": json.dumps(demo.definition())},
        )
        assert uploaded.status_code == 201, uploaded.text
        group = api.post("/api/v1/workgroups", json={"name": "Clients"})
        assert group.status_code == 201, group.text
        load = _hook(api, "InterviewLoadEvent", "Client register")
        lookup = _hook(
            api,
            "CustomInterviewEvent",
            "Client lookup",
            interviewEventName=demo.LOOKUP_BUTTON,
            requestVerb="POST",
        )
        post = _hook(api, "PostProcessingEvent", "Cover page")
        done = _hook(api, "NewWorkItemVersionComplete", "Archive")
        _point(api, load, stack.enter_context(receiver_process(load, PREFILL, site.tmp)))
        _point(api, lookup, stack.enter_context(receiver_process(lookup, LOOKUP, site.tmp)))
        if slow:
            late = _hook(
                api,
                "CustomInterviewEvent",
                "Slow credit check",
                interviewEventName=demo.LOOKUP_BUTTON,
                requestVerb="POST",
                order=5,
            )
            url = stack.enter_context(
                receiver_process(late, LOOKUP, site.tmp, delay=SLOW_REPLY_SECONDS)
            )
            _point(api, late, url)
        url, events, release = stack.enter_context(_platform_receiver([post, done], site.tmp))
        _point(api, post, url)
        _point(api, done, url)
        yield events, release


def _shot(page: Any, name: str, width: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)


def _saved(page: Any, interview_url: str) -> Any:
    """Waits for the save that the block's change sends (the field's POST)."""
    return page.expect_response(
        lambda r: r.url == interview_url and r.request.method == "POST", timeout=WAIT_MS
    )


def _journey(site: Site, viewport: ViewportSize, *, slow: bool) -> list[str]:
    """The whole journey at `viewport`; returns the problems the browser reported."""
    from playwright.sync_api import expect, sync_playwright

    width = "phone" if viewport["width"] < 600 else "desktop"
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []
    with _receivers(site, slow=slow) as (events, release), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=viewport, accept_downloads=True)
        page = _watched(context.new_page(), problems)

        # A User signs in and starts at the work items.
        page.goto(site.server.url + "/ui/login")
        page.get_by_label("Login name (email)").fill(site.user)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Work items")).to_be_visible()
        expect(page.get_by_text("No work items yet.")).to_be_visible()
        _shot(page, "workitems-empty", width)

        page.get_by_role("link", name="New work item").click()
        page.get_by_label("Template").select_option(label=demo.NAME)
        page.get_by_label("Work group").select_option(label="Clients")
        page.get_by_label("Name").fill("Smith engagement")
        _shot(page, "workitem-new", width)
        page.get_by_role("button", name="Create work item").click()
        expect(page.get_by_text("Work item created.")).to_be_visible()
        expect(page.get_by_role("heading", name="Smith engagement")).to_be_visible()
        expect(page.get_by_text("No versions yet")).to_be_visible()

        # Opening: the InterviewLoadEvent receiver's answer is there, marked with its webhook.
        page.get_by_role("button", name="Open interview").click()
        expect(page.get_by_label(re.compile("^Client Name"))).to_have_value("Jane Smith")
        expect(page.locator("#f0-field .source")).to_have_text("filled in by Client register")
        expect(page.get_by_text("1 answer filled in for you.")).to_be_visible()
        expect(page).to_have_url(re.compile(r"/ui/interviews/[0-9a-f-]{36}$"))
        interview_url = page.url
        # The fields are in the template's order for the keyboard too.
        page.get_by_label(re.compile("^Client Name")).focus()
        page.keyboard.press("Tab")
        expect(page.get_by_label("Letter Date")).to_be_focused()
        _shot(page, "interview-opened", width)

        # The lookup button: the CustomInterviewEvent receiver fills the fields in place.
        page.evaluate("window.stillTheSamePage = true")
        lookup = page.get_by_role("button", name=demo.LOOKUP_BUTTON)
        if slow:
            # By keyboard; the progress says how many services are asked while they work.
            lookup.focus()
            page.keyboard.press("Enter")
            expect(page.get_by_text("Asking 2 services…")).to_be_visible()
        else:
            lookup.click()
        expect(page.get_by_label("Fee")).to_have_value("2400")
        expect(page.get_by_label("Is Company")).to_have_value("true")
        expect(page.get_by_label("Contact Name, row 2")).to_have_value("Bob Chan")
        expect(page.locator("#f4-field .source")).to_have_text("filled in by Client lookup")
        # Focus moved to the result, which says what happened.
        expect(page.locator("#interview-result")).to_be_focused()
        expect(page.locator("#interview-result")).to_contain_text("Look up client:")
        warnings = page.locator("#interview-result .warning")
        expect(warnings).to_contain_text("Client lookup")
        expect(warnings).to_contain_text("Region")
        if slow:
            warning = page.locator("#interview-result .warning")
            expect(warning).to_contain_text("Slow credit check")
            expect(warning).to_contain_text("timeout")
            _shot(page, "interview-slow-warning", width)
        assert page.evaluate("window.stillTheSamePage") is True

        # Repeat rows, by keyboard: add a row (focus goes to it), type, remove row 2.
        page.get_by_role("button", name="Add a row to Contact Name").focus()
        page.keyboard.press("Enter")
        third = page.get_by_label("Contact Name, row 3")
        expect(third).to_be_focused()
        page.keyboard.type("Cy Diaz")
        with _saved(page, interview_url):
            page.keyboard.press("Tab")
        page.get_by_role("button", name="Remove row 2 of Contact Name").click()
        expect(page.get_by_label("Contact Name, row 2")).to_have_value("Cy Diaz")
        expect(page.get_by_label("Contact Name, row 3")).to_have_count(0)
        expect(page.get_by_role("button", name="Add a row to Contact Name")).to_be_focused()

        # The other types, each saved as it changes.
        with _saved(page, interview_url):
            page.get_by_label("Letter Date").fill("2026-12-01")
        with _saved(page, interview_url):
            page.get_by_label("Tax returns").check()
        with _saved(page, interview_url):
            page.get_by_label("Payroll").check()
        expect(page.get_by_text("All answers saved.")).to_be_visible()

        # A number with letters: said at the field, and the saved answer stays.
        fee = page.get_by_label("Fee")
        with _saved(page, interview_url):
            fee.fill("24OO")
            fee.press("Tab")
        expect(page.locator("#f4-error")).to_contain_text("Problem: “24OO” is not a number")
        expect(fee).to_have_attribute("aria-invalid", "true")
        _shot(page, "interview-bad-number", width)

        # Reloading: every saved answer is there; the bad number never was saved.
        page.reload()
        expect(page.get_by_label(re.compile("^Client Name"))).to_have_value("Jane Smith")
        expect(page.get_by_label("Fee")).to_have_value("2400")
        expect(page.get_by_label("Is Company")).to_have_value("true")
        expect(page.get_by_label("Letter Date")).to_have_value("2026-12-01")
        expect(page.get_by_label("Tax returns")).to_be_checked()
        expect(page.get_by_label("Payroll")).to_be_checked()
        expect(page.get_by_label("Bookkeeping")).not_to_be_checked()
        expect(page.get_by_label("Contact Name, row 1")).to_have_value("Ann Lee")
        expect(page.get_by_label("Contact Name, row 2")).to_have_value("Cy Diaz")
        expect(page.get_by_label("Contact Name, row 3")).to_have_count(0)
        # The marks stay on the answers as the webhooks supplied them, and go from those the
        # person changed (the fee typed over, the rows edited).
        expect(page.locator("#f0-field .source")).to_have_text("filled in by Client register")
        expect(page.locator("#f2-field .source")).to_have_text("filled in by Client lookup")
        expect(page.locator("#f4-field .source")).to_have_count(0)
        expect(page.locator("#f5-field .source")).to_have_count(0)

        # Typing still in a field when the page goes away is saved too.
        page.get_by_label("Contact Name, row 2").fill("Cy Diaz-Moreno")
        page.close(run_before_unload=True)
        _wait_for_answer(site, interview_url, "Contact Name", ["Ann Lee", "Cy Diaz-Moreno"])
        page = _watched(context.new_page(), problems)
        page.goto(interview_url)
        expect(page.get_by_label("Contact Name, row 2")).to_have_value("Cy Diaz-Moreno")
        page.get_by_label("Contact Name, row 2").fill("Cy Diaz")
        with _saved(page, interview_url):
            page.keyboard.press("Tab")

        # Answer files: one that is not an answer set changes nothing and says so at the field.
        upload = page.get_by_label("Answer file to add (HotDocs .xml or JSON)")
        upload.set_input_files(
            files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"call Jane"}]
        )
        page.get_by_role("button", name="Add the answers").click()
        expect(page.locator("#answer-file-error")).to_contain_text(
            "notes.txt is not an answer set this interview can read, so nothing changed"
        )
        expect(page.get_by_label("Answer file to add (HotDocs .xml or JSON)")).to_be_focused()
        expect(page.get_by_label(re.compile("^Client Name"))).to_have_value("Jane Smith")
        # A HotDocs answer file overlays its answer, the others stay.
        page.get_by_label("Answer file to add (HotDocs .xml or JSON)").set_input_files(
            files=[{"name": "smith.xml", "mimeType": "text/xml", "buffer": HOTDOCS_FILE}]
        )
        page.get_by_role("button", name="Add the answers").click()
        expect(page.get_by_text("The answers of smith.xml are in.")).to_be_visible()
        expect(page.get_by_label(re.compile("^Client Name"))).to_have_value("Jane Smith-Okafor")
        expect(page.get_by_label("Fee")).to_have_value("2400")
        with page.expect_download() as got:
            page.get_by_role("link", name="HotDocs answer file (.xml)").click()
        xml = Path(got.value.path()).read_text(encoding="utf-8")
        assert "Jane Smith-Okafor" in xml and "Cy Diaz" in xml
        with page.expect_download() as got:
            page.get_by_role("link", name="JSON (.json)").click()
        answers = json.loads(Path(got.value.path()).read_text(encoding="utf-8"))
        by_name = {a["name"]: a["value"] for a in answers["answers"]}
        assert by_name["Contact Name"] == ["Ann Lee", "Cy Diaz"]
        assert by_name["Services"] == ["Tax returns", "Payroll"]
        _shot(page, "interview", width)

        # Finishing: the page follows the version through post-processing to Completed.
        page.get_by_role("button", name="Finish").click()
        expect(page.get_by_role("heading", name=re.compile("^Version 1 of"))).to_be_visible()
        expect(page.locator("#version-status .badge")).to_have_text("PostProcessing")
        _shot(page, "version-post-processing", width)
        release.touch()  # the post-processing receiver replies only now
        expect(page.locator("#version-status .badge")).to_have_text("Completed")
        expect(page.locator("#version-status-title")).to_be_focused()
        expect(page.locator("#version-status")).to_contain_text(
            "Post-processing by Cover page: completed (inline)."
        )
        _shot(page, "version-completed", width)

        with page.expect_download() as got:
            page.get_by_role("link", name="Download engagement-letter.docx").click()
        letter = Document(io.BytesIO(Path(got.value.path()).read_bytes()))
        text = "\n".join(p.text for p in letter.paragraphs)
        cells = " ".join(c.text for t in letter.tables for r in t.rows for c in r.cells)
        assert "Dear Jane Smith-Okafor," in text
        assert "EUR 2400" in text
        assert "As a company client" in text
        assert "Ann Lee" in cells and "Cy Diaz" in cells and "Bob Chan" not in cells
        with page.expect_download() as got:
            page.get_by_role("link", name="Download cover.pdf").click()
        assert Path(got.value.path()).read_bytes().startswith(b"%PDF")

        # The work item shows the version, its documents and the post-processing outcome.
        page.get_by_role("link", name="Smith engagement").click()
        expect(page.locator(".versions .badge")).to_have_text("Completed")
        expect(page.get_by_role("link", name="Download cover.pdf")).to_be_visible()
        _shot(page, "workitem", width)
        page.get_by_role("link", name="Work items", exact=True).first.click()
        page.get_by_label("Name contains").fill("smith")
        page.get_by_role("button", name="Show").click()
        expect(page.get_by_role("link", name="Smith engagement")).to_be_visible()
        _shot(page, "workitems", width)

        if width == "phone":
            # Nothing of the page's own content is wider than the phone.
            overflow = page.evaluate("document.querySelector('main').scrollWidth")
            assert overflow <= viewport["width"], overflow

        # The NewWorkItemVersionComplete receiver got its event, naming both documents.
        expect(page.get_by_role("heading", name="Work items")).to_be_visible()
        completed = _wait_for_line(page, events)
        assert completed["versionNumber"] == 1
        assert sorted(completed["documents"]) == ["cover.pdf", "engagement-letter.docx"]

        # The User who created the work item deletes it, after a page that asks first.
        page.get_by_role("link", name="Smith engagement").click()
        page.get_by_role("link", name="Delete work item").click()
        expect(page.get_by_text("This cannot be undone.")).to_be_visible()
        expect(page.get_by_text("2 documents")).to_be_visible()
        _shot(page, "workitem-delete", width)
        page.get_by_role("button", name="Delete work item Smith engagement").click()
        expect(page.get_by_text("Work item deleted")).to_be_visible()
        expect(page.get_by_text("No work items yet.")).to_be_visible()
        browser.close()
    return problems


def _watched(page: Any, problems: list[str]) -> Any:
    """`page`, with what the browser complains of (script errors, CSP violations, 4xx and
    5xx responses) added to `problems`."""
    page.set_default_timeout(WAIT_MS)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return page


def _wait_for_answer(site: Site, interview_url: str, name: str, value: Any) -> None:
    """Waits until the interview's saved answer `name` is `value` (read through the API)."""
    interview_id = interview_url.rsplit("/", 1)[-1]
    auth = {"Authorization": f"Bearer {site.admin_token}"}
    with httpx.Client(base_url=site.server.url, headers=auth) as api:
        for _ in range(200):
            answers = api.get(f"/api/v1/interviews/{interview_id}").json()["answers"]
            if {a["name"]: a["value"] for a in answers["answers"]}.get(name) == value:
                return
            time.sleep(0.1)
    raise AssertionError(f"{name} was never saved as {value!r}")


def _wait_for_line(page: Any, events: Path) -> dict[str, Any]:
    for _ in range(200):
        if events.exists() and events.read_text(encoding="utf-8").strip():
            line: dict[str, Any] = json.loads(events.read_text(encoding="utf-8").splitlines()[0])
            return line
        page.wait_for_timeout(100)
    raise AssertionError("the NewWorkItemVersionComplete receiver got no event")


def _unexpected(problems: list[str]) -> list[str]:
    """The browser's complaints, but the 422s the bad input steps meant to cause."""
    return [
        p
        for p in problems
        if not (p.startswith("422 ") or "status of 422" in p or "Response Status Error" in p)
    ]


def test_a_users_interview_journey_at_desktop_width(site: Site) -> None:
    problems = _journey(site, DESKTOP, slow=False)
    assert _unexpected(problems) == []
    # The two bad inputs, and nothing else, were refused.
    assert sum(p.startswith("422 ") for p in problems) == 2


def test_the_same_journey_on_a_phone_with_a_slow_receiver(site: Site) -> None:
    problems = _journey(site, PHONE, slow=True)
    assert _unexpected(problems) == []
