"""One site's heavy answer work cannot hold up the others, and lists of versions stay small.

Heavy answer operations (reading, overlaying and encoding a large answer set) run in the
answer-parsing threads, at most `answer_parse_threads` of one site's at a time: the rest of
that site's requests wait in its own queue. The order tests hold the heavy work of one site
in its threads with an event, so what they prove does not depend on how fast anything runs.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.platform.platform_client import open_interview, work_item
from tests.support import SiteUsers

from docuhooks.answers import parse_answer_payload
from docuhooks.answers.offload import INLINE_BYTES, LIMITER
from docuhooks.context import AppContext
from docuhooks.platform import interviews
from docuhooks.store.schema import work_item_versions

#: A repeated text answer of about 64 KiB: a large answer set, well under every limit.
LARGE = {"Child Name": ["x" * 200] * 320}
#: How many concurrent clients the heavy site runs.
CLIENTS = 8


async def interview_with(
    client: httpx.AsyncClient,
    site: SiteUsers,
    answers: dict[str, Any],
    beside: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An interview holding `answers` on a new work item (on `beside`'s template), and the
    work item."""
    item = (
        await work_item(client, site.auth())
        if beside is None
        else await another(client, site, beside)
    )
    opened = await open_interview(client, site, item)
    put = await client.put(
        f"/api/v1/interviews/{opened['id']}/answers", json=answers, headers=site.auth("User")
    )
    assert put.status_code == 200, put.text
    return put.json(), item


