"""Stale and forged windows of a repeated variable's rows, over HTTP on both stores, with
tabs as a browser holds them (`FormTab`): a save from a window never lands on rows other
than those it showed — rows added or removed since, or shifted under it with the count
unchanged — nor adds rows, nor pads the answer out to where a form says its window starts.
The rows are named at the field, not saved (422), and every row stays. The tab that saved
is told what its rows hold now, so it saves again."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tests.interview_hooks.hooks_support import API_VARIABLES
from tests.support import SiteUsers
from tests.ui.test_interview_long import INDEX, PARTIES, _interview, _row_inputs
from tests.ui.test_workitem_pages import HX, _answers
from tests.ui.ui_support import FormTab

from docuhooks.answers.validate import variables_from_json
from docuhooks.context import AppContext
from docuhooks.platform import interviews
from docuhooks.ui import interview_layout

ROWS = [f"Party {n}" for n in range(1, 41)]
AMOUNTS = {"name": "Amounts", "type": "number", "repeatDepth": 1, "options": []}
NOTE = {"name": "Note", "type": "text", "repeatDepth": 0, "options": []}

CHANGED = "were changed since this page was shown (in another tab, or by another person)"


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


async def test_a_window_whose_rows_shifted_under_it_is_refused(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Two tabs show rows 26–40 of 40. The first removes row 30 and adds a row: 40 rows
    again, so the count still matched the second tab's, whose save then put its rows over
    the shifted ones: row 30 came back over row 31, each row after it moved up over the
    next, and the added row (never shown in the second tab) was gone. Its rows are no
    longer the ones it showed: refused at its field, and nothing is lost."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    page = (await client.get(f"{url}?start.{INDEX}=25")).text
    assert _row_inputs(page) == {n: ROWS[n] for n in range(25, 40)}
    first, second = FormTab.of(page), FormTab.of(page)
    await _post(client, url, first, action=f"remove:{INDEX}.29")
    added = await _post(client, url, first, action=f"add:{INDEX}")
    assert "Row 40 added to Parties." in added.text
    await _post(client, url, first, **{f"f{INDEX}.39": "Added"})
    shifted = [*ROWS[:29], *ROWS[30:], "Added"]
    assert await _parties(ctx, site, url) == shifted
    assert first.value(f"total.{INDEX}") == second.value(f"total.{INDEX}") == "40"

    stale = await _post(client, url, second, **{f"f{INDEX}.25": "New"})
    assert stale.status_code == 422, stale.text
    assert f"Problem: these rows were not saved: rows of Parties shown here {CHANGED}" in (
        stale.text
    )
    assert await _parties(ctx, site, url) == shifted
    # Saved again from the same tab, still refused: its rows are still the old ones.
    again = await _post(client, url, second, **{f"f{INDEX}.26": "Newer"})
    assert again.status_code == 422, again.text
    assert await _parties(ctx, site, url) == shifted

    # A window the removal did not reach is saved: its rows are the ones it showed.
    top = FormTab.of((await client.get(url)).text)
    saved = await _post(client, url, top, **{f"f{INDEX}.0": "First"})
    assert saved.status_code == 200, saved.text
    assert await _parties(ctx, site, url) == ["First", *shifted[1:]]


async def test_a_tab_saves_its_window_again_and_again(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A save's answer leaves the page as it is (focus stays where the person went): it
    sends the new digest of the window it wrote, out of band, so the tab's next save is
    checked against the rows it holds now, not refused as if another tab had changed
    them. A second tab that showed the rows before either save is still refused."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    page = (await client.get(url)).text
    tab, other = FormTab.of(page), FormTab.of(page)
    shown = tab.value(f"digest.{INDEX}")
    for row in range(5):
        saved = await _post(client, url, tab, **{f"f{INDEX}.{row}": f"Changed {row}"})
        assert saved.status_code == 200, saved.text
        assert saved.headers["HX-Reswap"] == "none"
        assert f'id="f{INDEX}-digest"' in saved.text and "hx-swap-oob" in saved.text
    assert tab.value(f"digest.{INDEX}") != shown
    expected = [*(f"Changed {row}" for row in range(5)), *ROWS[5:]]
    assert await _parties(ctx, site, url) == expected
    # The digest the tab holds is the one a reload shows.
    reloaded = FormTab.of((await client.get(url)).text)
    assert tab.value(f"digest.{INDEX}") == reloaded.value(f"digest.{INDEX}")
    # A save that changes nothing in the window keeps its digest (nothing is sent).
    unchanged = await _post(client, url, tab, f0="Ann")
    assert f'id="f{INDEX}-digest"' not in unchanged.text
    assert tab.value(f"digest.{INDEX}") == reloaded.value(f"digest.{INDEX}")

    stale = await _post(client, url, other, **{f"f{INDEX}.10": "Lost"})
    assert stale.status_code == 422 and CHANGED in stale.text
    assert f'id="f{INDEX}-digest"' not in stale.text  # the stale tab is not told it is fresh
    assert await _parties(ctx, site, url) == expected


@pytest.mark.parametrize(
    "digest",
    [None, "", "0" * 32, "x" * 100_000, "é😀\x00", "%00", "a" * 31],
    ids=["missing", "empty", "zeros", "long", "not ascii", "escaped", "short"],
)
async def test_a_forged_or_missing_digest_saves_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, digest: str | None
) -> None:
    """A window's save needs the digest of the rows it showed: without one (a page from
    before it, a hand-made form) or with any other, it is refused at its field (422, never
    a server error) and every row stays; the other fields of the form are saved."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    tab = FormTab.of((await client.get(url)).text)
    form = tab.form(**{f"f{INDEX}.0": "Forged", "f0": "Saved"})
    if digest is None:
        del form[f"digest.{INDEX}"]
    else:
        form[f"digest.{INDEX}"] = digest
    posted = await client.post(url, headers=HX, data=form)
    assert posted.status_code == 422, posted.text
    assert CHANGED in posted.text
    answers = await _answers(ctx, site, url.rsplit("/", 1)[1])
    assert answers["Parties"] == ROWS
    assert answers["Client Name"] == "Saved"


