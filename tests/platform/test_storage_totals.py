"""A site's storage is kept as running totals (`storage_usage`, written by triggers on the
tables counted), on both stores: after every kind of write the platform makes (uploads,
replacements, templates, interviews and their versions, post-processing's originals put
back, deletes) and after changes no code makes (a foreign key's cascade, a template's
content replaced, a document moved to another site), each site's totals are what counting
every row again finds (`storage.recount`), and no site's writes count for another. Folding
a site's rows into one loses nothing, on PostgreSQL with writers committing around it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.platform.docx_factory import make_docx
from tests.platform.platform_client import upload_template, work_item
from tests.platform.post_processing_support import (
    API,
    Receiver,
    finish,
    local,
    post_processing_webhook,
    same_kind,
)
from tests.platform.test_storage import PDF, add_pdf, in_progress, room_for
from tests.support import SiteUsers, racing_at_the_site_lock

from docuhooks.context import AppContext
from docuhooks.identity.service import authenticate_token
from docuhooks.platform import documents as documents_service
from docuhooks.platform import storage
from docuhooks.store.schema import (
    documents,
    storage_usage,
    templates,
    work_item_versions,
    work_items,
)


async def counted(ctx: AppContext, *sites: SiteUsers) -> list[storage.Usage]:
    """Each site's totals, checked against a recount of its rows."""
    found = []
    async with ctx.db.read() as conn:
        for site in sites:
            totals = await storage.usage(conn, site.site_id)
            assert totals == await storage.recount(conn, site.site_id), site.site_id
            found.append(totals)
    return found


async def rows_of(ctx: AppContext, site: SiteUsers) -> int:
    async with ctx.db.read() as conn:
        return int(
            await conn.scalar(
                sa.select(sa.func.count()).where(storage_usage.c.site_id == site.site_id)
            )
            or 0
        )


def padded(size: int) -> bytes:
    """A PDF of about `size` bytes."""
    return PDF + b"%" + b"x" * size + b"\n"


async def answer(client: httpx.AsyncClient, site: SiteUsers, interview: str, value: str) -> Any:
    return await client.put(
        f"{interview}/answers", json={"Client Name": value}, headers=site.auth("User")
    )


async def replace(
    client: httpx.AsyncClient, site: SiteUsers, version: str, document_id: str, content: bytes
) -> httpx.Response:
    return await client.put(
        f"{version}/documents/{document_id}/content",
        content=content,
        headers={**site.auth("User"), "Content-Type": "application/pdf"},
    )


