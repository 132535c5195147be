"""The writers of one work item's rows beside each other, on PostgreSQL: finishing an
interview, completing its version through the API, saving its answers, writing its webhooks'
answers, opening an interview.
Each takes the rows in the one order `platform.workitems` gives (the work item, its version,
the version's interviews, the site's lock), so none waits for another that waits for it: a
cycle would have PostgreSQL abort one (a deadlock, 40P01), a 500 to its caller.

Each test pauses one writer once it holds its first rows (at a function it calls next),
starts the other, waits until that one waits for a lock, then lets the first go on: by
order, never by the clock. The one that comes second is told why (409) or does what it asked
on what the first left; neither gets a 500, and nothing is half-written. A deadlock made
for real (through a lock the order does not cover) aborts a finish, a post-processing
driver's settle or its claim, which runs again and does its work once. On both stores, a
completion while the finish's document renders (outside any transaction) has the finish
told so, storing nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from tests.interview_hooks.hooks_support import hook_over_api, serve
from tests.platform.platform_client import open_interview, work_item
from tests.platform.post_processing_support import (
    API,
    PDF,
    Receiver,
    finish,
    local,
    post_processing_webhook,
    same_kind,
    version_of,
)
from tests.platform.test_deletion_api import ActingWhileRendering
from tests.support import MovedClock, SiteUsers, until_waiting_for_locks

from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.platform import completion, storage, workitems
from docuhooks.platform.postprocessing import claiming
from docuhooks.platform.postprocessing import driver as post_processing_driver
from docuhooks.receiver import PostProcessingEvent, PostProcessingResult
from docuhooks.store.schema import attempts, documents, events, interviews, work_item_versions
from docuhooks.store.scoped import advisory_lock, lock_site

#: The races of these tests happen on PostgreSQL only: SQLite's writers take turns.
POSTGRES = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


class Pause:
    """The first call of `module.name` waits, once `reached` is set, until `go_on`; later
    calls (the other writer's) run at once. `after`: it waits once it has run, holding
    what it took, before it returns."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, *, after: bool = False
    ) -> None:
        self.reached = asyncio.Event()
        self.go_on = asyncio.Event()
        original: Callable[..., Awaitable[Any]] = getattr(module, name)
        called = False

        async def paused(*args: Any, **kwargs: Any) -> Any:
            nonlocal called
            first, called = not called, True
            if first and not after:
                self.reached.set()
                await self.go_on.wait()
            result = await original(*args, **kwargs)
            if first and after:
                self.reached.set()
                await self.go_on.wait()
            return result

        monkeypatch.setattr(module, name, paused)


def complete_path(item: dict[str, Any], interview: dict[str, Any]) -> str:
    return f"{API}/workitems/{item['id']}/versions/{interview['workItemVersionId']}/complete"