@pytest.mark.parametrize("count", [16, 25, 10**9, -1])
async def test_a_forged_row_count_adds_no_rows(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, count: int
) -> None:
    """The last window of 40 rows shows 15 (`rows.N` = 15). A form saying more added the
    rows past the end, empty: a save that added up to 24 rows no page offered, each
    without *Add a row*. It is refused (422, naming the rows), not cut to the rows there
    are: the form is not one a page made, and saving part of it would drop the rest
    without a word. A count past what a page shows is read as a page's most (25)."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    tab = FormTab.of((await client.get(f"{url}?start.{INDEX}=25")).text)
    assert tab.value(f"rows.{INDEX}") == "15"
    typed = {f"f{INDEX}.{row}": f"Extra {row}" for row in range(40, 50)}
    posted = await _post(client, url, tab, **{f"rows.{INDEX}": str(count)}, **typed)
    if count < 0:  # read as none: no row is shown, so the window's digest does not match
        assert posted.status_code == 422 and CHANGED in posted.text
    else:
        assert posted.status_code == 422, posted.text
        shown = min(count, 25)
        assert f"the form names rows up to {25 + shown}, and Parties has 40" in posted.text
    assert await _parties(ctx, site, url) == ROWS
    # The page's own form saves, and *Add a row* adds the one row it offers.
    added = await _post(client, url, tab, action=f"add:{INDEX}", **{f"f{INDEX}.39": "Last"})
    assert added.status_code == 200, added.text
    assert await _parties(ctx, site, url) == [*ROWS[:39], "Last", None]


async def test_rows_typed_badly_stay_on_the_rows_they_were_typed_over(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A window with a row that cannot be read is shown again as typed, at 422. Those rows
    were typed over the rows the tab showed: if another tab shifted the rows meanwhile,
    the page shown again must not take the shifted rows' digest, or the corrected window
    would be saved over rows it never showed."""
    values = list(range(40))
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, AMOUNTS], {"Amounts": values})
    page = (await client.get(url)).text
    first, second = FormTab.of(page), FormTab.of(page)
    await _post(client, url, first, action=f"remove:{INDEX}.3")
    await _post(client, url, first, action=f"add:{INDEX}")
    shifted = [*values[:3], *values[4:], None]

    # The second tab types a row it cannot read, and moves on: it stays, as typed.
    bad = await _post(client, url, second, action=f"rows:{INDEX}:25", **{f"f{INDEX}.5": "five"})
    assert bad.status_code == 422 and 'value="five"' in bad.text
    assert second.value(f"f{INDEX}.3") == "3"  # the row the other tab removed, as typed
    # Corrected, the window is still the one shown before the rows shifted: refused.
    stale = await _post(client, url, second, **{f"f{INDEX}.5": "5"})
    assert stale.status_code == 422 and CHANGED in stale.text
    assert (await _answers(ctx, site, url.rsplit("/", 1)[1]))["Amounts"] == shifted


