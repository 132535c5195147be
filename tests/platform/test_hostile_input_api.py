"""Hostile templates and DOCX archives over the API, on both stores: each is answered 4xx
naming the limit it hit, and the server answers other sites meanwhile."""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import uuid
import zipfile
from typing import Any

import httpx
import pytest
from tests.platform.docx_factory import standard_template
from tests.platform.hostile_docx import (
    LOOPING,
    OUTPUT_BLOW_UP,
    RANGE_OVERFLOW,
    RECURSION,
    archive,
    directory_only,
    document_bomb,
    lying_directory,
    template,
)
from tests.platform.platform_client import DOCX, upload_template, work_item
from tests.platform.post_processing_support import gated_judge_reply_job
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery.transport import TransportResult
from docuhooks.platform.postprocessing import replies
from docuhooks.platform.postprocessing.replies import judge_in_pool
from docuhooks.platform.renderjobs import RenderLimits
from docuhooks.platform.renderpool import RenderPool

MiB = 1024 * 1024
VARIABLES = [
    {"name": "Client Name", "type": "text"},
    {"name": "Fee", "type": "number"},
]
BLOW_UP_ANSWERS = {"Client Name": "n" * 1000, "Fee": 500000}


@pytest.fixture(autouse=True)
def bounded_pool(ctx: AppContext) -> RenderPool:
    """The render limits, tightened so that a looping template is stopped in 3 s."""
    pool = RenderPool(2, RenderLimits(time_seconds=3, output_bytes=8 * MiB))
    ctx.render_pool_override = pool
    return pool


async def hostile_template(client: httpx.AsyncClient, site: SiteUsers, text: str) -> str:
    uploaded = await upload_template(
        client,
        site.auth(),
        content=template(text),
        definition={"name": "Hostile", "variables": VARIABLES},
    )
    assert uploaded.status_code == 201, uploaded.text
    template_id: str = uploaded.json()["id"]
    return template_id


async def quick(
    client: httpx.AsyncClient, site: SiteUsers, template_id: str, answers: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"/api/v1/templates/{template_id}/assemble", json=answers, headers=site.auth("User")
    )


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@pytest.mark.parametrize(
    ("text", "answers", "status", "code", "says"),
    [
        (LOOPING, {}, 422, "render_time_limit", "render_time_limit_seconds"),
        (RANGE_OVERFLOW, {}, 422, "validation_failed", "Range too big"),
        (RECURSION, {}, 422, "validation_failed", "calls itself"),
        (OUTPUT_BLOW_UP, BLOW_UP_ANSWERS, 413, "render_output_too_large", "render_output_limit"),
    ],
    ids=["looping", "range-overflow", "recursion", "output-blow-up"],
)
async def test_a_hostile_quick_document_is_a_4xx_naming_the_limit(
    client: httpx.AsyncClient,
    site: SiteUsers,
    text: str,
    answers: dict[str, Any],
    status: int,
    code: str,
    says: str,
) -> None:
    template_id = await hostile_template(client, site, text)
    response = await quick(client, site, template_id, answers)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert says in error["message"]


async def test_other_sites_are_answered_while_a_looping_render_runs(
    client: httpx.AsyncClient,
    site: SiteUsers,
    other_site: SiteUsers,
    bounded_pool: RenderPool,
) -> None:
    template_id = await hostile_template(client, site, LOOPING)
    hostile = asyncio.create_task(quick(client, site, template_id, {}))
    for _ in range(1000):
        if bounded_pool.busy:
            break
        await asyncio.sleep(0.01)
    assert bounded_pool.busy == 1
    # Proven by order: these complete while the looping render is still running.
    health = await client.get("/healthz")
    listing = await client.get("/api/v1/templates", headers=other_site.auth())
    other = await upload_template(client, other_site.auth())
    assert not hostile.done()
    assert health.status_code == 200
    assert listing.status_code == 200
    assert other.status_code == 201, other.text
    assert error_of(await hostile)["code"] == "render_time_limit"


