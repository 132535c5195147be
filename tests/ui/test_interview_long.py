"""Long interviews over HTTP (in-process, both stores): a repeated variable's rows are shown
a window at a time, a template of many fields a page at a time, and saving a page keeps
every row and field it did not show exactly as it was."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from tests.interview_hooks.hooks_support import API_VARIABLES, work_item_over_api
from tests.support import SiteUsers
from tests.ui.test_workitem_pages import HX, _answers
from tests.ui.ui_support import FormTab, csrf_of, make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.ui import interview_layout
from docuhooks.ui.interview_layout import ROWS_SHOWN

PARTIES = {"name": "Parties", "type": "text", "repeatDepth": 1, "options": []}
#: The position of `PARTIES` among the template's variables: its form names are `f{INDEX}`.
INDEX = len(API_VARIABLES)
ROWS = [f"Party {n}" for n in range(1, 1_001)]


async def _interview(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    variables: list[dict[str, Any]],
    answers: dict[str, Any],
) -> tuple[str, str]:
    """An interview of a template of `variables` answered `answers` (over the API), and a
    User signed in: its page's address and the CSRF token."""
    item = await work_item_over_api(client, site, variables=variables, event_elements=())
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{item.id}/interviews", headers=user)
    assert opened.status_code == 201, opened.text
    url = f"/ui/interviews/{opened.json()['id']}"
    saved = await client.put(f"/api/v1{url[3:]}/answers", json=answers, headers=user)
    assert saved.status_code == 200, saved.text
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "User"))
    return url, csrf


def _row_inputs(html: str) -> dict[int, str]:
    """The rows of `PARTIES` the page shows: their place in the answer and their value."""
    found = re.findall(
        rf'id="f{INDEX}-(\d+)" name="f{INDEX}\.\d+" type="text" value="([^"]*)"', html
    )
    return {int(row): value for row, value in found}


