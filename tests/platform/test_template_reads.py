"""What each operation on a work item or a template reads of the template, on both stores:
only what it uses. A template's document (up to the upload limit) and its variable
definitions (up to about a megabyte of JSON) were read whole by every answers save, every
list of work items filtered by template, every interview step and completion; on SQLite the
driver reads the row, and decodes the definitions, on the event loop every site's requests
are served by. Now the document is read only to assemble or download it, once, and the
definitions only where they are used, as their stored text, read in the parsing threads
when large (`tests/platform/test_definitions_off_loop.py` holds them half-read) and kept."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import httpx
import pytest
from tests.interview_hooks.hooks_support import (
    API_VARIABLES,
    answer_json,
    hook_over_api,
    serve,
    work_item_over_api,
)
from tests.platform.platform_client import upload_template
from tests.platform.post_processing_support import (
    finish,
    post_processing_webhook,
    running_receiver,
    work_item,
)
from tests.support import SiteUsers, statements_run

from docuhooks.answers import validate
from docuhooks.context import AppContext
from docuhooks.errors import NotFound
from docuhooks.platform import catalog

#: A statement reading the template's document (its size, `length(...)`, is not a read).
_DOCUMENT = re.compile(r"(?<!length\()templates\.content\b")
#: A statement reading the variables as the driver decodes them.
_DECODED = re.compile(r"(?<!CAST\()templates\.variables\b")
#: A statement reading the variables as their stored text, for the parsing threads.
_AS_TEXT = re.compile(r"CAST\(templates\.variables AS")

NOTES = [{"name": f"Note {i}", "type": "text", "repeatDepth": 0, "options": []} for i in range(50)]


async def reads(
    ctx: AppContext, request: Callable[[], Awaitable[httpx.Response]]
) -> tuple[httpx.Response, int, int]:
    """`request`'s response, and how many of its statements read the template's document,
    and its variables as their stored text; no statement may decode the variables."""
    async with statements_run(ctx) as seen:
        response = await request()
    assert response.status_code in (200, 201), response.text[:500]
    assert [s for s in seen if _DECODED.search(s)] == []
    document = sum(1 for s in seen if _DOCUMENT.search(s))
    return response, document, sum(1 for s in seen if _AS_TEXT.search(s))


def forget_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """As after a start: no template's variables are kept yet."""
    monkeypatch.setattr(validate, "_TEMPLATE_VARIABLES", OrderedDict())


