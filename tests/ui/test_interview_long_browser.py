"""A long repeat in real Chromium: the interview page shows a window of its rows; a User
edits a row, pages on, jumps to a row by its number from the keyboard, adds a row, and
reloads to the same rows. Every other row is saved as it was."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from tests.interview_hooks.hooks_support import API_VARIABLES, DOCX
from tests.platform.docx_factory import standard_template
from tests.ui.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    WAIT_MS,
    axe_problems,
    axe_source,
)
from tests.ui.test_interview_browser import Site, _saved, _wait_for_answer, _watched, site
from tests.ui.ui_support import PASSWORD

__all__ = ["site"]  # the fixture: the server as `docuhooks serve` runs it

pytestmark = pytest.mark.slow

ROWS = [f"Party {n}" for n in range(1, 61)]
#: The repeated variable's position among the template's: its inputs are `f{INDEX}-{row}`.
INDEX = len(API_VARIABLES)


def _interview(site: Site) -> str:
    """An interview of a template with a repeated `Parties`, answered with 60 rows: its
    page's address."""
    parties = {"name": "Parties", "type": "text", "repeatDepth": 1, "options": []}
    auth = {"Authorization": f"Bearer {site.admin_token}"}
    with httpx.Client(base_url=site.server.url, headers=auth) as api:
        definition = {"name": "Long", "variables": [*API_VARIABLES, parties]}
        template = api.post(
            "/api/v1/templates",
            files={"file": ("long.docx", standard_template(), DOCX)},
            data={"definition": json.dumps(definition)},
        )
        assert template.status_code == 201, template.text
        group = api.post("/api/v1/workgroups", json={"name": "Long"}).json()
        item = api.post(
            "/api/v1/workitems",
            json={"workGroupId": group["id"], "templateId": template.json()["id"], "name": "Long"},
        ).json()
        opened = api.post(f"/api/v1/workitems/{item['id']}/interviews").json()
        saved = api.put(f"/api/v1/interviews/{opened['id']}/answers", json={"Parties": ROWS})
        assert saved.status_code == 200, saved.text
    return f"{site.server.url}/ui/interviews/{opened['id']}"


def test_a_user_pages_through_a_long_repeat(site: Site) -> None:
    from playwright.sync_api import expect, sync_playwright

    url = _interview(site)
    axe = axe_source()
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = _watched(browser.new_context(viewport=DESKTOP).new_page(), problems)
        page.goto(site.server.url + "/ui/login")
        page.get_by_label("Login name (email)").fill(site.user)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Work items")).to_be_visible()

        page.goto(url)
        expect(page.get_by_text("Rows 1–25 of 60")).to_be_visible()
        expect(page.get_by_label("Parties, row 1", exact=True)).to_have_value("Party 1")
        expect(page.get_by_label("Parties, row 26", exact=True)).to_have_count(0)
        third = page.get_by_label("Parties, row 3", exact=True)
        third.fill("Acme Ltd")
        with _saved(page, url):
            third.press("Tab")

        # The next rows: focus goes to where the page says which rows it shows, and the
        # address follows.
        page.get_by_role("button", name="Next rows of Parties").click()
        expect(page.locator(f"#f{INDEX}-rows")).to_have_text("Rows 26–50 of 60")
        expect(page.locator(f"#f{INDEX}-rows")).to_be_focused()
        expect(page.get_by_label("Parties, row 26", exact=True)).to_have_value("Party 26")
        expect(page).to_have_url(re.compile(rf"\?start\.{INDEX}=25$"))

        # A row by its number, from the keyboard.
        page.locator(f"#f{INDEX}-goto").fill("58")
        page.locator(f"#f{INDEX}-goto").press("Enter")
        expect(page.locator(f"#f{INDEX}-rows")).to_have_text("Rows 51–60 of 60")
        expect(page.get_by_label("Parties, row 58", exact=True)).to_have_value("Party 58")
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "interview-long-repeat-desktop.png"), full_page=True)
        assert axe_problems(page, axe) == []
        page.set_viewport_size(PHONE)
        assert page.evaluate("document.querySelector('main').scrollWidth") <= PHONE["width"]
        assert axe_problems(page, axe) == []
        page.set_viewport_size(DESKTOP)

        # A row added goes at the end, in the window that shows it.
        page.get_by_role("button", name="Add a row to Parties").click()
        last = page.get_by_label("Parties, row 61", exact=True)
        expect(last).to_be_focused()
        page.keyboard.type("Beta LLP")
        with _saved(page, url):
            page.keyboard.press("Tab")

        page.reload()
        expect(page.locator(f"#f{INDEX}-rows")).to_have_text("Rows 51–61 of 61")
        expect(page.get_by_label("Parties, row 61", exact=True)).to_have_value("Beta LLP")
        browser.close()
    expected = [*ROWS[:2], "Acme Ltd", *ROWS[3:], "Beta LLP"]
    _wait_for_answer(site, url, "Parties", expected)
    assert problems == []