async def test_only_a_row_the_window_showed_is_removed(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A remove button is on each row of the window: a form naming any other row (30, while
    rows 1–25 are shown; one past the end) removes nothing, as no page offered it."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    tab = FormTab.of((await client.get(url)).text)
    for row in (29, 40, -1, 10**12):
        posted = await client.post(url, headers=HX, data=tab.form(action=f"remove:{INDEX}.{row}"))
        assert posted.status_code == 200, posted.text
        assert "removed" not in posted.text
    assert await _parties(ctx, site, url) == ROWS
    removed = await _post(client, url, tab, action=f"remove:{INDEX}.24")
    assert "Row 25 of Parties removed." in removed.text
    assert await _parties(ctx, site, url) == [*ROWS[:24], *ROWS[25:]]


async def test_a_window_pushed_to_the_next_page_by_its_save_saves_again(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page holds as many fields as fit its bound (made small here): the last one on it,
    a window of rows, saved with a long row, is then too large to end the page. The save's
    answer was laid out again from the answers it wrote, so it no longer had that field,
    nor sent its digest: the tab's next save of a row was refused (422) as if another tab
    had changed the rows, while the page said *All answers saved.* The digest of each
    window a save wrote is sent, wherever the answers would lay the page out now."""
    rows = ["Acme", "Beta", "Corp"]
    variables = [*API_VARIABLES, PARTIES, NOTE]
    url, _ = await _interview(ctx, client, site, variables, {"Parties": rows})
    declared = variables_from_json(variables)
    used = sum(
        interview_layout.measure(v, rows if v.name == "Parties" else None).bytes
        for v in declared[: INDEX + 1]
    )
    monkeypatch.setattr(interview_layout, "FIELDS_BYTES", used + 1_000)
    page = (await client.get(url)).text
    assert f'name="digest.{INDEX}"' in page and f'name="fields" value="{INDEX + 1}"' not in page
    tab = FormTab.of(page)

    long_row = "Acme " * 400
    saved = await _post(client, url, tab, **{f"f{INDEX}.0": long_row})
    assert saved.status_code == 200, saved.text
    again = await _post(client, url, tab, **{f"f{INDEX}.1": "Beta LLP"})
    assert again.status_code == 200, again.text
    assert "All answers saved." in again.text
    assert await _parties(ctx, site, url) == [long_row, "Beta LLP", "Corp"]


async def test_a_refused_window_the_save_moved_off_the_page_is_not_called_saved(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last field of a page is a window whose rows another tab changed; a field before
    it is saved long in the same save, which lays the window out on the next page. Its
    message cannot be sent with the fields of the page now, but the save's status counts
    it: it said *All answers saved.* over a window that was not."""
    rows = ["Acme", "Beta", "Corp"]
    variables = [*API_VARIABLES, PARTIES, NOTE]
    url, _ = await _interview(ctx, client, site, variables, {"Parties": rows})
    declared = variables_from_json(variables)
    used = sum(
        interview_layout.measure(v, rows if v.name == "Parties" else None).bytes
        for v in declared[: INDEX + 1]
    )
    monkeypatch.setattr(interview_layout, "FIELDS_BYTES", used + 1_000)
    page = (await client.get(url)).text
    tab, other = FormTab.of(page), FormTab.of(page)
    await _post(client, url, other, **{f"f{INDEX}.2": "Corp Inc"})

    stale = await _post(client, url, tab, f0="Ann " * 400, **{f"f{INDEX}.1": "Beta LLP"})
    assert stale.status_code == 422, stale.text
    assert "All answers saved." not in stale.text
    assert "Saved, except 1 answer" in stale.text
    assert await _parties(ctx, site, url) == ["Acme", "Beta", "Corp Inc"]


async def test_typing_sent_as_the_page_goes_away_after_a_save_not_yet_answered_is_saved(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A row typed and left is saved (htmx); another row is typed and the page left before
    that save's answer came back. What was typed is sent as the page goes away
    (interview.js), with the digest from before the first save: the rows it wrote are no
    longer the ones the page showed, and the second row was refused, lost with the page.
    Each row of a window now holds either what the page showed or already what the form
    posts: the window is saved; only a row holding something else refuses it."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    tab = FormTab.of((await client.get(url)).text)
    first = await client.post(url, headers=HX, data=tab.form(**{f"f{INDEX}.0": "First"}))
    assert first.status_code == 200, first.text
    # Its answer never reaches the tab: the page is gone. The form as the tab holds it.
    sent = await client.post(url, data=tab.form(**{f"f{INDEX}.1": "Second"}))
    assert sent.status_code == 303, sent.text
    assert await _parties(ctx, site, url) == ["First", "Second", *ROWS[2:]]

    # A row the tab did not type, changed by another tab since, still refuses the window.
    other = FormTab.of((await client.get(url)).text)
    await _post(client, url, other, **{f"f{INDEX}.2": "Theirs"})
    stale = await _post(client, url, tab, **{f"f{INDEX}.3": "Lost"})
    assert stale.status_code == 422 and CHANGED in stale.text
    assert await _parties(ctx, site, url) == ["First", "Second", "Theirs", *ROWS[3:]]


async def test_a_save_between_a_step_s_read_and_its_write_is_kept(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window's save writes the repeated variable whole, built from the rows it read:
    another tab's save of a row outside the window, landing between that read and the
    write, was put back to its old value. The write is now made only over the answers the
    step read; here it is refused once, the step is made again from the answers as they
    are, and both saves are kept."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    tab = FormTab.of((await client.get(url)).text)
    theirs = [*ROWS[:30], "Theirs", *ROWS[31:]]
    real = interviews.update_answers
    writes: list[str] = []

    async def another_tab_first(*args: Any, **kwargs: Any) -> Any:
        if not writes:
            writes.append("theirs")
            body = json.dumps({"Parties": theirs}).encode()
            await real(*args[:3], body=body, content_type="application/json")
        writes.append("mine")
        return await real(*args, **kwargs)

    monkeypatch.setattr(interviews, "update_answers", another_tab_first)
    posted = await _post(client, url, tab, **{f"f{INDEX}.0": "Mine"})
    assert posted.status_code == 200, posted.text
    assert writes == ["theirs", "mine", "mine"]  # refused once, made again
    assert await _parties(ctx, site, url) == ["Mine", *theirs[1:]]


async def test_a_step_whose_answers_change_under_every_attempt_saves_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When another save lands between every read and write, the step gives up with a
    conflict rather than write over the rows it did not show: nothing of it is saved."""
    url, _ = await _interview(ctx, client, site, [*API_VARIABLES, PARTIES], {"Parties": ROWS})
    tab = FormTab.of((await client.get(url)).text)
    real = interviews.update_answers
    theirs = list(ROWS)

    async def another_tab_every_time(*args: Any, **kwargs: Any) -> Any:
        theirs[30] += "!"
        body = json.dumps({"Parties": theirs}).encode()
        await real(*args[:3], body=body, content_type="application/json")
        return await real(*args, **kwargs)

    monkeypatch.setattr(interviews, "update_answers", another_tab_every_time)
    posted = await client.post(url, headers=HX, data=tab.form(**{f"f{INDEX}.0": "Mine"}))
    assert posted.status_code == 409, posted.text
    assert "saved by someone else" in posted.text
    assert await _parties(ctx, site, url) == theirs
