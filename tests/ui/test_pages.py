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
import re
from collections.abc import Callable, Iterator
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
from tests.ui.ui_support import PASSWORD, make_user

from docuhooks import ui
from docuhooks.context import AppContext
from docuhooks.delivery.worker import start_worker
from docuhooks.identity.secrets import SecretBox
from docuhooks.platform.catalog import variable_to_json
from docuhooks.settings import Settings
from docuhooks.store.database import Database

pytestmark = pytest.mark.slow

SITE_ADMIN_PASSWORD = "correct horse battery"  # tests.support.make_site's
#: Pages a signed-out visitor sees; every other page is visited signed in as a
#: SiteAdministrator, who may open all of them.
SIGNED_OUT = {"/ui/login"}
#: Pages that are not routes of their own: what a visitor sees on a missing object, and what
#: a User sees on an administrators' page.
EXTRA_PAGES = {
    "not-found": "/ui/webhooks/0190f000-0000-7000-8000-000000000000",
}
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def ui_pages() -> dict[str, str]:
    """Every GET route of the UI: name → path (with `{parameters}`)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before 0.130 lists the included routes flat
        routes: Any = ui.router.routes
    else:
        routes = iter_route_contexts(ui.router.routes)
    pages: dict[str, str] = {}
    for route in routes:
        if "GET" not in (route.methods or ()) or not route.path.startswith("/ui"):
            continue
        # Screenshots are named after the route; two routes of one name keep both.
        name = route.name if route.name not in pages else f"{route.name}-{len(pages)}"
        pages[name] = route.path
    return pages


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
    return {
        "webhook_id": hook["id"],
        "delivery_id": deliveries[0]["id"],
        "event_id": deliveries[0]["eventId"],
        "recovery_id": recovery["id"],
        "user_id": site.user_ids["User"],
        "work_group_id": group["id"],
        "template_id": template["id"],
        "work_item_id": item["id"],
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
            return site, await make_user(ctx, site.site_id, "User")
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


def _forbidden_to_a_user(page: Any, url: str, ids: dict[str, str], width: str) -> None:
    page.goto(url + "/ui/login")
    page.get_by_label("Login name (email)").fill(ids["user_login"])
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(url + "/ui/templates")
    page.get_by_text("SiteAdministrator").first.wait_for()


#: name → the steps that reach it, and whether they need a browser of their own (signed out).
ACTIONS: dict[str, tuple[Callable[[Any, str, dict[str, str], str], None], bool]] = {
    "secret-once": (_secret_once, False),
    "webhook-form-refused": (_webhook_form_refused, False),
    "template-upload-refused": (_upload_refused, False),
    "test-assemble-warnings": (_assemble_warnings, False),
    "work-group-refused": (_work_group_refused, False),
    "forbidden-to-a-user": (_forbidden_to_a_user, True),
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