async def test_a_long_repeat_is_shown_and_saved_a_window_of_rows_at_a_time(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A repeat of 1,000 rows was a page of every row, and a repeated multiple choice of
    1,000 options answered 10,000 times a page of over a gigabyte. The page shows a window
    of its rows; saving the window changes those rows and keeps the 975 others."""
    url, csrf = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    page = (await client.get(url)).text
    assert _row_inputs(page) == {n: ROWS[n] for n in range(ROWS_SHOWN)}
    assert "Rows 1–25 of 1,000" in page and "(1,000 rows)" in page
    assert f'value="rows:{INDEX}:25"' in page  # Next rows
    assert "Previous rows" not in page

    # One tab, as a browser holds it: each answer from the server changes what it posts.
    tab = FormTab.of(page)
    assert tab.value("csrf_token") == csrf
    saved = await client.post(url, headers=HX, data=tab.form(**{f"f{INDEX}.2": "Changed"}))
    assert saved.status_code == 200, saved.text
    tab.show(saved.text)
    rows = (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Parties"]
    assert rows == [*ROWS[:2], "Changed", *ROWS[3:]]

    # The next window: the form is saved first (nothing changed), then the page moves on,
    # and its address with it, so a reload shows the same rows.
    form = tab.form(action=f"rows:{INDEX}:25", **{f"f{INDEX}.2": "Changed"})
    moved = await client.post(url, headers=HX, data=form)
    assert moved.status_code == 200, moved.text
    tab.show(moved.text)
    assert _row_inputs(moved.text) == {n: ROWS[n] for n in range(25, 50)}
    assert f'data-focus="f{INDEX}-rows"' in moved.text and "Rows 26–50 of 1,000" in moved.text
    assert moved.headers["HX-Replace-Url"] == f"{url}?start.{INDEX}=25"
    reloaded = (await client.get(moved.headers["HX-Replace-Url"])).text
    assert _row_inputs(reloaded) == _row_inputs(moved.text)

    # A row by its number: the window that holds it.
    shown = await client.post(
        url, headers=HX, data=tab.form(action=f"rows:{INDEX}", **{f"goto.{INDEX}": "977"})
    )
    tab.show(shown.text)
    assert _row_inputs(shown.text) == {n: ROWS[n] for n in range(975, 1_000)}

    # Removing a row of that window and adding one: the rows before it stay.
    removed = await client.post(url, headers=HX, data=tab.form(action=f"remove:{INDEX}.980"))
    assert "Row 981 of Parties removed." in removed.text
    tab.show(removed.text)
    added = await client.post(url, headers=HX, data=tab.form(action=f"add:{INDEX}"))
    assert "Row 1,000 added to Parties." in added.text
    assert f'data-focus="f{INDEX}-999"' in added.text
    assert added.headers["HX-Replace-Url"] == f"{url}?start.{INDEX}=975"
    tab.show(added.text)
    rows = (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Parties"]
    assert rows == [*ROWS[:2], "Changed", *ROWS[3:980], *ROWS[981:], None]

    # Without script: a post and a redirect to the same rows.
    plain = await client.post(url, data=tab.form(action=f"rows:{INDEX}:0"))
    assert plain.status_code == 303 and plain.headers["location"] == url


async def test_a_bad_row_keeps_its_window_and_its_typing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    amounts = {"name": "Amounts", "type": "number", "repeatDepth": 1, "options": []}
    values = list(range(60))
    url, csrf = await _interview(ctx, client, site, [*API_VARIABLES, amounts], {"Amounts": values})
    page = (await client.get(f"{url}?start.{INDEX}=30")).text
    assert "Rows 26–50 of 60" in page  # the window that holds row 31
    form = {
        "csrf_token": csrf,
        "fields": str(INDEX),
        f"start.{INDEX}": "25",
        f"rows.{INDEX}": "25",
        **{f"f{INDEX}.{n}": str(n) for n in range(25, 50)},
    }
    bad = await client.post(
        url, headers=HX, data=form | {f"f{INDEX}.40": "forty", "action": f"rows:{INDEX}:50"}
    )
    assert bad.status_code == 422
    assert "Rows 26–50 of 60" in bad.text and 'value="forty"' in bad.text
    assert "Problem: Row 41: “forty” is not a number" in bad.text
    assert (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Amounts"] == values


async def test_a_template_of_many_fields_is_a_page_at_a_time(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each page holds as many fields as fit its bound (made small here); moving to the
    next saves the page first, and saving a page keeps the answers of the others."""
    notes = [
        {"name": f"Note {n}", "type": "text", "repeatDepth": 0, "options": []} for n in range(40)
    ]
    answers = {f"Note {n}": f"answer {n}" for n in range(40)}
    variables = [*API_VARIABLES, *notes]
    url, csrf = await _interview(ctx, client, site, variables, answers)
    monkeypatch.setattr(interview_layout, "FIELDS_BYTES", 20 * 2_300)
    first = (await client.get(url)).text
    shown = [int(i) for i in re.findall(r'name="fields" value="(\d+)"', first)]
    assert shown == list(range(len(shown))) and INDEX < len(shown) < len(variables)
    assert f"Fields 1–{len(shown)} of {len(variables)}" in first
    texts = dict(re.findall(r'id="f(\d+)" name="f\d+" type="text" value="([^"]*)"', first))
    form: dict[str, Any] = {"csrf_token": csrf, "first": "0", "fields": list(texts)}
    form |= {f"f{i}": value for i, value in texts.items()} | {f"f{INDEX}": "changed"}
    moved = await client.post(url, headers=HX, data=form | {"action": f"fields:{len(shown)}"})
    assert moved.status_code == 200, moved.text
    assert 'data-focus="fields-shown"' in moved.text
    assert f'name="fields" value="{len(shown)}"' in moved.text
    assert 'name="fields" value="0"' not in moved.text
    assert 'value="fields:0"' in moved.text  # Previous fields
    assert moved.headers["HX-Replace-Url"] == f"{url}?first={len(shown)}"
    saved = await _answers(ctx, site, url.rsplit("/", 1)[1])
    assert saved == {**answers, "Note 0": "changed"}
    assert csrf_of(moved.text) == csrf
