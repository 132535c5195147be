"""Every page of the web UI in real Chromium, at desktop (1280×800) and phone (390×844) width:
axe-core finds no `serious` or `critical` accessibility violation, nothing makes the page
scroll sideways on a phone (wide tables scroll inside their own box), and a screenshot of
each is left in `screenshots/` (ignored by git) for a reviewer.

The pages are read from the UI's router, so a new page is checked without being listed here.
A page whose path takes an id this module does not know how to make fails with a message
saying where to add one."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.platform.docx_factory import STANDARD_VARIABLES, standard_template
from tests.support import LiveServer, SiteUsers, make_site
from tests.ui.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    WAIT_MS,
    axe_problems,
    axe_source,
    require_chromium,
)
from tests.ui.test_browser import Receiver
from tests.ui.ui_support import PASSWORD

from docuhooks import ui
from docuhooks.context import AppContext
from docuhooks.delivery import rollup
from docuhooks.delivery.worker import start_worker
from docuhooks.identity import service as identity
from docuhooks.identity.secrets import SecretBox
from docuhooks.platform.catalog import variable_to_json
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.store.schema import webhooks

pytestmark = pytest.mark.slow

SITE_ADMIN_PASSWORD = "correct horse battery"  # tests.support.make_site's
#: The User's login name, as long as a real one can be.
LONG_LOGIN = "maximilian.featherstonehaugh-wolfeschlegelsteinhausenberger@engagements.example.com"
#: Pages a signed-out visitor sees; every other page is visited signed in as a
#: SiteAdministrator, who may open all of them.
SIGNED_OUT = {"/ui/login"}
#: Pages that are not routes of their own: what a visitor sees on a missing object, and what
#: a User sees on an administrators' page.
EXTRA_PAGES = {
    "not-found": "/ui/webhooks/0190f000-0000-7000-8000-000000000000",
}
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
#: Path parameters that name no object (a file kind, say): each page taking one is visited
#: once with each of its values.
VALUES = {"kind": ("xml", "json")}


def ui_pages() -> dict[str, str]:
    """Every GET route of the UI: name → path (with `{parameters}`)."""
    routes: list[Any] = [route for router in ui.routers for route in router.routes]
    pages: dict[str, str] = {}
    for route in routes:
        if "GET" not in (route.methods or ()) or not route.path.startswith("/ui"):
            continue
        # Screenshots are named after the route; two routes of one name keep both.
        name = route.name if route.name not in pages else f"{route.name}-{len(pages)}"
        pages.update(_with_values(name, route.path))
    return pages


def _with_values(name: str, path: str) -> dict[str, str]:
    """`path`, once for each value of each parameter in VALUES it takes (name-value)."""
    for parameter, values in VALUES.items():
        if "{" + parameter + "}" in path:
            return {
                named: filled
                for value in values
                for named, filled in _with_values(
                    f"{name}-{value}", path.replace("{" + parameter + "}", value)
                ).items()
            }
    return {name: path}


PAGES = {**ui_pages(), **EXTRA_PAGES}


def _context(settings: Settings) -> AppContext:
    return AppContext(
        settings=settings,
        db=Database.from_url(settings.resolved_database_url),
        box=SecretBox(settings.secret_key),
    )


def _made(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    body: dict[str, Any] = response.json()
    return body


async def _seed_history(
    settings: Settings, site_id: str, hook_id: str, lookup_id: str, unbroken_id: str
) -> None:
    """30 days of attempts in the roll-up (through its write path), with failures and a
    slow spell, so the charts have something to draw; and `unbroken_id` suspended, with a
    long reason, so the dashboard lists it."""
    rng = random.Random(11)
    now = datetime.now(UTC)
    calls = []
    for hours_back in range(30 * 24):
        at = now - timedelta(hours=hours_back, minutes=1)
        slow = 30 <= hours_back < 36
        for _ in range(rng.randint(2, 12)):
            failed = rng.random() < (0.6 if slow else 0.08)
            duration = rng.uniform(400, 4000) if slow else rng.uniform(20, 300)
            error = rng.choice(["timeout", "http_status", "connect"]) if failed else None
            calls.append(rollup.Call(hook_id, site_id, at, duration, error))
        if hours_back < 48:
            cut = rng.random() < 0.1
            calls.append(
                rollup.Call(
                    lookup_id,
                    site_id,
                    at,
                    2000.0 if cut else 150.0,
                    "timeout" if cut else None,
                    cut,
                )
            )
    ctx = _context(settings)
    try:
        async with ctx.db.transaction() as conn:
            await rollup.add_calls(conn, calls)
            await conn.execute(
                webhooks.update()
                .where(webhooks.c.id == unbroken_id)
                .values(suspended_at=now, status_reason="suspended: " + "y" * 200)
            )
    finally:
        await ctx.db.dispose()


def _sample_objects(url: str, site: SiteUsers, receiver_url: str) -> dict[str, str]:
    """One object of each kind a page shows, made through the API; their ids by the name of
    the path parameter that takes them."""
    with httpx.Client(base_url=url, headers=site.auth(), timeout=30) as api:
        hook = _made(
            api.post(
                "/api/v1/webhooks",
                json={
                    "name": "Archive",
                    "url": receiver_url,
                    "eventType": "NewWorkItemVersionComplete",
                },
            )
        )
        _made(api.post(f"/api/v1/webhooks/{hook['id']}/test"))
        # An interview webhook for an event no template fires: the dashboard lists its calls.
        lookup = _made(
            api.post(
                "/api/v1/webhooks",
                json={
                    "name": "Conflict check",
                    "url": receiver_url,
                    "eventType": "CustomInterviewEvent",
                    "interviewEventName": "Check conflicts",
                },
            )
        )
        # A name as long as allowed, in one word: lists and panels must wrap it, not grow
        # past a phone's width (the dashboard lists it as suspended, see `_seed_history`).
        unbroken = _made(
            api.post(
                "/api/v1/webhooks",
                json={
                    "name": "Matter-intake-" + "x" * 186,
                    "url": "https://unreachable.example/" + "p" * 120,
                    "eventType": "NewWorkItemVersionComplete",
                },
            )
        )
        deliveries = _made(api.get(f"/api/v1/webhooks/{hook['id']}/deliveries"))["items"]
        recovery = _made(
            api.post(
                f"/api/v1/webhooks/{hook['id']}/recover",
                json={"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
            )
        )
        token = _made(api.post("/api/v1/tokens", json={"name": "Archive receiver"}))
        group = _made(api.post("/api/v1/workgroups", json={"name": "Clients"}))
        definition = {
            "name": "Engagement letter",
            "variables": [variable_to_json(v) for v in STANDARD_VARIABLES],
            "eventElements": ["Look up client"],
        }
        template = _made(
            api.post(
                "/api/v1/templates",
                files={"file": ("engagement.docx", standard_template(), DOCX)},
                data={"definition": json.dumps(definition)},
            )
        )
        item = _made(
            api.post(
                "/api/v1/workitems",
                json={
                    "workGroupId": group["id"],
                    "templateId": template["id"],
                    "name": "Jane's engagement",
                },
            )
        )
        # A finished interview (version 1, completed, with its document), then the interview
        # of version 2, still open: the interview page shows one a person is working on.
        finished = _made(api.post(f"/api/v1/workitems/{item['id']}/interviews"))
        _made(
            api.put(
                f"/api/v1/interviews/{finished['id']}/answers",
                json={"Client Name": "Jane Smith", "Fee": 2400, "Child Name": ["Ann", "Bob"]},
            )
        )
        version = _made(api.post(f"/api/v1/interviews/{finished['id']}/finish"))
        assert version["status"] == "Completed", version
        interview = _made(api.post(f"/api/v1/workitems/{item['id']}/interviews"))
    return {
        "webhook_id": hook["id"],
        "interview_webhook_id": lookup["id"],
        "unbroken_webhook_id": unbroken["id"],
        "delivery_id": deliveries[0]["id"],
        "event_id": deliveries[0]["eventId"],
        "recovery_id": recovery["id"],
        "user_id": site.user_ids["User"],
        "work_group_id": group["id"],
        "template_id": template["id"],
        "work_item_id": item["id"],
        "version_id": version["id"],
        "document_id": version["documents"][0]["id"],
        "interview_id": interview["id"],
        "finished_interview_id": finished["id"],
        "token_id": token["id"],
    }


@pytest.fixture(scope="module")
def site_in_browser(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Any, dict[str, str], str]]:
    """The server on SQLite with its worker and a site holding one of everything; a browser
    signed in as its SiteAdministrator. Yields (server URL, browser, sample ids, axe)."""
    require_chromium()
    axe = axe_source()
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("pages")
    settings = Settings(
        data_dir=folder / "data",
        database_url=f"sqlite:///{folder / 'docuhooks.db'}",
        secret_key="browser-test-secret-key-0123456789",
        base_url="http://127.0.0.1",
        dev_mode=True,  # lets the worker reach the receiver on loopback
        log_json=False,
    )

    async def bootstrap() -> tuple[SiteUsers, str]:
        ctx = _context(settings)
        await ctx.db.upgrade()
        try:
            site = await make_site(ctx, "Acme Legal")
            # A name and login name with long unbroken words: the header and the pages that
            # show them must still fit a phone.
            async with ctx.db.transaction() as conn:
                await identity.create_user(
                    conn,
                    site_id=site.site_id,
                    login_name=LONG_LOGIN,
                    name="Maximilian Featherstonehaugh-Wolfeschlegelsteinhausenberger",
                    roles=["User"],
                    password=PASSWORD,
                    now=ctx.now(),
                )
            return site, LONG_LOGIN
        finally:
            await ctx.db.dispose()

    site, user_login = asyncio.run(bootstrap())
    SCREENSHOTS.mkdir(exist_ok=True)
    with (
        Receiver() as receiver,
        LiveServer(_context(settings), components=[start_worker]) as server,
        sync_playwright() as playwright,
    ):
        ids = {**_sample_objects(server.url, site, receiver.url), "user_login": user_login}
        # Playwright's loop runs in this thread: the seeding gets a thread (and loop) of its own.
        with ThreadPoolExecutor(1) as seeder:
            seeder.submit(
                asyncio.run,
                _seed_history(
                    settings,
                    site.site_id,
                    ids["webhook_id"],
                    ids["interview_webhook_id"],
                    ids["unbroken_webhook_id"],
                ),
            ).result()
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        signed_in = browser.new_context()
        page = signed_in.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(server.url + "/ui/login")
        page.get_by_label("Login name (email)").fill(site.login("SiteAdministrator"))
        page.get_by_label("Password").fill(SITE_ADMIN_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(server.url + "/ui/")
        page.close()
        yield server.url, (browser, signed_in), ids, axe
        browser.close()


def _url(name: str, path: str, ids: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        parameter = match.group(1)
        if parameter not in ids:
            pytest.fail(
                f"the page {name!r} ({path}) takes {{{parameter}}}, and this test cannot make "
                "one: create a sample object in _sample_objects (tests/ui/test_pages.py) and "
                f"return its id under {parameter!r}"
            )
        return ids[parameter]

    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", fill, path)


def _check(page: Any, name: str, width: str, axe: str) -> list[str]:
    """Screenshot the page as it is, and what is wrong with it: axe-core's serious and
    critical violations, and sideways scrolling."""
    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
    problems = [f"{width}: {p}" for p in axe_problems(page, axe)]
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    if overflow > 0:
        problems.append(f"{width}: the page scrolls sideways by {overflow}px")
    return problems


WIDTHS = (("desktop", DESKTOP), ("phone", PHONE))


@pytest.mark.parametrize("name", sorted(PAGES))
def test_every_page_is_accessible_at_desktop_and_phone_width(
    name: str, site_in_browser: tuple[str, Any, dict[str, str], str]
) -> None:
    url, (browser, signed_in), ids, axe = site_in_browser
    path = PAGES[name]
    context = browser.new_context() if path in SIGNED_OUT else signed_in
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    try:
        target = url + _url(name, path, ids)
        if name not in EXTRA_PAGES:
            # Downloads and htmx fragments are GET routes too, but not pages: they must
            # answer, and are checked inside the pages that use them.
            answer = context.request.get(target)
            assert answer.status < 400, f"{path}: HTTP {answer.status}"
            kind = answer.headers.get("content-type", "")
            if not kind.startswith("text/html") or not answer.text().lstrip().lower().startswith(
                "<!doctype html"
            ):
                return
        for width, viewport in WIDTHS:
            page.set_viewport_size(viewport)
            response = page.goto(target)
            assert response is not None
            if name not in EXTRA_PAGES:
                assert response.status < 400, f"{path}: HTTP {response.status}"
            problems.extend(_check(page, name, width, axe))
    finally:
        page.close()
        if context is not signed_in:
            context.close()
    assert problems == [], f"{name} ({path}):\n" + "\n".join(problems)


# --- pages reached by an action, not by a link ---------------------------------------------


def _secret_once(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + "/ui/webhooks/new")
    page.get_by_label("Name (required)").fill(f"Shown once ({width})")
    page.get_by_label("URL (required)").fill("https://receiver.example/hook")
    page.get_by_role("button", name="Create webhook").click()
    page.get_by_text("Store this secret now").wait_for()


def _webhook_form_refused(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + "/ui/webhooks/new")
    page.get_by_role("button", name="Create webhook").click()
    page.locator(".field-error").first.wait_for()


def _upload_refused(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + "/ui/templates/new")
    page.locator("#var-0-options").fill("Only for multiple choice")
    page.get_by_role("button", name="Upload template").click()
    page.locator("#form-problems").wait_for()


def _assemble_warnings(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + f"/ui/templates/{ids['template_id']}")
    page.get_by_label("Sample answers").fill('{"Fee": "a lot", "Nobody": "x"}')
    page.get_by_role("button", name="Test assemble").click()
    page.locator("#assemble-warnings").wait_for()


def _work_group_refused(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + "/ui/workgroups")
    page.get_by_role("button", name="Create work group").click()
    page.locator("#name-error").wait_for()


def _sign_in_the_user(page: Any, url: str, ids: dict[str, str]) -> None:
    page.goto(url + "/ui/login")
    page.get_by_label("Login name (email)").fill(ids["user_login"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(url + "/ui/workitems")


def _forbidden_to_a_user(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    _sign_in_the_user(page, url, ids)
    page.goto(url + "/ui/templates")
    page.get_by_text("SiteAdministrator").first.wait_for()
    # The way back is to where a User starts, not to the webhooks they may not see.
    back = page.get_by_role("link", name="Back to the work items")
    assert back.get_attribute("href") == "/ui/workitems"


def _a_users_home(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    _sign_in_the_user(page, url, ids)
    page.get_by_role("heading", name="Work items").wait_for()


def _work_item_refused(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + "/ui/workitems/new")
    page.get_by_label("Template").select_option(label="Engagement letter")
    page.get_by_label("Work group").select_option(label="Clients")
    page.get_by_label("Name").fill("   ")  # the browser lets it through; the server does not
    page.get_by_role("button", name="Create work item").click()
    page.locator("#new-name-error").wait_for()


def _interview_field_refused(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + f"/ui/interviews/{ids['interview_id']}")
    fee = page.get_by_label("Fee")
    fee.fill("24OO")
    fee.press("Tab")
    page.locator(".field-error", has_text="is not a number").wait_for()


def _answer_file_refused(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + f"/ui/interviews/{ids['interview_id']}")
    page.get_by_label("Answer file to add (HotDocs .xml or JSON)").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"call Jane"}]
    )
    page.get_by_role("button", name="Add the answers").click()
    page.locator(".field-error", has_text="nothing changed").wait_for()


def _interview_event_result(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + f"/ui/interviews/{ids['interview_id']}")
    page.get_by_role("button", name="Look up client").click()
    page.locator("#interview-result:focus").wait_for()


def _finished_interview(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + f"/ui/interviews/{ids['finished_interview_id']}")
    page.get_by_text("This interview is finished").wait_for()


#: name → the steps that reach it, and whether they need a browser of their own (signed out).
ACTIONS: dict[str, tuple[Callable[[Any, str, dict[str, str], str], None], bool]] = {
    "secret-once": (_secret_once, False),
    "webhook-form-refused": (_webhook_form_refused, False),
    "template-upload-refused": (_upload_refused, False),
    "test-assemble-warnings": (_assemble_warnings, False),
    "work-group-refused": (_work_group_refused, False),
    "forbidden-to-a-user": (_forbidden_to_a_user, True),
    "a-users-home": (_a_users_home, True),
    "work-item-form-refused": (_work_item_refused, False),
    "interview-field-refused": (_interview_field_refused, False),
    "interview-answer-file-refused": (_answer_file_refused, False),
    "interview-event-result": (_interview_event_result, False),
    "interview-finished": (_finished_interview, False),
}


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_pages_reached_by_an_action_are_accessible(
    name: str, site_in_browser: tuple[str, Any, dict[str, str], str]
) -> None:
    url, (browser, signed_in), ids, axe = site_in_browser
    steps, own_browser = ACTIONS[name]
    problems: list[str] = []
    for width, viewport in WIDTHS:
        context = browser.new_context() if own_browser else signed_in
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
        try:
            page.set_viewport_size(viewport)
            steps(page, url, ids, width)
            problems.extend(_check(page, name, width, axe))
        finally:
            page.close()
            if context is not signed_in:
                context.close()
    assert problems == [], f"{name}:\n" + "\n".join(problems)


def test_every_page_is_known_to_the_test() -> None:
    """The list comes from the router: the UI's core pages are all in it."""
    core = {"/ui/", "/ui/login", "/ui/events", "/ui/users", "/ui/account", "/ui/templates"}
    assert core | {"/ui/workgroups", "/ui/templates/{template_id}"} <= set(PAGES.values())
