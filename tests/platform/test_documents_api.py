"""The document REST API receivers use, on both stores: list, fetch, replace, add at an
assembled order, complete, under our paths and the source platform's spellings."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import sqlalchemy as sa
from tests.platform.docx_factory import make_docx
from tests.platform.platform_client import DOCX, work_item
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.store.schema import events

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


async def version_in_progress(
    client: httpx.AsyncClient, site: SiteUsers
) -> tuple[dict[str, Any], str]:
    item = await work_item(client, site.auth())
    opened = await client.post(f"/api/v1/workitems/{item['id']}/interviews", headers=site.auth())
    return item, f"/api/v1/workitems/{item['id']}/versions/{opened.json()['workItemVersionId']}"


async def test_add_at_an_order_shifts_later_documents(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    _, version = await version_in_progress(client, site)
    auth = site.auth("User")
    first = await client.post(
        f"{version}/documents",
        params={"fileName": "letter.pdf"},
        content=PDF,
        headers={**auth, "Content-Type": "application/pdf"},
    )
    assert first.status_code == 201, first.text
    assert first.json()["assembledOrder"] == 0 and first.json()["name"] == "letter"
    second = await client.post(
        f"{version}/documents",
        files={"file": ("cover.docx", make_docx(["Cover"]), DOCX)},
        data={"assembledOrder": "0", "name": "Cover page"},
        headers=auth,
    )
    assert second.status_code == 201, second.text
    past_end = await client.post(
        f"{version}/documents",
        params={"fileName": "notes.txt", "assembledorder": "99"},
        content="Notes ✓".encode(),
        headers={**auth, "Content-Type": "text/plain; charset=utf-8"},
    )
    assert past_end.status_code == 201, past_end.text
    listed = (await client.get(f"{version}/documents", headers=auth)).json()
    assert [(d["name"], d["assembledOrder"]) for d in listed] == [
        ("Cover page", 0),
        ("letter", 1),
        ("notes", 2),
    ]
    # The url is on the site's base URL; its path is ours.
    notes_url = httpx.URL(listed[2]["url"])
    assert notes_url.host.endswith(".example")
    notes = await client.get(notes_url.path, headers=auth)
    assert (
        notes.content.decode() == "Notes ✓"
        and notes.headers["content-type"] == "text/plain; charset=utf-8"
    )


async def test_replace_content_and_fetch_it(client: httpx.AsyncClient, site: SiteUsers) -> None:
    _, version = await version_in_progress(client, site)
    auth = site.auth("User")
    added = await client.post(
        f"{version}/documents",
        params={"fileName": "a.pdf"},
        content=PDF,
        headers={**auth, "Content-Type": "application/pdf"},
    )
    doc = added.json()
    replacement = make_docx(["Signed"])
    replaced = await client.put(
        f"{version}/documents/{doc['id']}/content",
        params={"fileName": "a-signed.docx"},
        content=replacement,
        headers={**auth, "Content-Type": DOCX},
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["sha256"] == hashlib.sha256(replacement).hexdigest()
    assert replaced.json()["size"] == len(replacement)
    assert replaced.json()["assembledOrder"] == doc["assembledOrder"]
    content = await client.get(f"{version}/documents/{doc['id']}/content", headers=auth)
    assert content.content == replacement and content.headers["content-type"] == DOCX
    assert 'filename="a-signed.docx"' in content.headers["content-disposition"]
    meta = await client.get(f"{version}/documents/{doc['id']}", headers=auth)
    assert meta.json()["fileName"] == "a-signed.docx" and "content" not in meta.json()


async def test_bytes_must_match_their_content_type(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    _, version = await version_in_progress(client, site)
    auth = site.auth("User")
    for content_type, body in ((DOCX, b"PK not really"), ("application/pdf", b"GIF89a")):
        response = await client.post(
            f"{version}/documents",
            params={"fileName": "x"},
            content=body,
            headers={**auth, "Content-Type": content_type},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == "content"
    nameless = await client.post(
        f"{version}/documents", content=PDF, headers={**auth, "Content-Type": "application/pdf"}
    )
    assert nameless.status_code == 422 and "fileName" in nameless.text
    assert (await client.get(f"{version}/documents", headers=auth)).json() == []


async def test_source_platform_receiver_flow(
    client: httpx.AsyncClient, site: SiteUsers, ctx: AppContext
) -> None:
    """PUT to a new document id with a file name adds it (as the source platform does),
    under its spelling and the `active` version; then PUT …/Complete fires the event once."""
    item, version = await version_in_progress(client, site)
    auth = site.auth("User")
    active = f"/api/v1/Workitems/{item['id']}/versions/active/documents"
    new_id = "B3F1C9E2-8F4A-4C1B-9D3E-2A6B7C8D9E0F"
    created = await client.put(
        f"{active}/{new_id}/Content",
        params={"filename": "summary.pdf", "assembledorder": "0"},
        content=PDF,
        headers={**auth, "Content-Type": "application/pdf"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["id"] == new_id.lower()
    missing = await client.put(
        f"{active}/{'0' * 8}-0000-0000-0000-{'0' * 12}/Content",
        content=PDF,
        headers={**auth, "Content-Type": "application/pdf"},
    )
    assert missing.status_code == 404 and "fileName" in missing.json()["error"]["message"]

    pascal = version.replace("/workitems/", "/WorkItems/").replace("/versions/", "/Versions/")
    listed = await client.get(f"{pascal}/Documents", headers=auth)
    assert [d["id"] for d in listed.json()] == [new_id.lower()]
    completed = await client.put(f"{pascal}/Complete", headers=auth)
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "Completed"
    assert completed.json()["documents"][0]["fileName"] == "summary.pdf"
    again = await client.put(f"{version}/complete", headers=auth)
    assert again.status_code == 409 and "already Completed" in again.json()["error"]["message"]
    frozen = await client.put(
        f"{version}/documents/{new_id}/content",
        content=PDF,
        headers={**auth, "Content-Type": "application/pdf"},
    )
    assert frozen.status_code == 409 and "can no longer change" in frozen.text
    async with ctx.db.read() as conn:
        [event] = (await conn.execute(sa.select(events.c.payload))).scalars()
    assert event["data"]["documents"][0]["id"] == new_id.lower()
    assert event["data"]["versionNumber"] == 1


async def test_another_sites_documents_do_not_exist(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    _, version = await version_in_progress(client, site)
    added = await client.post(
        f"{version}/documents",
        params={"fileName": "a.pdf"},
        content=PDF,
        headers={**site.auth(), "Content-Type": "application/pdf"},
    )
    doc = f"{version}/documents/{added.json()['id']}"
    theirs = other_site.auth()
    assert (await client.get(f"{doc}/content", headers=theirs)).status_code == 404
    put = await client.put(
        f"{doc}/content", content=PDF, headers={**theirs, "Content-Type": "application/pdf"}
    )
    assert put.status_code == 404
    assert (await client.put(f"{version}/complete", headers=theirs)).status_code == 404
