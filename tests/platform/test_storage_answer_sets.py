"""Answer sets count towards a site's storage quota, on both stores. An interview's answers
(up to 5 MiB) are kept on the interview and on its version, every interview opened keeps a
copy, and every new version starts from one: a site saving answer sets could fill the disk
every site shares. Each is counted by the bytes stored (its size, kept beside it, summed
from indexes); a save, an open or a webhook's answers past the quota is a 422
`storage_quota_exceeded` that stores nothing; two saves racing for the last room store one."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.interview_hooks.hooks_support import answer_json, hook_over_api, serve
from tests.platform.platform_client import work_item
from tests.platform.post_processing_support import API, same_kind
from tests.platform.test_storage import PDF, QUOTA_BYTES, kept, refused_by, room_for
from tests.support import SiteUsers, racing_at_the_site_lock

from docuhooks.context import AppContext
from docuhooks.platform import interviews as interviews_service
from docuhooks.platform import storage
from docuhooks.store.schema import interviews, work_item_versions

#: 30,000 bytes as stored (UTF-8), 15,000 characters: sizes are bytes.
VALUE = "é" * 15_000
BIG = len(VALUE.encode())


async def answer_sets(ctx: AppContext, site: SiteUsers) -> list[tuple[str, int, int]]:
    """The site's stored answer sets: the table, the size kept with each, and the bytes its
    stored JSON text takes."""
    found = []
    async with ctx.db.read() as conn:
        for table in (work_item_versions, interviews):
            rows = await conn.execute(
                sa.select(table.c.answers_size, sa.cast(table.c.answers, sa.Text)).where(
                    table.c.site_id == site.site_id
                )
            )
            found += [(table.name, int(size), len(text.encode())) for size, text in rows.all()]
    return found


async def open_interview(client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any]) -> Any:
    return await client.post(f"{API}/workitems/{item['id']}/interviews", headers=site.auth("User"))


async def opened(client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any]) -> str:
    """The address of a new interview on `item`."""
    response = await open_interview(client, site, item)
    assert response.status_code == 201, response.text
    return f"{API}/interviews/{response.json()['id']}"


async def answer(
    client: httpx.AsyncClient, site: SiteUsers, interview: str, value: str
) -> httpx.Response:
    return await client.put(
        f"{interview}/answers", json={"Client Name": value}, headers=site.auth("User")
    )


async def client_name(client: httpx.AsyncClient, site: SiteUsers, interview: str) -> Any:
    """The interview's answer to Client Name, and its version's."""
    shown = (await client.get(interview, headers=site.auth("User"))).json()
    version = await client.get(
        f"{API}/workitems/{shown['workItemId']}/versions/{shown['workItemVersionId']}",
        headers=site.auth(),
    )
    values = [
        {a["name"]: a["value"] for a in body["answers"]["answers"]}.get("Client Name")
        for body in (shown, version.json())
    ]
    return values[0] if values[0] == values[1] else values


async def test_answer_sets_are_counted_by_the_bytes_stored(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Every way answers are stored keeps their size with them, which is what the quota
    sums: saves, a version finished, a new version and the interviews opened on it."""
    item = await work_item(client, site.auth())
    template = await kept(ctx, site)
    assert await answer_sets(ctx, site) == []
    first = await opened(client, site, item)
    assert (await answer(client, site, first, VALUE)).status_code == 200
    finished = await client.post(f"{first}/finish", headers=site.auth("User"))
    assert finished.status_code == 200, finished.text
    (document,) = finished.json()["documents"]
    # Version 2 starts from version 1's answers; the second interview on it is replaced.
    await opened(client, site, item)
    again = await opened(client, site, item)
    assert (await answer(client, site, again, "Jane")).status_code == 200

    sets = await answer_sets(ctx, site)
    assert sorted(table for table, _, _ in sets) == ["interviews"] * 3 + ["work_item_versions"] * 2
    assert [(size, stored) for _, size, stored in sets if size != stored] == []
    # Version 1 and its finished interview; the interview replaced on version 2 gave up its
    # copy (it was version 2's answers, which the one replacing it continues).
    assert len([stored for _, _, stored in sets if stored > BIG]) == 2
    # Answer sets are bytes, not files: the files are the template and the document.
    assert await kept(ctx, site) == storage.Usage(
        template.bytes + document["size"] + sum(size for _, size, _ in sets), 2
    )