async def test_each_operation_reads_only_what_it_uses_of_the_template(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = await work_item_over_api(client, site, variables=[*API_VARIABLES, *NOTES])
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{item.id}/interviews", headers=user)
    interview = f"/api/v1/interviews/{opened.json()['id']}"
    forget_variables(monkeypatch)

    # An answers save: the variables, once, to fit the answers; then they are kept.
    def save() -> Awaitable[httpx.Response]:
        return client.put(f"{interview}/answers", json={"Fee": 99}, headers=user)

    assert (await reads(ctx, save))[1:] == (0, 1)
    assert (await reads(ctx, save))[1:] == (0, 0)
    # Showing the interview, or the work items of the template: neither.
    _, *shown = await reads(ctx, lambda: client.get(interview, headers=user))
    assert shown == [0, 0]
    listed, *filtered = await reads(
        ctx, lambda: client.get(f"/api/v1/workitems?templateId={item.template_id}", headers=user)
    )
    assert filtered == [0, 0]
    assert [i["id"] for i in listed.json()["items"]] == [item.id]

    # Finishing: the document, once (not again in the transaction that stores the result),
    # and the variables, as text when they are not kept.
    forget_variables(monkeypatch)
    finished, *used = await reads(ctx, lambda: client.post(f"{interview}/finish", headers=user))
    assert used == [1, 1]
    assert finished.json()["status"] == "Completed" and len(finished.json()["documents"]) == 1

    # Completing a version through the API: neither.
    again = await client.post(f"/api/v1/workitems/{item.id}/interviews", headers=user)
    version = f"/api/v1/workitems/{item.id}/versions/{again.json()['workItemVersionId']}"
    completed, *used = await reads(ctx, lambda: client.put(f"{version}/complete", headers=user))
    assert used == [0, 0]
    assert completed.json()["status"] == "Completed"

    # A quick document: the document and the variables; its download: the document alone.
    forget_variables(monkeypatch)
    template = f"/api/v1/templates/{item.template_id}"
    quick, *used = await reads(
        ctx, lambda: client.post(f"{template}/assemble", json={"Fee": 5}, headers=site.auth())
    )
    assert used == [1, 1] and quick.content.startswith(b"PK")
    forget_variables(monkeypatch)
    download, *used = await reads(ctx, lambda: client.get(f"{template}/content", headers=user))
    assert used == [1, 0] and download.content.startswith(b"PK")


async def test_interview_steps_read_the_variables_only_for_their_webhooks(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening and an interview event read the variables when a webhook is to be called
    (its answers are fitted to them), as text, and not when none is."""
    item = await work_item_over_api(client, site, variables=[*API_VARIABLES, *NOTES])
    user = site.auth("User")
    forget_variables(monkeypatch)

    def open_interview() -> Awaitable[httpx.Response]:
        return client.post(f"/api/v1/workitems/{item.id}/interviews", headers=user)

    opened, *used = await reads(ctx, open_interview)
    assert used == [0, 0]
    event = f"/api/v1/interviews/{opened.json()['id']}/events/Look up client"
    _, *used = await reads(ctx, lambda: client.post(event, headers=user))
    assert used == [0, 0]

    async with serve() as receiver:
        for kind, path in (("InterviewLoadEvent", "/load"), ("CustomInterviewEvent", "/event")):
            extra = {"interviewEventName": "Look up client"} if path == "/event" else {}
            hook = await hook_over_api(
                client, site, f"{receiver.base}{path}", event_type=kind, **extra
            )
            receiver.route(path, hook.verifier(), answer_json({"Client Name": "Jane"}))
        opened, *used = await reads(ctx, open_interview)
        assert used == [0, 1]
        assert opened.json()["warnings"] == [], opened.json()
        forget_variables(monkeypatch)
        event = f"/api/v1/interviews/{opened.json()['id']}/events/Look up client"
        fired, *used = await reads(ctx, lambda: client.post(event, headers=user))
        assert used == [0, 1]
        assert fired.json()["warnings"] == [], fired.json()
    assert [path for path, _ in receiver.seen] == ["/load", "/event"]


async def test_a_post_processed_finish_reads_the_document_once(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finish whose version is post-processed completes when the receiver replies: that
    completion names the template in its event, and reads nothing else of it (it read the
    whole row, document and decoded variables, in its write transaction)."""
    item = await work_item(client, site.auth())
    try:
        async with running_receiver() as receiver:
            await post_processing_webhook(client, site, receiver, template_ids=[item["templateId"]])
            forget_variables(monkeypatch)
            finished, *used = await reads(ctx, lambda: finish(client, site, item))
    finally:
        await ctx.close_transports()
    assert used == [1, 1]
    assert finished.json()["status"] == "Completed", finished.json()
    assert finished.json()["postProcessing"]["status"] == "completed"


async def test_a_template_deleted_between_its_reads_does_not_exist(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operation reads the template (`get_document`, `get_summary`), then its variables
    in another statement: a template with no work items may be deleted in between (a
    quick document). Its variables are then a 404 like the template, not the text "None"
    read as JSON (a 500)."""
    uploaded = await upload_template(client, site.auth())
    assert uploaded.status_code == 201, uploaded.text
    template = SimpleNamespace(
        id=uploaded.json()["id"], sha256=uploaded.json()["sha256"], site_id=site.site_id
    )
    deleted = await client.delete(f"/api/v1/templates/{template.id}", headers=site.auth())
    assert deleted.status_code == 204, deleted.text
    forget_variables(monkeypatch)
    async with ctx.db.read() as conn:
        with pytest.raises(NotFound, match=template.id):
            await catalog.stored_variables(conn, template)
