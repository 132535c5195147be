"""Stale and forged windows of a repeated variable's rows: a save from a window never
lands on rows other than those it showed, nor pads the answer out to where a form says its
window starts; the rows are named at the field, not saved, and every row stays."""

from __future__ import annotations

import re
from typing import Any

import httpx
from tests.interview_hooks.hooks_support import API_VARIABLES
from tests.support import SiteUsers
from tests.ui.test_interview_long import INDEX, PARTIES, _interview, _row_inputs
from tests.ui.test_interview_long import _form as _window_form
from tests.ui.test_workitem_pages import HX, _answers

from docuhooks.context import AppContext

ROWS = [f"Party {n}" for n in range(1, 41)]


def _form(csrf: str, html: str, **changes: str) -> dict[str, Any]:
    """The page's form as a browser posts it, with the number of rows it was shown with."""
    total = re.search(rf'name="total\.{INDEX}" value="(\d+)"', html)
    assert total, "the form says of how many rows its window is"
    return _window_form(csrf, html, **changes) | {f"total.{INDEX}": total.group(1)}


async def test_a_window_past_the_saved_rows_is_refused_not_padded(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A form naming a window far past the answer's rows made a list of that many empty
    rows before any limit was checked: `start.N=1000000000000` asked for 8 TB (a server
    error), and a hundred million was 800 MB of one request."""
    url, csrf = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    form = {
        "csrf_token": csrf,
        "fields": str(INDEX),
        f"start.{INDEX}": str(10**12),
        f"rows.{INDEX}": "1",
        f"f{INDEX}.{10**12}": "Far",
    }
    posted = await client.post(url, headers=HX, data=form)
    assert posted.status_code == 422, posted.text
    assert "these rows were not saved: Parties has 40 rows now" in posted.text
    assert (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Parties"] == ROWS


async def test_a_window_saved_after_another_tab_removed_a_row_loses_no_row(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Two tabs show rows 1–25 of 40; one removes row 4. The other's window, saved, put its
    25 rows over rows 1–25 of the 39: row 4 came back and row 26 (never shown in either
    tab) was gone. The stale window is refused at its field, and nothing is lost."""
    url, csrf = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    page = (await client.get(url)).text
    assert _row_inputs(page) == {n: ROWS[n] for n in range(25)}
    removed = await client.post(url, headers=HX, data=_form(csrf, page, action=f"remove:{INDEX}.3"))
    assert removed.status_code == 200, removed.text
    remaining = ROWS[:3] + ROWS[4:]
    assert (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Parties"] == remaining

    # The first tab, still showing the 40 rows, changes one of its rows.
    stale = await client.post(url, headers=HX, data=_form(csrf, page, **{f"f{INDEX}.0": "New"}))
    assert stale.status_code == 422, stale.text
    assert "Parties has 39 rows now, changed since this page was shown" in stale.text
    assert (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Parties"] == remaining

    # Reloaded, the same change is saved.
    fresh = (await client.get(url)).text
    saved = await client.post(url, headers=HX, data=_form(csrf, fresh, **{f"f{INDEX}.0": "New"}))
    assert saved.status_code == 200, saved.text
    assert (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Parties"] == ["New", *remaining[1:]]
