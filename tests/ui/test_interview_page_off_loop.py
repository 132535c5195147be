"""A large interview page is built and rendered off the event loop, in the parsing threads
under its site's slots (`ui.rendering.render_sized`): while one site's page of hundreds of
fields renders, the server answers every other request, and another site's large page waits
for the one rendering, not for all of the first site's."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from tests.interview_hooks.hooks_support import API_VARIABLES, work_item_over_api
from tests.support import SiteUsers
from tests.ui.ui_support import make_user, sign_in

from docuhooks.answers import offload
from docuhooks.answers.offload import INLINE_BYTES
from docuhooks.app import create_app
from docuhooks.context import AppContext
from docuhooks.ui import interview_form

#: Enough fields for a page over `INLINE_BYTES` (about 350 bytes a field).
MANY = 200

#: Whether a page (its variables, its answers) is the large one a test holds.
Large = Callable[[Sequence[Any], Any], bool] | None


def _notes(prefix: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix} {i}", "type": "text", "repeatDepth": 0, "options": []}
        for i in range(MANY)
    ]


class HeldPages:
    """`interview_form.fields_of`, the first step of building an interview page's form, made
    observable: it notes whose page it builds (the first word of its last variable's name),
    and the first large page waits for `release` (where it runs: on the event loop, that
    would stall it)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, large: Large = None) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.built: list[str] = []
        real = interview_form.fields_of
        large = large or (lambda variables, answers: len(variables) > MANY)

        def fields_of(variables: Sequence[Any], answers: Any, layout: Any) -> Any:
            if large(variables, answers):
                if not self.started.is_set():
                    self.started.set()
                    self.release.wait(10)
                self.built.append(variables[-1].name.split()[0])
            return real(variables, answers, layout)

        monkeypatch.setattr(interview_form, "fields_of", fields_of)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


@asynccontextmanager
async def signed_in(ctx: AppContext, site: SiteUsers) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own, signed in as a User of `site`."""
    transport = httpx.ASGITransport(app=create_app(ctx, migrate=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        await sign_in(browser, await make_user(ctx, site.site_id, "User"))
        yield browser


async def _interview(
    client: httpx.AsyncClient,
    site: SiteUsers,
    variables: Sequence[dict[str, Any]],
    answers: dict[str, Any] | None = None,
) -> str:
    """An interview (opened over the API) of a template declaring `variables`, holding
    `answers`: its id."""
    item = await work_item_over_api(client, site, variables=variables, event_elements=())
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{item.id}/interviews", headers=user)
    assert opened.status_code == 201, opened.text
    if answers:
        saved = await client.put(
            f"/api/v1/interviews/{opened.json()['id']}/answers", json=answers, headers=user
        )
        assert saved.status_code == 200, saved.text
    return str(opened.json()["id"])


def _long_answer(variables: Sequence[Any], answers: Any) -> bool:
    return any(len(str(a["value"])) > INLINE_BYTES for a in answers.get("answers", []))


def _many_rows(variables: Sequence[Any], answers: Any) -> bool:
    return any(len(v.options) == 50 for v in variables)


#: Pages large in each way: many fields; one answer longer than `INLINE_BYTES` (the stored
#: answers are then read with the page, off the loop too); a repeated multiple choice of 50
#: options answered with 20 empty rows, each row all 50 checkboxes (the answers are small).
SHAPES: dict[str, tuple[list[dict[str, Any]], dict[str, Any], Large]] = {
    "many fields": (_notes("Large"), {}, None),
    "a long answer": ([], {"Client Name": "n" * (INLINE_BYTES + 1)}, _long_answer),
    "many rows of many options": (
        [
            {
                "name": "Large picks",
                "type": "multiplechoice",
                "repeatDepth": 1,
                "options": [f"Option {i}" for i in range(50)],
            }
        ],
        {"Large picks": [[]] * 20},
        _many_rows,
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_large_interview_page_renders_while_other_requests_are_answered(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    other_site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
    shape: str,
) -> None:
    """The interview page of a template at the limit of 5,000 variables took about 0.4 s to
    render on the event loop, and every request of every site waited for it. Now, while
    one is held half-built, the health check and another site's (small) interview page are
    answered first."""
    variables, answers, large_page_of = SHAPES[shape]
    large = await _interview(client, site, [*API_VARIABLES, *variables], answers)
    small = await _interview(client, other_site, API_VARIABLES)
    held = HeldPages(monkeypatch, large_page_of)
    finished: list[str] = []
    async with signed_in(ctx, site) as person, signed_in(ctx, other_site) as other_person:

        async def large_page() -> httpx.Response:
            page = await person.get(f"/ui/interviews/{large}")
            finished.append("large page")
            return page

        rendering = asyncio.create_task(large_page())
        try:
            await until(held.started.is_set)
            health = await client.get("/healthz")
            finished.append("healthz")
            other_page = await other_person.get(f"/ui/interviews/{small}")
            finished.append("other site's page")
        finally:
            held.release.set()
        page = await rendering
    assert finished == ["healthz", "other site's page", "large page"]
    assert health.status_code == 200
    assert other_page.status_code == 200, other_page.text[:500]
    assert other_page.text.count('name="fields"') == len(API_VARIABLES)
    assert page.status_code == 200, page.text[:500]
    assert page.text.count('name="fields"') == len(API_VARIABLES) + len(variables)
    if shape == "a long answer":
        assert "n" * (INLINE_BYTES + 1) in page.text
    if shape == "many rows of many options":
        assert page.text.count('type="checkbox"') >= 20 * 50


async def test_one_sites_large_pages_do_not_queue_another_sites_behind_them(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    other_site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rendering a large page holds one of its site's slots of the parsing threads, as heavy
    answer work does: four of one site's large pages at once queue in that site's own line,
    and another site's large page is rendered after the one rendering now, not after all."""
    ctx.settings = dataclasses.replace(ctx.settings, answer_parse_threads=1)
    noisy = await _interview(client, site, [*API_VARIABLES, *_notes("Noisy")])
    quiet = await _interview(client, other_site, [*API_VARIABLES, *_notes("Quiet")])
    held = HeldPages(monkeypatch)
    pool = offload._pool(1)

    def queued() -> int:
        return offload.LIMITER.waiting(site.site_id) + pool._work_queue.qsize()

    async with signed_in(ctx, site) as person, signed_in(ctx, other_site) as other_person:
        noisy_pages = [asyncio.create_task(person.get(f"/ui/interviews/{noisy}")) for _ in range(4)]
        try:
            await until(lambda: held.started.is_set() and queued() == 3)  # one builds
            quiet_page = asyncio.create_task(other_person.get(f"/ui/interviews/{quiet}"))
            await until(lambda: queued() == 4)  # the other site's page waits for a thread
        finally:
            held.release.set()
        pages = await asyncio.gather(*noisy_pages, quiet_page)
    assert [page.status_code for page in pages] == [200] * 5
    assert held.built == ["Noisy", "Quiet", "Noisy", "Noisy", "Noisy"]