async def test_a_save_past_the_quota_is_refused_and_saves_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    interview = await opened(client, site, item)
    assert (await answer(client, site, interview, "Jane")).status_code == 200
    await room_for(ctx, site, BIG)  # for one copy of the answer, not for both
    before, used = await answer_sets(ctx, site), await kept(ctx, site)
    refused_by(await answer(client, site, interview, VALUE), QUOTA_BYTES)
    xml = (
        '<AnswerSet version="1.1"><Answer name="Client Name">'
        f"<TextValue>{VALUE}</TextValue></Answer></AnswerSet>"
    ).encode()
    as_xml = await client.put(
        f"{interview}/answers",
        content=xml,
        headers={**site.auth("User"), "Content-Type": "application/xml"},
    )
    refused_by(as_xml, QUOTA_BYTES)
    assert await answer_sets(ctx, site) == before and await kept(ctx, site) == used
    assert await client_name(client, site, interview) == "Jane"

    # With room for both copies it is taken; then the site is full.
    await room_for(ctx, site, 2 * BIG)
    assert (await answer(client, site, interview, VALUE)).status_code == 200
    await room_for(ctx, site, 0)
    refused_by(await answer(client, site, interview, VALUE + "é"), QUOTA_BYTES)
    # A save that adds nothing is taken, however full the site.
    assert (await answer(client, site, interview, "J")).status_code == 200
    assert await client_name(client, site, interview) == "J"
    # Another site has its own room.
    elsewhere = await opened(client, other_site, await work_item(client, other_site.auth()))
    assert (await answer(client, other_site, elsewhere, "Jane")).status_code == 200