async def answered(
    client: httpx.AsyncClient, site: SiteUsers
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A work item with an open, answered interview on version 1."""
    item = await work_item(client, site.auth())
    interview = await open_interview(client, site, item)
    saved = await client.put(
        f"{API}/interviews/{interview['id']}/answers",
        json={"Client Name": "Jane Doe"},
        headers=site.auth("User"),
    )
    assert saved.status_code == 200, saved.text
    return item, interview


async def completion_events(ctx: AppContext, item: dict[str, Any]) -> list[dict[str, Any]]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(events.c.payload).where(
                events.c.work_item_id == item["id"],
                events.c.event_type == EventType.NEW_WORK_ITEM_VERSION_COMPLETE.value,
            )
        )
        return [row.payload for row in rows.all()]


async def documents_of(ctx: AppContext, version_id: str) -> int:
    async with ctx.db.read() as conn:
        found = await conn.scalar(
            sa.select(sa.func.count()).where(documents.c.version_id == version_id)
        )
    return int(found or 0)


async def interview_status(ctx: AppContext, interview: dict[str, Any]) -> str:
    async with ctx.db.read() as conn:
        status = await conn.scalar(
            sa.select(interviews.c.status).where(interviews.c.id == interview["id"])
        )
    return str(status)


async def storage_usage(ctx: AppContext, site: SiteUsers) -> storage.Usage:
    async with ctx.db.read() as conn:
        return await storage.usage(conn, site.site_id)


def conflict(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 409, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message


@POSTGRES
async def test_a_finish_beside_a_completion_holding_its_version_is_told_409(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The completion holds the version when the finish, its document rendered, comes to
    store it: the finish waits for the version, the completion goes on to close the
    interview and commits, and the finish is told the interview is finished. It stores
    nothing: one completion event, no document, the site's storage as it was."""
    item, interview = await answered(client, site)
    user = site.auth("User")
    before = await storage_usage(ctx, site)
    pause = Pause(monkeypatch, completion, "complete_version")
    completing = asyncio.create_task(client.put(complete_path(item, interview), headers=user))
    await pause.reached.wait()
    finishing = asyncio.create_task(
        client.post(f"{API}/interviews/{interview['id']}/finish", headers=user)
    )
    await until_waiting_for_locks(ctx, [finishing])
    pause.go_on.set()
    completed, finished = await completing, await finishing

    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "Completed"
    assert completed.json()["documents"] == []
    conflict(finished, f"interview {interview['id']} is already finished")
    assert [e["data"]["documents"] for e in await completion_events(ctx, item)] == [[]]
    assert await documents_of(ctx, interview["workItemVersionId"]) == 0
    assert await interview_status(ctx, interview) == "finished"
    assert await storage_usage(ctx, site) == before


@POSTGRES
async def test_a_completion_beside_a_finish_holding_its_version_is_told_409(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other way round: the finish holds the version, its interview and the document
    it stored when the completion comes; the completion waits, the finish completes the
    version with its document, and the completion is told the version is Completed."""
    item, interview = await answered(client, site)
    user = site.auth("User")
    pause = Pause(monkeypatch, post_processing_driver, "begin")
    finishing = asyncio.create_task(
        client.post(f"{API}/interviews/{interview['id']}/finish", headers=user)
    )
    await pause.reached.wait()
    completing = asyncio.create_task(client.put(complete_path(item, interview), headers=user))
    await until_waiting_for_locks(ctx, [completing])
    pause.go_on.set()
    finished, completed = await finishing, await completing

    assert finished.status_code == 200, finished.text
    assert finished.json()["status"] == "Completed"
    assert len(finished.json()["documents"]) == 1
    conflict(completed, "version 1 is already Completed")
    assert [len(e["data"]["documents"]) for e in await completion_events(ctx, item)] == [1]


@POSTGRES
async def test_a_save_beside_a_completion_holding_its_version_is_told_409(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save of the interview's answers waits for the version the completion holds, then
    finds the interview finished: a 409, and the version keeps the answers it was completed
    with."""
    item, interview = await answered(client, site)
    user = site.auth("User")
    pause = Pause(monkeypatch, completion, "complete_version")
    completing = asyncio.create_task(client.put(complete_path(item, interview), headers=user))
    await pause.reached.wait()
    saving = asyncio.create_task(
        client.put(
            f"{API}/interviews/{interview['id']}/answers",
            json={"Client Name": "Too late"},
            headers=user,
        )
    )
    await until_waiting_for_locks(ctx, [saving])
    pause.go_on.set()
    completed, saved = await completing, await saving

    assert completed.status_code == 200, completed.text
    conflict(saved, f"interview {interview['id']} is already finished")
    version = await client.get(
        f"{API}/workitems/{item['id']}/versions/{interview['workItemVersionId']}", headers=user
    )
    assert [a["value"] for a in version.json()["answers"]["answers"]] == ["Jane Doe"]


@POSTGRES
async def test_webhook_answers_beside_a_completion_holding_their_version_come_too_late(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An opening's webhooks answer while a completion holds the version: the opening waits
    for the version to write their answers, then finds the interview finished, and shows it
    so (their answers came too late, none is written)."""
    item = await work_item(client, site.auth())
    user = site.auth("User")
    pause = Pause(monkeypatch, completion, "complete_version")
    completing: list[asyncio.Task[httpx.Response]] = []

    async def complete_then_answer(request: web.Request) -> web.Response:
        path = f"{API}/workitems/{item['id']}/versions/active/complete"
        completing.append(asyncio.create_task(client.put(path, headers=user)))
        await pause.reached.wait()
        return web.json_response({"Client Name": "Jane Doe"})

    async with serve() as hooks:
        await hook_over_api(client, site, hooks.route("/load", None, complete_then_answer))
        opening = asyncio.create_task(
            client.post(f"{API}/workitems/{item['id']}/interviews", headers=user)
        )
        await pause.reached.wait()
        await until_waiting_for_locks(ctx, [opening])
        pause.go_on.set()
        opened, completed = await opening, await completing[0]
    await ctx.close_transports()

    assert completed.status_code == 200, completed.text
    assert completed.json()["answers"]["answers"] == []
    assert opened.status_code == 201, opened.text
    assert opened.json()["status"] == "finished"
    assert opened.json()["answers"]["answers"] == []


@POSTGRES
async def test_an_open_beside_a_finish_holding_its_version_starts_the_next_version(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interview opened on the work item while its version is being finished: the open
    holds the work item and waits for the version; the finish, writing the version a second
    time, has PostgreSQL check the version's reference to the work item (a key share of its
    row), which the open's lock does not keep out. The finish completes version 1, and the
    open, finding it Completed once it holds it, starts version 2 from its answers."""
    item, interview = await answered(client, site)
    user = site.auth("User")
    pause = Pause(monkeypatch, post_processing_driver, "begin")
    finishing = asyncio.create_task(
        client.post(f"{API}/interviews/{interview['id']}/finish", headers=user)
    )
    await pause.reached.wait()
    opening = asyncio.create_task(
        client.post(f"{API}/workitems/{item['id']}/interviews", headers=user)
    )
    await until_waiting_for_locks(ctx, [opening])
    pause.go_on.set()
    finished, opened = await finishing, await opening

    assert finished.status_code == 200, finished.text
    assert finished.json()["status"] == "Completed"
    assert opened.status_code == 201, opened.text
    assert opened.json()["versionNumber"] == 2
    assert opened.json()["workItemVersionId"] != interview["workItemVersionId"]
    assert [a["value"] for a in opened.json()["answers"]["answers"]] == ["Jane Doe"]
    assert await interview_status(ctx, interview) == "finished"


async def version_numbers(
    client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any]
) -> list[tuple[int, str]]:
    listed = await client.get(f"{API}/workitems/{item['id']}/versions", headers=site.auth())
    assert listed.status_code == 200, listed.text
    return sorted((v["versionNumber"], v["status"]) for v in listed.json()["items"])


@POSTGRES
async def test_two_opens_of_a_new_work_item_start_one_version(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two opens of a work item without a version (a double click): the second waits for
    the work item while the first starts version 1. Having read the versions before it
    waited, it found none; it reads them again once it holds the work item, and continues
    version 1 (replacing the first one's interview) rather than start a second version in
    progress beside it."""
    item = await work_item(client, site.auth())
    user = site.auth("User")
    path = f"{API}/workitems/{item['id']}/interviews"
    pause = Pause(monkeypatch, workitems, "start_version")
    first = asyncio.create_task(client.post(path, headers=user))
    await pause.reached.wait()
    second = asyncio.create_task(client.post(path, headers=user))
    await until_waiting_for_locks(ctx, [second])
    pause.go_on.set()
    opened, again = await first, await second

    assert opened.status_code == 201, opened.text
    assert again.status_code == 201, again.text
    assert again.json()["workItemVersionId"] == opened.json()["workItemVersionId"]
    assert await interview_status(ctx, opened.json()) == "replaced"
    assert await version_numbers(client, site, item) == [(1, "InProgress")]


@POSTGRES
async def test_an_open_behind_one_that_started_the_next_version_continues_it(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two opens while version 1 is being finished: the first holds the work item and waits
    for the version, the second waits for the work item. The finish completes version 1;
    the first open starts version 2; the second, which found version 1 in progress, finds it
    Completed once it holds it, and continues version 2, not start a third."""
    item, interview = await answered(client, site)
    user = site.auth("User")
    path = f"{API}/workitems/{item['id']}/interviews"
    pause = Pause(monkeypatch, post_processing_driver, "begin")
    finishing = asyncio.create_task(
        client.post(f"{API}/interviews/{interview['id']}/finish", headers=user)
    )
    await pause.reached.wait()
    first = asyncio.create_task(client.post(path, headers=user))
    await until_waiting_for_locks(ctx, [first])
    second = asyncio.create_task(client.post(path, headers=user))
    await until_waiting_for_locks(ctx, [first, second])
    pause.go_on.set()
    finished, opened, again = await finishing, await first, await second

    assert finished.status_code == 200, finished.text
    assert opened.status_code == 201, opened.text
    assert again.status_code == 201, again.text
    assert opened.json()["versionNumber"] == again.json()["versionNumber"] == 2
    assert again.json()["workItemVersionId"] == opened.json()["workItemVersionId"]
    assert [a["value"] for a in again.json()["answers"]["answers"]] == ["Jane Doe"]
    assert await interview_status(ctx, opened.json()) == "replaced"
    assert await version_numbers(client, site, item) == [(1, "Completed"), (2, "InProgress")]


@POSTGRES
async def test_a_finish_aborted_to_end_a_deadlock_runs_again(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Should PostgreSQL still end a cycle by aborting a finish (through rows outside the
    work item's order), the finish's transaction runs again, not its caller into a 500. The
    test makes one for real: it holds the site's lock, which the finish waits for holding
    the version; then it asks for the version. Its own deadlock check is put off, so
    PostgreSQL's check aborts the finish, which runs again once the test lets go."""
    item, interview = await answered(client, site)
    # Held to a quota, the finish takes the site's lock to store its document.
    ctx.settings = dataclasses.replace(ctx.settings, site_storage_quota_bytes=1 << 30)
    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        await holder.execute(sa.text("SET LOCAL deadlock_timeout = '1h'"))
        await lock_site(holder, site.site_id)
        finishing = asyncio.create_task(
            client.post(f"{API}/interviews/{interview['id']}/finish", headers=site.auth("User"))
        )
        await until_waiting_for_locks(ctx, [finishing])
        await holder.execute(
            sa.select(work_item_versions.c.id)
            .where(work_item_versions.c.id == interview["workItemVersionId"])
            .with_for_update()
        )
        await holder.rollback()
    finished = await finishing
    assert finished.status_code == 200, finished.text
    assert finished.json()["status"] == "Completed"
    assert [len(e["data"]["documents"]) for e in await completion_events(ctx, item)] == [1]


@pytest.fixture
def idle_driver(ctx: AppContext) -> Iterator[None]:
    """A driver registered but not running: finishing leaves its version in post-processing,
    for the test to drive."""
    ctx.post_processor = post_processing_driver.PostProcessor(ctx)
    yield
    ctx.post_processor = None


async def sign_and_add(event: PostProcessingEvent) -> web.StreamResponse:
    (letter,) = event.documents
    result = (
        PostProcessingResult()
        .replace(letter.id, "Signed", "signed.pdf", "application/pdf", PDF)
        .add("Cover", "cover.pdf", "application/pdf", PDF)
    )
    return web.json_response(result.to_dict())


async def call_attempts(ctx: AppContext, version_id: str) -> int:
    """The attempts the delivery log holds for the version's post-processing call."""
    async with ctx.db.read() as conn:
        record: dict[str, Any] = (
            await conn.execute(
                sa.select(work_item_versions.c.post_processing).where(
                    work_item_versions.c.id == version_id
                )
            )
        ).scalar_one()
        found = await conn.scalar(
            sa.select(sa.func.count()).where(attempts.c.delivery_id == record["deliveryId"])
        )
    return int(found or 0)


@POSTGRES
async def test_a_settle_aborted_to_end_a_deadlock_runs_again(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    idle_driver: None,
) -> None:
    """Should PostgreSQL abort the driver's settling of an inline reply to end a deadlock
    (its completion event meets webhook rows others take in their own order), the settle's
    transaction runs again: the reply applied once, the version completed once, the call
    logged once, and the receiver not called again. The test makes the deadlock for real: it
    holds the work item's order lock, which the settle waits for holding the version (its
    reply's documents and its log written); then it asks for the version. Its own deadlock
    check is put off, so PostgreSQL's check aborts the settle, which runs again once the test
    lets go."""
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    receiver.reply = sign_and_add
    version = (await finish(client, site, item)).json()
    assert version["postProcessing"]["status"] == "pending"
    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        await holder.execute(sa.text("SET LOCAL deadlock_timeout = '1h'"))
        await advisory_lock(holder, completion.ORDER_LOCK_PREFIX + item["id"])
        driving = asyncio.create_task(post_processing_driver.drive_due(ctx))
        await until_waiting_for_locks(ctx, [driving])
        await holder.execute(
            sa.select(work_item_versions.c.id)
            .where(work_item_versions.c.id == version["id"])
            .with_for_update()
        )
        await holder.rollback()
    assert await driving == 1
    assert len(receiver.events) == 1
    done = await version_of(client, site, item, version["id"])
    assert done["status"] == "Completed"
    assert (done["postProcessing"]["status"], done["postProcessing"]["calls"]) == ("completed", 1)
    assert [d["fileName"] for d in done["documents"]] == ["signed.pdf", "cover.pdf"]
    assert await documents_of(ctx, version["id"]) == 2
    (event,) = await completion_events(ctx, item)
    assert [d["fileName"] for d in event["data"]["documents"]] == ["signed.pdf", "cover.pdf"]
    assert await call_attempts(ctx, version["id"]) == 1


@POSTGRES
async def test_a_claim_aborted_to_end_a_deadlock_runs_again(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    idle_driver: None,
) -> None:
    """Should PostgreSQL abort a driver's claim to end a deadlock, its transaction runs again
    and claims the whole batch, not leave it to the next sweep: here a version past its
    deadline (completed with its originals) and one to call (claimed once, its token the
    one that works). The test makes the deadlock for real: it holds the first version's
    work item's order lock, which the claim waits for to complete it, holding its documents
    (put back); then it asks for those documents. Its own deadlock check is put off, so
    PostgreSQL's check aborts the claim, which runs again once the test lets go."""
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    late = (await finish(client, site, item)).json()
    deadline = timedelta(seconds=ctx.settings.post_processing_deadline_seconds)
    ctx.clock = MovedClock(shift=deadline + timedelta(seconds=1))
    other = await same_kind(client, site, item)
    due = (await finish(client, site, other)).json()
    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        await holder.execute(sa.text("SET LOCAL deadlock_timeout = '1h'"))
        await advisory_lock(holder, completion.ORDER_LOCK_PREFIX + item["id"])
        claiming_due = asyncio.create_task(claiming.claim_due(ctx))
        await until_waiting_for_locks(ctx, [claiming_due])
        await holder.execute(
            sa.select(documents.c.id).where(documents.c.version_id == late["id"]).with_for_update()
        )
        await holder.rollback()
    (claimed,) = await claiming_due
    assert claimed.version_id == due["id"]
    timed_out = await version_of(client, site, item, late["id"])
    assert (timed_out["status"], timed_out["postProcessing"]["status"]) == (
        "Completed",
        "timed_out",
    )
    assert len(await completion_events(ctx, item)) == 1
    calling = await version_of(client, site, other, due["id"])
    assert (calling["postProcessing"]["status"], calling["postProcessing"]["calls"]) == (
        "calling",
        1,
    )
    assert calling["postProcessing"]["eventId"] == claimed.event["eventId"]
    assert not receiver.events, "a claim calls nobody"
    completed = await client.put(local(claimed.event["data"]["completeUrl"]), headers=site.auth())
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "Completed"
    assert len(await completion_events(ctx, other)) == 1


async def test_a_completion_while_the_document_renders_has_the_finish_store_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The version is completed through the API while the finish renders its document: the
    finish, holding the version and then its interview to store it, finds the interview
    finished (409), and stores nothing."""
    item, interview = await answered(client, site)
    user = site.auth("User")
    before = await storage_usage(ctx, site)
    pool = ActingWhileRendering.from_settings(ctx.settings)
    assert isinstance(pool, ActingWhileRendering)
    pool.answered = []
    pool.during = lambda: client.put(complete_path(item, interview), headers=user)
    ctx.render_pool_override = pool

    finished = await client.post(f"{API}/interviews/{interview['id']}/finish", headers=user)
    assert pool.answered == [200]
    conflict(finished, f"interview {interview['id']} is already finished")
    assert [e["data"]["documents"] for e in await completion_events(ctx, item)] == [[]]
    assert await documents_of(ctx, interview["workItemVersionId"]) == 0
    assert await storage_usage(ctx, site) == before