async def test_every_kind_of_write_is_counted_as_a_recount_finds(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    other_site: SiteUsers,
    receiver: Receiver,
) -> None:
    both = (site, other_site)
    assert await counted(ctx, *both) == [storage.Usage(0, 0)] * 2
    items = {s.site_id: await work_item(client, s.auth()) for s in both}
    await counted(ctx, *both)

    # Interviews: opened, answered (larger, then smaller), finished (the document assembled),
    # opened again (a new version starting from a copy of the answers), replaced.
    for s in both:
        opened = await client.post(
            f"{API}/workitems/{items[s.site_id]['id']}/interviews", headers=s.auth("User")
        )
        interview = f"{API}/interviews/{opened.json()['id']}"
        assert (await answer(client, s, interview, "é" * 5000)).status_code == 200
        await counted(ctx, *both)
        assert (await answer(client, s, interview, "Jane")).status_code == 200
        finished = await client.post(f"{interview}/finish", headers=s.auth("User"))
        assert finished.status_code == 200, finished.text
        await counted(ctx, *both)
    versions = {s.site_id: await in_progress(client, s, items[s.site_id]) for s in both}
    await in_progress(client, site, items[site.site_id])  # replaces the one just opened
    await counted(ctx, *both)

    # Documents: added, replaced larger and smaller, added under an id of the caller's.
    mine = versions[site.site_id]
    added = await add_pdf(client, site, mine, padded(3000))
    assert added.status_code == 201, added.text
    assert (await add_pdf(client, other_site, versions[other_site.site_id])).status_code == 201
    for size in (9000, 100):
        replaced = await replace(client, site, mine, added.json()["id"], padded(size))
        assert replaced.status_code == 200, replaced.text
        await counted(ctx, *both)
    put = await client.put(
        f"{mine}/documents/{uuid.uuid4()}/content",
        params={"fileName": "extra.pdf"},
        content=padded(500),
        headers={**site.auth("User"), "Content-Type": "application/pdf"},
    )
    assert put.status_code == 201, put.text
    await counted(ctx, *both)

    # Templates: one more uploaded, then deleted.
    extra = await upload_template(
        client,
        site.auth(),
        content=make_docx(["A letter without placeholders"]),
        definition={"name": "Another letter", "variables": [], "eventElements": []},
    )
    assert extra.status_code == 201, extra.text
    await counted(ctx, *both)
    dropped = await client.delete(f"{API}/templates/{extra.json()['id']}", headers=site.auth())
    assert dropped.status_code == 204, dropped.text
    await counted(ctx, *both)

    # Post-processing: the receiver shrinks the letter, adds a document, then fails, and the
    # originals are put back (every document of the version deleted and copied back).
    await post_processing_webhook(client, site, receiver, template_ids=[])
    auth = {**site.auth("User"), "Content-Type": "application/pdf"}

    async def shrink_add_then_fail(event: Any) -> web.StreamResponse:
        (letter,) = event.documents
        assert (await client.put(local(letter.url), content=PDF, headers=auth)).status_code == 200
        # Counted while the originals are kept: the room they would take back included.
        await counted(ctx, *both)
        return web.Response(status=500)

    receiver.reply = shrink_add_then_fail
    processed = await finish(client, site, await same_kind(client, site, items[site.site_id]))
    assert processed.status_code == 200, processed.text
    assert processed.json()["postProcessing"]["status"] == "failed"
    await counted(ctx, *both)

    # Folded, the totals are the same.
    async with ctx.db.transaction() as conn:
        await storage.fold(conn, site.site_id)
    assert await rows_of(ctx, site) == 1
    before_delete = await counted(ctx, *both)

    # A work item deleted with everything it holds; the other site's are untouched.
    gone = await client.delete(f"{API}/workitems/{items[site.site_id]['id']}", headers=site.auth())
    assert gone.status_code == 204, gone.text
    after = await counted(ctx, *both)
    assert after[0].bytes < before_delete[0].bytes and after[1] == before_delete[1]