def test_a_tab_saves_its_rows_again_and_a_tab_whose_rows_shifted_is_refused(site: Site) -> None:
    """Two tabs of one interview show rows 1–25. The first saves a row, then another: each
    save's answer tells the tab what its rows hold now, so the second is saved too. It then
    removes row 10 and adds a row: 60 rows again, and rows 10–25 of the second tab are not
    the rows there now. A row typed in the second tab is not saved over them: the field
    says so, and every row stays as the first tab left it."""
    from playwright.sync_api import expect, sync_playwright

    url = _interview(site)
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=DESKTOP)
        first = _watched(context.new_page(), problems)
        first.goto(site.server.url + "/ui/login")
        first.get_by_label("Login name (email)").fill(site.user)
        first.get_by_label("Password").fill(PASSWORD)
        first.get_by_role("button", name="Sign in").click()
        expect(first.get_by_role("heading", name="Work items")).to_be_visible()
        first.goto(url)
        second = _watched(context.new_page(), refused)
        second.goto(url)
        expect(second.get_by_label("Parties, row 12", exact=True)).to_have_value("Party 12")

        for row, text in ((3, "Acme Ltd"), (4, "Beta LLP")):
            box = first.get_by_label(f"Parties, row {row}", exact=True)
            box.fill(text)
            with _saved(first, url) as saved:
                box.press("Tab")
            assert saved.value.status == 200
            expect(first.locator("#save-status")).to_have_text("All answers saved.")

        first.get_by_role("button", name="Remove row 10 of Parties").click()
        expect(first.locator("#interview-result")).to_contain_text("Row 10 of Parties removed.")
        first.get_by_role("button", name="Add a row to Parties").click()
        expect(first.get_by_label("Parties, row 60", exact=True)).to_be_focused()

        box = second.get_by_label("Parties, row 12", exact=True)
        box.fill("Lost")
        with _saved(second, url) as saved:
            box.press("Tab")
        assert saved.value.status == 422
        expect(second.locator(f"#f{INDEX}-error")).to_contain_text(
            "these rows were not saved: rows of Parties shown here were changed since this "
            "page was shown"
        )
        expect(second.locator("#save-status")).to_have_text(
            "Saved, except 1 answer marked “Problem”."
        )
        second.reload()
        expect(second.get_by_label("Parties, row 12", exact=True)).to_have_value("Party 13")
        browser.close()
    expected = [*ROWS[:2], "Acme Ltd", "Beta LLP", *ROWS[4:9], *ROWS[10:], None]
    _wait_for_answer(site, url, "Parties", expected)
    assert problems == []
    assert refused and all("422" in problem or "Response Status" in problem for problem in refused)


def test_rows_come_back_to_by_back_are_the_rows_saved_now(site: Site) -> None:
    """A User saves row 5 and leaves the page; meanwhile another person removes row 3 and
    adds a row (60 rows again: row 5 now holds what row 6 held). Back brings the page again
    (it is never kept: `no-store`), with the rows saved now and their digest, but Chromium
    put back what had been typed in row 5 over the row shown there: the next save wrote it
    over the row that had moved up, with a digest that matched. The form keeps no typing
    across pages (`autocomplete="off"`): row 5 shows what it holds, and stays."""
    from playwright.sync_api import expect, sync_playwright

    url = _interview(site)
    expect.set_options(timeout=WAIT_MS)
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = _watched(browser.new_context(viewport=DESKTOP).new_page(), problems)
        page.goto(site.server.url + "/ui/login")
        page.get_by_label("Login name (email)").fill(site.user)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Work items")).to_be_visible()
        page.goto(url)
        fifth = page.get_by_label("Parties, row 5", exact=True)
        fifth.fill("Mine")
        with _saved(page, url) as saved:
            fifth.press("Tab")
        assert saved.value.status == 200
        page.goto(site.server.url + "/ui/workitems")
        expect(page.get_by_role("heading", name="Work items")).to_be_visible()

        shifted = [*ROWS[:2], ROWS[3], "Mine", *ROWS[5:], "Added"]
        auth = {"Authorization": f"Bearer {site.admin_token}"}
        with httpx.Client(base_url=site.server.url, headers=auth) as api:
            answers = f"/api/v1/interviews/{url.rsplit('/', 1)[1]}/answers"
            assert api.put(answers, json={"Parties": shifted}).status_code == 200

        page.go_back()
        expect(page.get_by_label("Parties, row 4", exact=True)).to_have_value("Mine")
        expect(page.get_by_label("Parties, row 5", exact=True)).to_have_value("Party 6")
        first = page.get_by_label("Parties, row 1", exact=True)
        first.fill("First")
        with _saved(page, url) as saved:
            first.press("Tab")
        assert saved.value.status == 200
        browser.close()
    _wait_for_answer(site, url, "Parties", ["First", *shifted[1:]])
    assert problems == []