async def test_finishing_an_interview_on_a_looping_template_keeps_it_open(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    template_id = await hostile_template(client, site, LOOPING)
    group = await client.post("/api/v1/workgroups", json={"name": "G"}, headers=site.auth())
    item = await client.post(
        "/api/v1/workitems",
        json={"workGroupId": group.json()["id"], "templateId": template_id, "name": "Loop"},
        headers=site.auth("User"),
    )
    opened = await client.post(
        f"/api/v1/workitems/{item.json()['id']}/interviews", headers=site.auth("User")
    )
    interview = opened.json()["id"]
    finished = await client.post(
        f"/api/v1/interviews/{interview}/finish", headers=site.auth("User")
    )
    assert finished.status_code == 422, finished.text
    assert error_of(finished)["code"] == "render_time_limit"
    again = await client.get(f"/api/v1/interviews/{interview}", headers=site.auth("User"))
    assert again.json()["status"] == "open"


@pytest.mark.parametrize(
    ("archive", "status", "code"),
    [
        (lambda: document_bomb(40 * MiB), 413, "docx_too_large_uncompressed"),
        (lambda: document_bomb(4 * MiB), 422, "docx_compression_ratio"),
        (lambda: lying_directory(3 * MiB, 2000), 422, "docx_size_mismatch"),
    ],
    ids=["entry-too-large", "compression-ratio", "lying-directory"],
)
async def test_a_bomb_is_refused_as_a_template_and_as_a_document(
    client: httpx.AsyncClient, site: SiteUsers, archive: Any, status: int, code: str
) -> None:
    bomb = archive()
    uploaded = await upload_template(client, site.auth(), content=bomb)
    assert uploaded.status_code == status, uploaded.text
    assert error_of(uploaded)["code"] == code
    assert error_of(uploaded)["details"][0]["field"] == "file"

    item = await work_item(client, site.auth(), site.auth("User"))
    added = await client.post(
        f"/api/v1/workitems/{item['id']}/versions/active/documents?fileName=bomb.docx",
        content=bomb,
        headers={**site.auth("User"), "Content-Type": DOCX},
    )
    assert added.status_code == status, added.text
    assert error_of(added)["code"] == code
    put = await client.put(
        f"/api/v1/workitems/{item['id']}/versions/active/documents/{uuid.uuid4()}/content"
        "?fileName=bomb.docx",
        content=bomb,
        headers={**site.auth("User"), "Content-Type": DOCX},
    )
    assert put.status_code == status, put.text
    assert error_of(put)["code"] == code


async def test_a_damaged_document_part_is_a_422_naming_it(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    with zipfile.ZipFile(io.BytesIO(standard_template())) as original:
        parts = {name: original.read(name) for name in original.namelist()}
    damaged = archive({**parts, "word/document.xml": b"<w:document><w:body"})
    uploaded = await upload_template(client, site.auth(), content=damaged)
    assert uploaded.status_code == 422, uploaded.text
    assert "cannot be read as a template" in error_of(uploaded)["message"]


async def test_a_receiver_returning_a_bomb_has_its_reply_refused(ctx: AppContext) -> None:
    def reply(content: bytes) -> TransportResult:
        document = {
            "action": "add",
            "name": "Signed",
            "fileName": "signed.docx",
            "contentType": DOCX,
            "content": base64.b64encode(content).decode(),
        }
        return TransportResult.response(200, json.dumps({"documents": [document]}).encode())

    # The limit on time is not what this shows: a busy machine may take more than the
    # module's 3 s to expand 32 MiB, and the reply would be refused for that instead.
    pool = RenderPool(1, RenderLimits(time_seconds=120, output_bytes=8 * MiB))
    try:
        refusal = await judge_in_pool(pool, reply(document_bomb(40 * MiB)), site_id="site-a")
        assert not refusal.succeeded
        assert "docx_max_entry_bytes" in (refusal.error or "")
        # 100,001 bare directory entries: refused at the 5,001st, in a render worker.
        refusal = await judge_in_pool(pool, reply(directory_only(100_001)), site_id="site-a")
        assert not refusal.succeeded and refusal.error_class == "invalid_response"
        assert "documents[0]: signed.docx" in (refusal.error or "")
        assert "docx_max_entries" in (refusal.error or "")
        kept = await judge_in_pool(pool, reply(standard_template()), site_id="site-a")
        assert kept.succeeded and kept.documents[0].content == standard_template()
        assert [job for _, job in pool.started] == ["judge_reply_job"] * 3
    finally:
        await pool.close()


async def test_a_reply_the_worker_cannot_read_in_time_is_refused_naming_the_limit(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judging job held past the render time limit (its gate never opens): the reply is
    refused, the documents kept, and the refusal names the limit."""
    monkeypatch.setattr(
        replies,
        "judge_reply_job",
        functools.partial(gated_judge_reply_job, str(tmp_path / "never")),
    )
    pool = RenderPool(1, RenderLimits(time_seconds=1, output_bytes=MiB))
    try:
        reply = TransportResult.response(200, b'{"documents": []}')
        judged = await judge_in_pool(pool, reply, site_id="site-a")
    finally:
        await pool.close()
    assert not judged.succeeded and judged.error_class == "invalid_response"
    error = judged.error or ""
    assert error.startswith("the reply was refused and the documents kept")
    assert "render_time_limit" in error