async def test_changes_no_code_makes_are_counted_too(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    """The triggers count the rows, whatever writes them: a foreign key's cascade (on SQLite
    and on PostgreSQL), a template's content replaced, a document moved to another site."""
    item = await work_item(client, site.auth())
    assert (await finish(client, site, item)).status_code == 200
    version = await in_progress(client, site, item)
    assert (await add_pdf(client, site, version)).status_code == 201
    await work_item(client, other_site.auth())
    await counted(ctx, site, other_site)

    async with ctx.db.transaction() as conn:
        await conn.execute(
            documents.update()
            .where(documents.c.site_id == site.site_id)
            .values(site_id=other_site.site_id)
        )
        await conn.execute(
            templates.update()
            .where(templates.c.site_id == other_site.site_id)
            .values(content=b"shorter than a DOCX")
        )
    moved = await counted(ctx, site, other_site)
    assert moved[1].files == 1 + 2  # its template and the two documents moved to it

    # Deleting the work item's row alone: the database's cascade deletes its versions, and
    # theirs the documents and interviews, each counted by its own table's trigger.
    async with ctx.db.transaction() as conn:
        versions = await conn.scalar(
            sa.select(sa.func.count()).where(work_item_versions.c.work_item_id == item["id"])
        )
        assert versions == 2
        await conn.execute(work_items.delete().where(work_items.c.id == item["id"]))
        assert (
            await conn.scalar(
                sa.select(sa.func.count()).where(work_item_versions.c.work_item_id == item["id"])
            )
            == 0
        )
    after = await counted(ctx, site, other_site)
    async with ctx.db.read() as conn:
        template = (
            await conn.execute(
                sa.select(sa.func.length(templates.c.content)).where(
                    templates.c.site_id == site.site_id
                )
            )
        ).scalar_one()
    assert after[0] == storage.Usage(int(template), 1)
    # The documents moved went with their version, from the site they were moved to.
    assert after[1] == storage.Usage(len(b"shorter than a DOCX"), 1)


async def test_a_refused_write_counts_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A write past the quota rolls back with its trigger's row."""
    version = await in_progress(client, site, await work_item(client, site.auth()))
    await room_for(ctx, site, 10)
    before = await rows_of(ctx, site)
    refused = await add_pdf(client, site, version)
    assert refused.status_code == 422, refused.text
    assert await rows_of(ctx, site) == before
    await counted(ctx, site)


async def filler(ctx: AppContext, site: SiteUsers, rows: int) -> None:
    """`rows` rows of the site's totals adding up to nothing, as that many writes leave."""
    async with ctx.db.transaction() as conn:
        await conn.execute(
            storage_usage.insert(),
            [
                {"site_id": site.site_id, "bytes": size, "files": 0}
                for size in ([7, -7] * (rows // 2) + [0] * (rows % 2))
            ],
        )


@pytest.mark.parametrize("quota", ["on", "off"])
async def test_a_sites_many_rows_are_folded_by_its_next_write(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers, quota: str
) -> None:
    """Past `FOLD_AFTER` rows a write folds them into one, so that counting reads a few
    rows, however many writes the site made: a write that counts (under the site's lock), and
    one that adds nothing a limit counts, or is made with no quota at all (which would
    otherwise add a row for good with every write)."""
    if quota == "off":
        ctx.settings = dataclasses.replace(
            ctx.settings, site_storage_quota_bytes=0, site_storage_quota_files=0
        )
    version = await in_progress(client, site, await work_item(client, site.auth()))
    added = await add_pdf(client, site, version, padded(2000))
    assert added.status_code == 201, added.text
    await work_item(client, other_site.auth())
    await filler(ctx, other_site, storage.FOLD_AFTER + 2)
    content = f"{version}/documents/{added.json()['id']}/content"
    auth = {**site.auth("User"), "Content-Type": "application/pdf"}
    sizes = [10, 500]
    writes = {
        # Counted (under the site's lock) when there is a quota.
        "upload": lambda: add_pdf(client, site, version, padded(100)),
        # Never counted: it adds nothing (and each is smaller than the last: a row each).
        "smaller": lambda: client.put(content, content=padded(sizes.pop()), headers=auth),
    }
    for name, write in writes.items():
        for past in (False, True):
            async with ctx.db.transaction() as conn:
                await storage.fold(conn, site.site_id)
            # With the folded row: FOLD_AFTER rows, or one more.
            await filler(ctx, site, storage.FOLD_AFTER - 1 + past)
            response = await write()
            assert response.status_code in (200, 201), (name, response.text)
            # Folded (and the write's row added), or not yet: the rows read to count.
            expected = 2 if past else storage.FOLD_AFTER + 1
            assert await rows_of(ctx, site) == expected, (name, past)
            await counted(ctx, site, other_site)
    assert await rows_of(ctx, other_site) > storage.FOLD_AFTER  # its own, not folded


# --- random sequences ------------------------------------------------------------------------


@dataclasses.dataclass
class _Site:
    """A site's work item in the sequence: its version in progress, the interview on it,
    the documents added to it."""

    users: SiteUsers
    base: dict[str, Any]
    item: dict[str, Any] | None = None
    version: str | None = None
    interview: str | None = None
    documents: list[str] = dataclasses.field(default_factory=list)
    template: str | None = None


@pytest.fixture
async def two_sites(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> list[_Site]:
    """Set up once for every example of a test: a work item on each site to copy."""
    return [_Site(s, await work_item(client, s.auth())) for s in (site, other_site)]


async def _open(client: httpx.AsyncClient, state: _Site) -> None:
    if state.item is None:
        state.item = await same_kind(client, state.users, state.base)
    opened = await client.post(
        f"{API}/workitems/{state.item['id']}/interviews", headers=state.users.auth("User")
    )
    if opened.status_code == 201:
        body = opened.json()
        if state.version is None or not state.version.endswith(body["workItemVersionId"]):
            state.documents = []
        state.version = f"{API}/workitems/{state.item['id']}/versions/{body['workItemVersionId']}"
        state.interview = f"{API}/interviews/{body['id']}"


async def _step(ctx: AppContext, client: httpx.AsyncClient, state: _Site, step: Any) -> None:
    """One write of the sequence, as a person or an integration would make it; refusals
    (the quota, a version no longer in progress) are part of the sequence."""
    kind, size = step
    users = state.users
    if kind == "open" or state.version is None or state.interview is None:
        await _open(client, state)
    elif kind == "answers":
        await answer(client, users, state.interview, "é" * size)
    elif kind == "upload":
        added = await add_pdf(client, users, state.version, padded(size))
        if added.status_code == 201:
            state.documents.append(added.json()["id"])
    elif kind == "replace" and state.documents:
        await replace(
            client, users, state.version, state.documents[size % len(state.documents)], padded(size)
        )
    elif kind == "finish":
        await client.post(f"{state.interview}/finish", headers=users.auth("User"))
    elif kind == "delete" and state.item is not None:
        await client.delete(f"{API}/workitems/{state.item['id']}", headers=users.auth())
        state.item = state.version = state.interview = None
    elif kind == "template":
        if state.template is None:
            uploaded = await upload_template(
                client,
                users.auth(),
                content=make_docx(["x" * size]),
                definition={"name": f"Letter {uuid.uuid4()}", "variables": [], "eventElements": []},
            )
            if uploaded.status_code == 201:
                state.template = uploaded.json()["id"]
        else:
            await client.delete(f"{API}/templates/{state.template}", headers=users.auth())
            state.template = None
    elif kind == "fold":
        async with ctx.db.transaction() as conn:
            await storage.fold(conn, users.site_id)


_STEPS = st.tuples(
    # Answers, uploads and replacements, the most frequent writes, twice as likely.
    st.sampled_from(
        (
            *("open", "finish", "delete", "template", "fold"),
            *("answers", "upload", "replace") * 2,
        )
    ),
    st.integers(0, 40_000),
)


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    steps=st.lists(st.tuples(st.integers(0, 1), _STEPS), min_size=1, max_size=14),
    room=st.sampled_from([None, 60_000, 400_000]),
)
async def test_random_sequences_of_writes_are_counted_as_a_recount_finds(
    ctx: AppContext,
    client: httpx.AsyncClient,
    two_sites: list[_Site],
    steps: list[tuple[int, Any]],
    room: int | None,
) -> None:
    """Whatever the writes, of either site, in whatever order, refused or not: each site's
    totals are its recount."""
    for state in two_sites:
        state.item = state.version = state.interview = None
    if room is None:
        ctx.settings = dataclasses.replace(ctx.settings, site_storage_quota_bytes=10 * 2**30)
    else:
        await room_for(ctx, two_sites[0].users, room)
    for which, step in steps:
        await _step(ctx, client, two_sites[which], step)
    await counted(ctx, *(state.users for state in two_sites))


# --- folding beside writers (PostgreSQL: SQLite's writers take turns) ---------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_postgres_a_fold_beside_a_writer_loses_nothing_and_waits_for_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A replacement by a smaller document takes no site lock: its row is written, not yet
    committed, while an upload of the site counts, folds and commits. The upload's fold
    does not see that row and leaves it, to count once committed. When the replacement
    has folded first (its rows held until it commits), the upload's fold skips them, and
    neither waits for the other (a wait would hang here, and fail at the bound)."""
    item = await work_item(client, site.auth())
    first = await in_progress(client, site, item)
    second = await in_progress(client, site, await same_kind(client, site, item))
    added = await add_pdf(client, site, first, padded(20_000))
    assert added.status_code == 201, added.text
    document_id = added.json()["id"]
    async with ctx.db.read() as conn:
        principal = await authenticate_token(conn, site.tokens["User"], now=ctx.now())
    assert principal is not None

    async def shrink(conn: Any, size: int) -> None:
        version_id = first.rsplit("/", 1)[1]
        await documents_service.put_content(
            conn,
            principal,
            item["id"],
            version_id,
            document_id,
            content_type="application/pdf",
            content=padded(size),
            now=ctx.now(),
            quota=storage.StorageQuota.from_settings(ctx.settings),
        )

    for folded_first in (False, True):
        if folded_first:
            await filler(ctx, site, storage.FOLD_AFTER + 1)
        async with ctx.db.engine.connect() as shrinking:
            await shrinking.begin()
            await shrink(shrinking, 10_000 if not folded_first else 5_000)
            if not folded_first:
                await filler(ctx, site, storage.FOLD_AFTER + 1)
            async with asyncio.timeout(30):
                uploaded = await add_pdf(client, site, second, padded(1000))
            assert uploaded.status_code == 201, uploaded.text
            await shrinking.commit()
        await counted(ctx, site)
    # The replacement's fold of its rows, its row and the upload's: the upload's fold took
    # none of the rows the replacement held.
    assert await rows_of(ctx, site) == 3


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_postgres_writers_waiting_for_the_site_count_what_a_fold_left(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Two uploads wait for the site's lock while the site has more rows than are folded:
    the first counts, folds and stores; the second then counts the folded row and the
    first's, and is refused the room the first took."""
    item = await work_item(client, site.auth())
    first = await in_progress(client, site, item)
    second = await in_progress(client, site, await same_kind(client, site, item))
    await filler(ctx, site, storage.FOLD_AFTER + 5)
    await room_for(ctx, site, len(PDF) + len(PDF) // 2)
    results = await racing_at_the_site_lock(
        ctx,
        site.site_id,
        lambda: add_pdf(client, site, first),
        lambda: add_pdf(client, site, second),
        in_turn=True,
    )
    assert [r.status_code for r in results] == [201, 422], [r.text for r in results]
    assert await rows_of(ctx, site) == 2
    (kept,) = await counted(ctx, site)
    assert kept.bytes <= ctx.settings.site_storage_quota_bytes


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_postgres_a_fold_rolled_back_gives_its_rows_back_and_readers_count_them_once(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A fold holds the rows it took until its transaction ends. Meanwhile a reader counts
    them as they were (neither the rows twice nor the fold's row, not committed); an upload
    counts, folds only the rows the fold does not hold, and commits; another fold does the
    same. When the first fold rolls back, its rows are back, each counted once, and a fold
    then takes every row of the site."""
    item = await work_item(client, site.auth())
    version = await in_progress(client, site, item)
    assert (await add_pdf(client, site, version, padded(3000))).status_code == 201
    await filler(ctx, site, storage.FOLD_AFTER + 1)
    (before,) = await counted(ctx, site)
    held = await rows_of(ctx, site)
    async with ctx.db.engine.connect() as folding:
        await folding.begin()
        await storage.fold(folding, site.site_id)
        assert await storage.usage(folding, site.site_id) == before  # one row, in its view
        assert await counted(ctx, site) == [before]
        async with asyncio.timeout(30):  # the bound only turns a wait into a failure
            uploaded = await add_pdf(client, site, version, padded(700))
            assert uploaded.status_code == 201, uploaded.text
            async with ctx.db.transaction() as conn:
                await storage.fold(conn, site.site_id)
        (during,) = await counted(ctx, site)
        assert during.files == before.files + 1 and during.bytes > before.bytes
        # The rows the fold holds, and the other folds' one row (the upload's and its own).
        assert await rows_of(ctx, site) == held + 1
        await folding.rollback()
    assert await counted(ctx, site) == [during]
    async with ctx.db.transaction() as conn:
        await storage.fold(conn, site.site_id)
    assert await rows_of(ctx, site) == 1
    assert await counted(ctx, site) == [during]
