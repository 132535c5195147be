"""No interview page passes `interview_layout.PAGE_BYTES`, whatever the template (within
the catalog's limits) and the answers (within the answer-set limits): the worst of both,
rendered page by page, window by window, over HTTP. Before, a repeated multiple choice of
1,000 options answered 10,000 times was a page of over a gigabyte, enough to take the
process down for every site."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from typing import Any

import httpx
import pytest
from tests.interview_hooks.hooks_support import API_VARIABLES, work_item_over_api
from tests.support import SiteUsers
from tests.ui.test_workitem_pages import HX
from tests.ui.ui_support import make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.platform.catalog import MAX_EVENT_ELEMENTS, MAX_OPTIONS, MAX_VARIABLES
from docuhooks.store.schema import templates
from docuhooks.ui.interview_layout import PAGE_BYTES, ROWS_SHOWN

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

#: Escaped, each of these is five bytes in the page.
Q = "'"
#: Names at the most characters a name may have (`answers.model.MAX_NAME_LENGTH`).
NAME = 255


def _name(label: str) -> str:
    return label + Q * (NAME - len(label))


def _options(count: int, length: int) -> list[str]:
    return [f"{n:04d}" + Q * (length - 4) for n in range(count)]


#: The template: at every limit of the catalog at once, and as costly to show as it can be.
CHOICES = _options(MAX_OPTIONS, 40)
PICKS: dict[str, Any] = {
    "name": _name("Picks"),
    "type": "multiplechoice",
    "repeatDepth": 1,
    "options": CHOICES,
}
#: A multiple choice, and a repeated one, whose choices alone are more than a page holds.
HUGE_CHOICES = _options(MAX_OPTIONS, 1_000)
HUGE: dict[str, Any] = {
    "name": _name("Huge"),
    "type": "multiplechoice",
    "repeatDepth": 0,
    "options": HUGE_CHOICES,
}
HUGE_ROWS: dict[str, Any] = {**HUGE, "name": _name("Huge rows"), "repeatDepth": 1}
PARTIES: dict[str, Any] = {"name": _name("Parties"), "type": "text", "repeatDepth": 1}
GRID: dict[str, Any] = {"name": _name("Grid"), "type": "text", "repeatDepth": 2}
SPECIAL = [PICKS, HUGE, HUGE_ROWS, PARTIES, GRID]
NOTES: list[dict[str, Any]] = [
    {"name": _name(f"Note {n}"), "type": "text", "repeatDepth": 0}
    for n in range(MAX_VARIABLES - len(SPECIAL))
]
VARIABLES = [*SPECIAL, *NOTES]
EVENTS = [f"{n:03d}" + Q * 197 for n in range(MAX_EVENT_ELEMENTS)]

#: The answers: as many values as an answer may hold (10,000) in the repeats, and the rest
#: of the 5 MiB an answer set may be in long answers to the others.
ANSWERS: dict[str, Any] = {
    PICKS["name"]: [[CHOICES[n % MAX_OPTIONS]] for n in range(10_000)],
    HUGE_ROWS["name"]: [[HUGE_CHOICES[0]]] * 30,
    PARTIES["name"]: [Q * 20] * 9_999 + [Q * 60_000],
    GRID["name"]: [[Q * 100] * 100] * 20,
    **{note["name"]: Q * 600 for note in NOTES[:2_400]},
}


async def _worst_interview(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers) -> str:
    """The interview of that template with those answers; its page's address."""
    template_id = str(uuid.uuid4())
    content = b"stored as is: no page reads the document"
    async with ctx.db.transaction() as conn:
        await conn.execute(
            templates.insert().values(
                id=template_id,
                site_id=site.site_id,
                name="Worst case",
                file_name="worst.docx",
                content=content,
                sha256=hashlib.sha256(content).hexdigest(),
                variables=VARIABLES,
                variable_count=len(VARIABLES),
                event_elements=EVENTS,
                created_at=ctx.now(),
            )
        )
    admin = site.auth()
    group = await client.post("/api/v1/workgroups", json={"name": "Worst"}, headers=admin)
    item = await client.post(
        "/api/v1/workitems",
        json={"workGroupId": group.json()["id"], "templateId": template_id, "name": "Worst"},
        headers=admin,
    )
    assert item.status_code == 201, item.text
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{item.json()['id']}/interviews", headers=user)
    assert opened.status_code == 201, opened.text
    body = json.dumps(ANSWERS).encode()
    assert len(body) <= ctx.settings.max_answer_set_bytes
    interview_id = opened.json()["id"]
    saved = await client.put(
        f"/api/v1/interviews/{interview_id}/answers",
        content=body,
        headers={**user, "Content-Type": "application/json"},
    )
    assert saved.status_code == 200, saved.text[:500]
    assert saved.json()["warnings"] == []
    return f"/ui/interviews/{interview_id}"


