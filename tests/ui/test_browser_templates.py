"""Templates and work groups in real Chromium: a site administrator uploads a template
through the form (adding variable rows in place, from the keyboard), sees a file that is not
a DOCX and an undeclared placeholder refused at their fields, then test-assembles a document
and reads the download back; creates a work group; and deletes the template. At phone width
as well as desktop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.platform.docx_factory import STANDARD_VARIABLES, document_text, standard_template
from tests.support import LiveServer
from tests.ui.browser_support import CHROMIUM, CHROMIUM_ARGS, PHONE, SCREENSHOTS, WAIT_MS
from tests.ui.test_browser import live
from tests.ui.ui_support import PASSWORD

__all__ = ["live"]  # the fixture, shared with the administrator's session

pytestmark = pytest.mark.slow


def test_a_site_administrator_uploads_and_test_assembles_a_template(
    live: tuple[LiveServer, str, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, _, site_admin = live
    expect.set_options(timeout=WAIT_MS)
    docx = tmp_path / "engagement.docx"
    docx.write_bytes(standard_template())
    not_docx = tmp_path / "notes.docx"
    not_docx.write_text("meeting notes, not a Word document")
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport=PHONE).new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(server.url + "/ui/login")
        page.get_by_label("Login name (email)").fill(site_admin)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("link", name="Templates", exact=True).click()
        expect(page.get_by_text("No templates yet.")).to_be_visible()
        page.get_by_role("link", name="Upload a template").first.click()

        # A file that is not a DOCX: the reason at the file field, what was typed kept.
        page.get_by_label("Template document (.docx)").set_input_files(str(not_docx))
        page.locator("#name").fill("Engagement letter")
        page.locator("#var-0-name").fill("Client Name")
        page.get_by_role("button", name="Upload template").click()
        expect(page.locator("#file-error")).to_be_visible()
        expect(page.get_by_label("Template document (.docx)")).to_have_attribute(
            "aria-invalid", "true"
        )
        expect(page.locator("#name")).to_have_value("Engagement letter")
        expect(page.locator("#form-problems")).to_be_focused()

        # Only one variable declared: the others' placeholders are refused at the variables.
        page.get_by_label("Template document (.docx)").set_input_files(str(docx))
        page.get_by_role("button", name="Upload template").click()
        expect(page.locator("#variables-error")).to_contain_text("Fee")

        # Every variable, one row each; rows beyond the spare ones are added in place, and
        # the keyboard lands in the new row.
        page.get_by_label("Template document (.docx)").set_input_files(str(docx))
        for index, variable in enumerate(STANDARD_VARIABLES):
            if page.locator(f"#var-{index}-name").count() == 0:
                page.get_by_role("button", name="Add a variable").click()
                expect(page.locator(f"#var-{index}-name")).to_be_focused()
            page.locator(f"#var-{index}-name").fill(variable.name)
            page.locator(f"#var-{index}-type").select_option(str(variable.type))
            page.locator(f"#var-{index}-depth").fill(str(variable.repeat_depth))
            page.locator(f"#var-{index}-options").fill("\n".join(variable.options))
        page.get_by_label("Interview event elements").fill("Look up client")
        page.screenshot(path=str(SCREENSHOTS / "journey-template-form-phone.png"), full_page=True)
        page.get_by_role("button", name="Upload template").click()
        expect(page.get_by_text("Template uploaded.")).to_be_visible()
        expect(page.get_by_role("heading", name="Engagement letter")).to_be_visible()
        expect(page.get_by_role("rowheader", name="Child Name")).to_be_visible()

        # Test assemble downloads the document built from the sample answers as edited.
        answers = page.get_by_label("Sample answers")
        sample = json.loads(answers.input_value())
        for answer in sample["answers"]:
            if answer["name"] == "Client Name":
                answer["value"] = "Jane Doe"
        answers.fill(json.dumps(sample))
        with page.expect_download() as download:
            page.get_by_role("button", name="Test assemble").click()
        assembled = Path(download.value.path()).read_bytes()
        paragraphs, _ = document_text(assembled)
        assert "Client: Jane Doe" in paragraphs
        assert download.value.suggested_filename == "engagement.docx"

        # A work group, and a name taken twice.
        page.set_viewport_size({"width": 1280, "height": 800})
        page.get_by_role("link", name="Work groups").click()
        page.get_by_label("Name").fill("Litigation")
        page.get_by_role("button", name="Create work group").click()
        expect(page.get_by_text("Work group created.")).to_be_visible()
        expect(page.get_by_role("rowheader", name="Litigation")).to_be_visible()
        page.get_by_label("Name").fill("Litigation")
        page.get_by_role("button", name="Create work group").click()
        expect(page.locator("#name-error")).to_contain_text("already exists")
        expect(page.get_by_label("Name")).to_be_focused()

        # Deleting the template asks first, and frees its name.
        page.get_by_role("link", name="Templates", exact=True).click()
        page.get_by_role("link", name="Engagement letter").click()
        page.get_by_role("link", name="Delete template").click()
        expect(page.get_by_text("This cannot be undone")).to_be_visible()
        page.get_by_role("button", name="Delete template Engagement letter").click()
        expect(page.get_by_text("Template deleted")).to_be_visible()
        expect(page.get_by_text("No templates yet.")).to_be_visible()
        browser.close()
    assert problems == [] or all("422" in p or "409" in p for p in problems), problems
