"""Stale and forged windows of a repeated variable's rows: a save from a window never
lands on rows other than those it showed, nor pads the answer out to where a form says its
window starts; the rows are named at the field, not saved, and every row stays."""

from __future__ import annotations

from typing import Any

import httpx
from tests.interview_hooks.hooks_support import API_VARIABLES
from tests.support import SiteUsers
from tests.ui.test_interview_long import INDEX, PARTIES, _interview, _row_inputs
from tests.ui.test_workitem_pages import HX, _answers
from tests.ui.ui_support import FormTab

from docuhooks.context import AppContext

ROWS = [f"Party {n}" for n in range(1, 41)]


async def _post(
    client: httpx.AsyncClient, url: str, tab: FormTab, **changes: Any
) -> httpx.Response:
    """The tab's form posted with `changes`, as htmx posts it; the answer shown in the tab."""
    posted = await client.post(url, headers=HX, data=tab.form(**changes))
    assert posted.status_code in (200, 422), posted.text
    tab.show(posted.text)
    return posted


async def _parties(ctx: AppContext, site: SiteUsers, url: str) -> Any:
    return (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Parties"]


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
    assert await _parties(ctx, site, url) == ROWS


async def test_a_window_saved_after_another_tab_removed_a_row_loses_no_row(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Two tabs show rows 1–25 of 40; one removes row 4. The other's window, saved, put its
    25 rows over rows 1–25 of the 39: row 4 came back and row 26 (never shown in either
    tab) was gone. The stale window is refused at its field, and nothing is lost."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    page = (await client.get(url)).text
    assert _row_inputs(page) == {n: ROWS[n] for n in range(25)}
    first, second = FormTab.of(page), FormTab.of(page)
    removed = await _post(client, url, first, action=f"remove:{INDEX}.3")
    assert removed.status_code == 200, removed.text
    remaining = ROWS[:3] + ROWS[4:]
    assert await _parties(ctx, site, url) == remaining

    # The other tab, still showing the 40 rows, changes one of its rows.
    stale = await _post(client, url, second, **{f"f{INDEX}.0": "New"})
    assert stale.status_code == 422, stale.text
    assert "Parties has 39 rows now, changed since this page was shown" in stale.text
    assert await _parties(ctx, site, url) == remaining

    # Reloaded, the same change is saved.
    fresh = FormTab.of((await client.get(url)).text)
    saved = await _post(client, url, fresh, **{f"f{INDEX}.0": "New"})
    assert saved.status_code == 200, saved.text
    assert await _parties(ctx, site, url) == ["New", *remaining[1:]]