def _next_first(html: str) -> int | None:
    found = re.search(r'value="fields:(\d+)">Next fields', html)
    return int(found.group(1)) if found else None


async def test_no_page_of_the_worst_interview_passes_the_bound(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    url = await _worst_interview(ctx, client, site)
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "User"))
    sizes: list[int] = []
    shown: list[int] = []
    first: int | None = 0
    while first is not None:
        page = await client.get(f"{url}?first={first}")
        assert page.status_code == 200, page.text[:500]
        sizes.append(len(page.content))
        shown += [int(i) for i in re.findall(r'id="f(\d+)-field"', page.text)]
        first = _next_first(page.text)
        assert len(sizes) < 100, "the pages never end"
    assert shown == list(range(len(VARIABLES))), "every field is on one page, in order"
    assert max(sizes) <= PAGE_BYTES, sizes

    # The repeats' last windows, as a reload shows them: as many rows as fit a page.
    for view in ("start.0=9999", "first=3&start.3=9999"):
        last = await client.get(f"{url}?{view}")
        found = re.search(r"Rows ([\d,]+)–10,000 of 10,000", last.text)
        assert found, view
        assert 10_000 - int(found.group(1).replace(",", "")) < ROWS_SHOWN
        assert len(last.content) <= PAGE_BYTES
    assert last.text.count("Too large to change on this page") == 0
    first_page = (await client.get(url)).text
    assert first_page.count("Too large to change on this page") == 2
    form = {"csrf_token": csrf, "action": "rows:0:5000", "first": "0"}
    step = await client.post(url, headers=HX, data=form)
    assert step.status_code == 200 and len(step.content) <= PAGE_BYTES

    # An answer file of 5,000 answers the template cannot take: each is a warning, and the
    # page lists some of them.
    unknown = {_name(f"Unknown {n}"): Q * 100 for n in range(5_000)}
    upload = await client.post(
        f"{url}/answers-file",
        headers=HX,
        data={"csrf_token": csrf},
        files={"file": ("unknown.json", json.dumps(unknown).encode())},
    )
    assert upload.status_code == 200, upload.text[:500]
    assert "more answers could not be used" in upload.text
    assert len(upload.content) <= PAGE_BYTES


async def test_a_repeated_multiple_choice_of_many_options_is_a_window_of_rows(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """200 rows of a multiple choice of 1,000 options were a page of 23 MB, 1.7 s of
    rendering; the page shows as many rows as fit, and is a megabyte."""
    options = [f"Option {n}" for n in range(MAX_OPTIONS)]
    picks = {"name": "Picks", "type": "multiplechoice", "repeatDepth": 1, "options": options}
    item = await work_item_over_api(client, site, variables=[*API_VARIABLES, picks])
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{item.id}/interviews", headers=user)
    interview_id = opened.json()["id"]
    rows = [[options[n]] for n in range(200)]
    saved = await client.put(
        f"/api/v1/interviews/{interview_id}/answers", json={"Picks": rows}, headers=user
    )
    assert saved.status_code == 200, saved.text
    await sign_in(client, await make_user(ctx, site.site_id, "User"))
    page = await client.get(f"/ui/interviews/{interview_id}")
    assert page.status_code == 200
    assert len(page.content) < 1_500_000
    shown = page.text.count('type="checkbox"') // MAX_OPTIONS
    assert 1 <= shown < ROWS_SHOWN and f"Rows 1–{shown} of 200" in page.text
