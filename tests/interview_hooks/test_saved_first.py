"""An interview is saved before its InterviewLoadEvent webhooks are called (as
`docs/receiving.md` promises): a receiver that reads it back through the API finds it."""

from __future__ import annotations

import httpx
from aiohttp import web
from tests.interview_hooks.hooks_support import (
    EVENT,
    hook_over_api,
    open_over_api,
    serve,
    values_of,
    work_item_over_api,
)
from tests.support import SiteUsers

from docuhooks.receiver import InterviewLoadEvent


async def test_a_load_hook_can_read_the_interview_it_is_called_about(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item_over_api(client, site)
    looked_up: list[int] = []

    async def read_back(request: web.Request) -> web.Response:
        event = request[EVENT]
        assert isinstance(event, InterviewLoadEvent)
        found = await client.get(
            f"/api/v1/interviews/{event.interview_id}", headers=site.auth("User")
        )
        looked_up.append(found.status_code)
        return web.json_response({"Client Name": f"read back: {found.status_code}"})

    async with serve() as receiver:
        hook = await hook_over_api(client, site, f"{receiver.base}/read-back")
        receiver.route("/read-back", hook.verifier(), read_back)
        opened = await open_over_api(client, site, item)
    assert looked_up == [200]
    assert opened["warnings"] == []
    assert values_of(opened)["Client Name"] == "read back: 200"