async def another(
    client: httpx.AsyncClient, site: SiteUsers, beside: dict[str, Any]
) -> dict[str, Any]:
    """A new work item on `beside`'s work group and template."""
    created = await client.post(
        "/api/v1/workitems",
        json={
            "workGroupId": beside["workGroupId"],
            "templateId": beside["templateId"],
            "name": "Another",
        },
        headers=site.auth(),
    )
    assert created.status_code == 201, created.text
    item: dict[str, Any] = created.json()
    return item


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until `condition` holds (a generous bound, only to fail a hang)."""
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


class Gate:
    """Holds the heavy site's work in its thread until opened; records who started, in
    order ("A" for the heavy site, "B" for the other)."""

    def __init__(self, work: Callable[..., Any], is_heavy_site: Callable[..., bool]) -> None:
        self.opened = threading.Event()
        self.started: list[str] = []
        self._lock = threading.Lock()
        self._work = work
        self._is_heavy_site = is_heavy_site

    def __call__(self, *args: Any) -> Any:
        heavy_site = self._is_heavy_site(*args)
        with self._lock:
            self.started.append("A" if heavy_site else "B")
        if heavy_site:
            assert threading.current_thread().name.startswith("answer-parse")
            assert self.opened.wait(timeout=60)
        return self._work(*args)

    def running(self, who: str) -> int:
        with self._lock:
            return self.started.count(who)


async def test_one_sites_heavy_reads_queue_behind_each_other(
    client: httpx.AsyncClient,
    ctx: AppContext,
    site: SiteUsers,
    other_site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads = ctx.settings.answer_parse_threads
    heavy, _ = await interview_with(client, site, LARGE)
    small, small_item = await interview_with(client, other_site, {"Client Name": "Bo"})
    large, _ = await interview_with(client, other_site, LARGE, beside=small_item)
    stored = await client.get(f"/api/v1/interviews/{heavy['id']}/answers", headers=site.auth())
    assert len(stored.content) > INLINE_BYTES
    heavy_text = stored.text.replace(" ", "")
    gate = Gate(interviews.encode_answers, lambda text, _xml: text.replace(" ", "") == heavy_text)
    monkeypatch.setattr(interviews, "encode_answers", gate)

    def answers_of(interview: dict[str, Any], users: SiteUsers) -> Any:
        url = f"/api/v1/interviews/{interview['id']}/answers"
        return client.get(url, headers=users.auth("User"))

    try:
        burst = [asyncio.create_task(answers_of(heavy, site)) for _ in range(CLIENTS)]
        # The site's slots are taken, its other requests wait in its queue, not in the pool.
        await until(lambda: gate.running("A") == threads)
        await until(lambda: LIMITER.waiting(site.site_id) == CLIENTS - threads)
        assert LIMITER.running(site.site_id) == threads
        # Another site's small request is served meanwhile...
        served = await answers_of(small, other_site)
        assert served.status_code == 200 and served.json()["answers"][0]["value"] == "Bo"
        assert not any(task.done() for task in burst)
        # ...and its large one takes the next thread, before the heavy site's queued ones.
        other = asyncio.create_task(answers_of(large, other_site))
        await until(lambda: LIMITER.running(other_site.site_id) == 1)
    finally:
        gate.opened.set()
    results = await asyncio.gather(*burst)
    assert [r.status_code for r in results] == [200] * CLIENTS
    assert all(r.content == results[0].content for r in results)
    assert (await other).json() == large["answers"]
    assert gate.started.index("B") == threads
    assert LIMITER.sites() == 0


async def test_one_sites_heavy_writes_queue_behind_each_other(
    client: httpx.AsyncClient,
    ctx: AppContext,
    site: SiteUsers,
    other_site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads = ctx.settings.answer_parse_threads
    heavy, _ = await interview_with(client, site, {"Client Name": "Al"})
    small, _ = await interview_with(client, other_site, {"Client Name": "Bo"})
    body = httpx.Request("PUT", "/", json=LARGE).content
    assert len(body) > INLINE_BYTES
    gate = Gate(parse_answer_payload, lambda payload, *_: payload == body)
    monkeypatch.setattr(interviews, "parse_answer_payload", gate)

    def put(interview: dict[str, Any], users: SiteUsers, content: bytes) -> Any:
        return client.put(
            f"/api/v1/interviews/{interview['id']}/answers",
            content=content,
            headers=users.auth("User") | {"Content-Type": "application/json"},
        )

    try:
        burst = [asyncio.create_task(put(heavy, site, body)) for _ in range(CLIENTS)]
        await until(lambda: gate.running("A") == threads)
        await until(lambda: LIMITER.waiting(site.site_id) == CLIENTS - threads)
        served = await put(small, other_site, b'{"Fee": 12}')
        assert served.status_code == 200
        assert {a["name"] for a in served.json()["answers"]["answers"]} == {"Client Name", "Fee"}
        assert not any(task.done() for task in burst)
    finally:
        gate.opened.set()
    results = await asyncio.gather(*burst)
    assert [r.status_code for r in results] == [200] * CLIENTS
    read = await client.get(f"/api/v1/interviews/{heavy['id']}", headers=site.auth())
    answers = {a["name"]: a["value"] for a in read.json()["answers"]["answers"]}
    assert answers == {"Client Name": "Al", "Child Name": LARGE["Child Name"]}
    assert results[-1].json()["answers"] == read.json()["answers"]
    assert LIMITER.sites() == 0


async def add_versions(ctx: AppContext, item_id: str, site_id: str, answers: Any, n: int) -> None:
    """`n` completed versions holding `answers`, written as the platform writes them."""
    start = datetime.now(UTC) - timedelta(hours=1)
    async with ctx.db.transaction() as conn:
        for number in range(1, n + 1):
            await conn.execute(
                work_item_versions.insert().values(
                    id=str(uuid.uuid4()),
                    work_item_id=item_id,
                    site_id=site_id,
                    version_number=number,
                    status="Completed",
                    answers=answers,
                    created_at=start + timedelta(seconds=number),
                    created_by=None,
                    completed_at=start + timedelta(seconds=number),
                )
            )


async def test_versions_list_is_paged_without_answers(
    client: httpx.AsyncClient, ctx: AppContext, site: SiteUsers
) -> None:
    source, source_item = await interview_with(client, site, LARGE)
    large_answers = source["answers"]
    item = await another(client, site, source_item)
    await add_versions(ctx, item["id"], site.site_id, large_answers, 30)
    url = f"/api/v1/workitems/{item['id']}/versions"

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 12} | ({"cursor": cursor} if cursor else {})
        page = await client.get(url, params=params, headers=site.auth("User"))
        assert page.status_code == 200
        # Thirty versions of about 64 KiB of answers each; a page stays a few KiB.
        assert len(page.content) < 12 * 1024
        assert all("answers" not in version for version in page.json()["items"])
        seen.extend(page.json()["items"])
        pages += 1
        cursor = page.json()["nextCursor"]
        if cursor is None:
            break
    assert pages == 3
    assert [v["versionNumber"] for v in seen] == list(range(30, 0, -1))

    # A version's answers come from the version itself, as stored.
    one = await client.get(f"{url}/{seen[4]['id']}", headers=site.auth("User"))
    assert one.status_code == 200
    assert one.json()["answers"] == large_answers
    assert one.json()["versionNumber"] == 26 and one.json()["documents"] == []
    # The default page is 50; the limit and cursor are checked like every list's.
    assert len((await client.get(url, headers=site.auth())).json()["items"]) == 30
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "bm90IGEgY3Vyc29y"}):
        refused = await client.get(url, params=params, headers=site.auth())
        assert refused.status_code == 422, params
        assert refused.json()["error"]["details"][0]["field"] in {"limit", "cursor"}