async def test_opening_past_the_quota_opens_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """An interview keeps a copy of its version's answers, and a new version a copy of the
    last one's: past the quota neither is made."""
    item = await work_item(client, site.auth())
    first = await opened(client, site, item)
    assert (await answer(client, site, first, VALUE)).status_code == 200
    # Continuing the version takes no more room: the interview replaced gives up its copy.
    await room_for(ctx, site, len(interviews_service.NO_ANSWERS))
    again = await opened(client, site, item)
    shown = (await client.get(first, headers=site.auth("User"))).json()
    assert shown["status"] == "replaced"
    assert len(await answer_sets(ctx, site)) == 3

    await room_for(ctx, site, 1024 * 1024)
    assert (await client.post(f"{again}/finish", headers=site.auth("User"))).status_code == 200
    await room_for(ctx, site, BIG + BIG // 2)  # for the new version's copy, not its interview's
    refused_by(await open_interview(client, site, item), QUOTA_BYTES)
    versions = await client.get(f"{API}/workitems/{item['id']}/versions", headers=site.auth())
    assert [v["versionNumber"] for v in versions.json()["items"]] == [1]
    assert len(await answer_sets(ctx, site)) == 3


async def test_a_webhooks_answers_past_the_quota_are_refused(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    interview = await opened(client, site, item)
    assert (await answer(client, site, interview, "Jane")).status_code == 200
    try:
        async with serve() as receiver:
            hook = await hook_over_api(
                client,
                site,
                f"{receiver.base}/lookup",
                event_type="CustomInterviewEvent",
                interviewEventName="Look up client",
            )
            receiver.route("/lookup", hook.verifier(), answer_json({"Client Name": VALUE}))
            await room_for(ctx, site, BIG)
            event = f"{interview}/events/Look up client"
            refused_by(await client.post(event, headers=site.auth("User")), QUOTA_BYTES)
            assert await client_name(client, site, interview) == "Jane"
            await room_for(ctx, site, 2 * BIG)
            fired = await client.post(event, headers=site.auth("User"))
            assert fired.status_code == 200, fired.text
    finally:
        await ctx.close_transports()
    assert await client_name(client, site, interview) == VALUE
    assert [
        (size, stored) for _, size, stored in await answer_sets(ctx, site) if size != stored
    ] == []


async def two_interviews(client: httpx.AsyncClient, site: SiteUsers) -> list[str]:
    """Interviews on two work items: their saves lock an interview each."""
    item = await work_item(client, site.auth())
    return [
        await opened(client, site, item),
        await opened(client, site, await same_kind(client, site, item)),
    ]


async def test_two_saves_at_once_for_the_last_room_save_one(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    first, second = await two_interviews(client, site)
    await room_for(ctx, site, 3 * BIG)  # one save's two copies, not two saves'
    results = await asyncio.gather(
        answer(client, site, first, VALUE), answer(client, site, second, VALUE)
    )
    await saved_one(ctx, client, site, [first, second], results)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_saves_racing_for_the_last_room_are_counted_in_turn(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Both saves have read and fitted their answers and reached the site's lock before
    either counts: the second counts the first and is refused, over any number of
    processes."""
    first, second = await two_interviews(client, site)
    await room_for(ctx, site, 3 * BIG)
    results = await racing_at_the_site_lock(
        ctx,
        site.site_id,
        lambda: answer(client, site, first, VALUE),
        lambda: answer(client, site, second, VALUE),
    )
    await saved_one(ctx, client, site, [first, second], results)


async def saved_one(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    interviews: list[str],
    results: Sequence[httpx.Response],
) -> None:
    assert sorted(r.status_code for r in results) == [200, 422], [r.text for r in results]
    refused = next(r for r in results if r.status_code == 422)
    refused_by(refused, QUOTA_BYTES)
    names = [await client_name(client, site, interview) for interview in interviews]
    assert sorted(names, key=str) == sorted([VALUE, None], key=str)
    assert (await kept(ctx, site)).bytes <= ctx.settings.site_storage_quota_bytes


#: A plan step reading a whole table (or a whole index) of every site.
_WHOLE_TABLE = re.compile(r"\bSCAN (documents|storage_usage|post_processing_originals)\b")


async def test_the_count_reads_the_sites_running_totals_from_an_index(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Every save counts what the site keeps, under the site's lock: one statement, which
    reads the site's running totals from their index alone and its originals kept for
    post-processing from theirs, never every site's rows, and none of its answer sets."""
    item = await work_item(client, site.auth())
    await opened(client, site, item)
    statements: list[tuple[str, Any]] = []

    def note(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    engine = ctx.db.engine.sync_engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        async with ctx.db.read() as conn:
            # Through SQLAlchemy, so that the statement is seen.
            await conn.execute(storage._KEPT.statement, {"site_id": site.site_id})
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    (plan,) = await _plans(ctx, statements)
    for index in ("ix_storage_usage_site", "ix_post_processing_originals_site"):
        assert index in plan, (index, plan)
    assert "interviews" not in plan and "work_item_versions" not in plan, plan
    if ctx.db.is_sqlite:
        assert not _WHOLE_TABLE.search(plan), plan
        assert "USING COVERING INDEX ix_storage_usage_site" in plan, plan
    else:
        assert "Seq Scan" not in plan, plan


async def _plans(ctx: AppContext, statements: list[tuple[str, Any]]) -> list[str]:
    """Each statement's plan; on PostgreSQL as the planner makes it when an index serves
    (its test tables are too small for it to prefer one over reading the table)."""
    explain = "EXPLAIN QUERY PLAN " if ctx.db.is_sqlite else "EXPLAIN "
    plans = []
    async with ctx.db.read() as conn:
        if not ctx.db.is_sqlite:
            await conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for statement, parameters in statements:
            rows = (await conn.exec_driver_sql(explain + statement, parameters)).all()
            plans.append("\n".join(str(row[-1]) for row in rows))
    return plans


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
@pytest.mark.parametrize("step", ["open", "save"])
async def test_an_answers_write_and_an_upload_to_its_version_do_not_wait_for_each_other(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, step: str
) -> None:
    """An open or a save counts the answers under the site's lock and then writes to the
    version (the open's insert holds it for its foreign key, a save updates it); an upload
    holds the version, then waits for the site's lock. Both hold the version first: taken
    after the site's lock, with the answers first in line for it, each waited for the other
    until PostgreSQL ended one (a 500)."""
    item = await work_item(client, site.auth())
    first = await open_interview(client, site, item)
    version = f"{API}/workitems/{item['id']}/versions/{first.json()['workItemVersionId']}"
    interview = f"{API}/interviews/{first.json()['id']}"
    await room_for(ctx, site, 1024 * 1024)

    async def answers() -> httpx.Response:
        if step == "open":
            response: httpx.Response = await open_interview(client, site, item)
            return response
        return await answer(client, site, interview, "Jane")

    written, uploaded = await racing_at_the_site_lock(
        ctx,
        site.site_id,
        answers,
        lambda: client.post(
            f"{version}/documents",
            params={"fileName": "letter.pdf"},
            content=PDF,
            headers={**site.auth("User"), "Content-Type": "application/pdf"},
        ),
        in_turn=True,
    )
    assert written.status_code in (200, 201), written.text
    assert uploaded.status_code == 201, uploaded.text


async def test_an_open_whose_webhooks_answers_do_not_fit_is_opened_without_them(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Opening commits the interview (replacing the one open before) before its
    InterviewLoadEvent webhooks are called: their answers past the quota cannot undo that.
    The open is answered with the interview it made, without those answers, and a warning
    naming the webhook and the quota; a 422 there said nothing was opened, while the
    interview the caller was in had been replaced by one it was not told of."""
    item = await work_item(client, site.auth())
    first = await opened(client, site, item)
    assert (await answer(client, site, first, "Jane")).status_code == 200
    try:
        async with serve() as receiver:
            hook = await hook_over_api(client, site, f"{receiver.base}/load")
            receiver.route("/load", hook.verifier(), answer_json({"Client Name": VALUE}))
            await room_for(ctx, site, BIG)  # for the new interview's copy, not the answers
            response = await open_interview(client, site, item)
    finally:
        await ctx.close_transports()
    assert response.status_code == 201, response.text
    body = response.json()
    assert [(w["source"], w["code"], w["webhookId"]) for w in body["warnings"]] == [
        ("webhook", "storage_quota_exceeded", hook.id)
    ]
    assert QUOTA_BYTES in body["warnings"][0]["message"]
    interview = f"{API}/interviews/{body['id']}"
    assert (await client.get(interview, headers=site.auth("User"))).json()["status"] == "open"
    assert await client_name(client, site, interview) == "Jane"
    assert (await client.get(first, headers=site.auth("User"))).json()["status"] == "replaced"
    assert (await kept(ctx, site)).bytes <= ctx.settings.site_storage_quota_bytes


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_an_open_counts_the_answers_a_save_just_wrote(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A save of large answers waits for the site's lock; an open on the same version,
    which has read the version while it was small, waits behind it. The open copies the
    version's answers as they are when it writes, after the save, and counts that size,
    not the one it read first (with which a site passed its quota by an answer set per
    open). The interview it replaces gives up its copy, so the open fits in the room the
    save left."""
    item = await work_item(client, site.auth())
    first = await opened(client, site, item)
    assert (await answer(client, site, first, "Jane")).status_code == 200
    await room_for(ctx, site, 2 * BIG + BIG // 2)  # for the save's two copies, not a third
    saved, reopened = await racing_at_the_site_lock(
        ctx,
        site.site_id,
        lambda: answer(client, site, first, VALUE),
        lambda: open_interview(client, site, item),
        in_turn=True,
    )
    assert saved.status_code == 200, saved.text
    assert reopened.status_code == 201, reopened.text
    assert await client_name(client, site, f"{API}/interviews/{reopened.json()['id']}") == VALUE
    assert (await kept(ctx, site)).bytes <= ctx.settings.site_storage_quota_bytes


async def test_continuing_an_interview_again_and_again_keeps_one_copy_of_its_answers(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Each open on a version in progress replaces the interview open before ("Continue
    interview" in the web UI is one). A replaced interview kept its copy of the answers, so
    continuing a large interview day after day filled the site's quota with copies only a
    delete of the whole work item freed; it keeps none now, and can still be read."""
    item = await work_item(client, site.auth())
    first = await opened(client, site, item)
    assert (await answer(client, site, first, VALUE)).status_code == 200
    once = await kept(ctx, site)
    for _ in range(5):
        await opened(client, site, item)
    # Each replaced interview keeps an empty answer set: a few bytes, not a copy.
    emptied = 5 * len(interviews_service.NO_ANSWERS)
    assert await kept(ctx, site) == storage.Usage(once.bytes + emptied, once.files)
    read = await client.get(first, headers=site.auth("User"))
    assert read.status_code == 200
    assert read.json()["status"] == "replaced" and read.json()["answers"] == {"answers": []}
    latest = await opened(client, site, item)
    assert await client_name(client, site, latest) == VALUE
    sets = await answer_sets(ctx, site)
    assert [(size, stored) for _, size, stored in sets if size != stored] == []
