"""What an interview page view asks the store: how many webhooks each of its buttons (the
template's interview event elements) would call is read in one statement, however many
buttons the template has."""

from __future__ import annotations

import httpx
from tests.interview_hooks.hooks_support import API_VARIABLES, hook_over_api, work_item_over_api
from tests.support import SiteUsers, statements_run
from tests.ui.ui_support import make_user, sign_in

from docuhooks.context import AppContext

#: As many buttons as a template may have (`catalog.MAX_EVENT_ELEMENTS`) would do as well;
#: forty show a statement per button as clearly.
BUTTONS = tuple(f"Look up {n}" for n in range(40))


async def _page_statements(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, buttons: tuple[str, ...]
) -> tuple[int, str]:
    """The statements one view of the interview page of a template with `buttons` runs,
    and the page."""
    item = await work_item_over_api(client, site, variables=API_VARIABLES, event_elements=buttons)
    opened = await client.post(f"/api/v1/workitems/{item.id}/interviews", headers=site.auth("User"))
    assert opened.status_code == 201, opened.text
    url = f"/ui/interviews/{opened.json()['id']}"
    assert (await client.get(url)).status_code == 200  # what a first view reads once is read
    # As a view a few seconds later: the process's match cache has forgotten its matches.
    ctx.webhook_targets.clear()
    async with statements_run(ctx) as statements:
        page = await client.get(url)
    assert page.status_code == 200, page.text[:500]
    return len(statements), page.text


async def test_the_buttons_webhooks_are_counted_in_one_statement(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    """Each button says how many services it asks; they were matched one button at a time,
    a statement or two each: 500 for a template at the limit, on every view of the page."""
    for name in ("Look up 3", "Look up 3", "Look up 7"):
        await hook_over_api(
            client,
            site,
            "https://receiver.example/hook",
            event_type="CustomInterviewEvent",
            interviewEventName=name,
        )
    await sign_in(client, await make_user(ctx, site.site_id, "User"))
    many, page = await _page_statements(ctx, client, site, BUTTONS)
    assert page.count("Asking 0 services…") == len(BUTTONS) - 2
    assert 'data-progress="Look up 3: Asking 2 services…"' in page
    assert 'data-progress="Look up 7: Asking 1 service…"' in page

    await sign_in(client, await make_user(ctx, other_site.site_id, "User"))
    one, page = await _page_statements(ctx, client, other_site, BUTTONS[:1])
    assert 'data-progress="Look up 0: Asking 0 services…"' in page
    assert many == one
