"""Work groups, templates and work items over the API, on both stores: roles, the site
boundary, id validation, and templates refused with the reason."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa
from tests.platform.docx_factory import document_text, make_docx, standard_template
from tests.platform.platform_client import standard_definition, upload_template, work_item
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.platform import quick
from docuhooks.store.schema import events


async def test_template_upload_reads_back_and_downloads(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    definition = standard_definition()
    definition["variables"].append({"name": "Unused", "type": "text"})
    created = await upload_template(client, site.auth(), definition=definition)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "Engagement letter" and body["fileName"] == "engagement.docx"
    assert body["eventElements"] == ["Look up client"]
    assert body["warnings"] == ['variable "Unused": declared but not used in the document']
    colours = next(v for v in body["variables"] if v["name"] == "Colours")
    assert colours == {
        "name": "Colours",
        "type": "multiplechoice",
        "repeatDepth": 0,
        "options": ["Red", "Green", "Blue"],
    }
    one = await client.get(f"/api/v1/templates/{body['id']}", headers=site.auth("User"))
    assert one.json()["variables"] == body["variables"] and one.json()["warnings"] == []
    listed = await client.get("/api/v1/templates", headers=site.auth("User"))
    assert [t["id"] for t in listed.json()["items"]] == [body["id"]]
    assert listed.json()["items"][0]["size"] == body["size"] == len(standard_template())
    content = await client.get(f"/api/v1/templates/{body['id']}/content", headers=site.auth())
    assert content.content == standard_template()
    again = await upload_template(client, site.auth())
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("content", "definition", "field", "reason"),
    [
        (b"not a zip", None, "file", "not a zip archive"),
        (make_docx(["{{ Client_Name "]), None, "file", "cannot be parsed"),
        (make_docx(["{{ Secret }}"]), None, "definition", "'Secret' in the document matches no"),
        (None, "{not json", "definition", "not valid JSON"),
        (None, {"variables": [{"name": "X", "type": "colour"}]}, "variables[0].type", "colour"),
        (
            None,
            {"variables": [{"name": "C", "type": "multiplechoice"}]},
            "variables[0]",
            "at least one option",
        ),
        (None, {"variables": [{"name": "X", "type": "text", "repeatDepth": 5}]}, "[0]", "0 to 4"),
        (None, {"eventElements": ["Go", " Go "]}, "definition", "declared more than once"),
    ],
)
async def test_unusable_templates_are_refused_with_the_reason(
    client: httpx.AsyncClient,
    site: SiteUsers,
    content: bytes | None,
    definition: dict[str, object] | str | None,
    field: str,
    reason: str,
) -> None:
    if isinstance(definition, dict):
        definition = {**standard_definition(), **definition}
    response = await upload_template(client, site.auth(), content=content, definition=definition)
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert any(field in d["field"] and reason in d["message"] for d in details), details
    assert (await client.get("/api/v1/templates", headers=site.auth())).json()["items"] == []


async def test_only_site_administrators_create_templates_and_work_groups(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    for role in ("IntegrationAdministrator", "User"):
        assert (await upload_template(client, site.auth(role))).status_code == 403
        group = await client.post("/api/v1/workgroups", json={"name": "G"}, headers=site.auth(role))
        assert group.status_code == 403
    assert (await client.get("/api/v1/workgroups")).status_code == 401


async def test_work_items_and_versions(client: httpx.AsyncClient, site: SiteUsers) -> None:
    item = await work_item(client, site.auth(), site.auth("User"))
    assert item["name"] == "Jane's engagement"
    read = await client.get(f"/api/v1/workitems/{item['id']}", headers=site.auth("User"))
    assert read.json() == item
    filtered = await client.get(
        "/api/v1/workitems", params={"workGroupId": item["workGroupId"]}, headers=site.auth()
    )
    assert [w["id"] for w in filtered.json()["items"]] == [item["id"]]
    versions = await client.get(f"/api/v1/workitems/{item['id']}/versions", headers=site.auth())
    assert versions.json() == {"items": [], "nextCursor": None}
    active = await client.get(
        f"/api/v1/workitems/{item['id']}/versions/active", headers=site.auth()
    )
    assert active.status_code == 404 and "no active version" in active.json()["error"]["message"]

    bad = await client.post(
        "/api/v1/workitems",
        json={"workGroupId": "nope", "templateId": item["templateId"], "name": " "},
        headers=site.auth(),
    )
    assert bad.status_code == 422
    assert {d["field"] for d in bad.json()["error"]["details"]} >= {"workGroupId", "name"}


async def test_another_sites_objects_do_not_exist(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    theirs = other_site.auth()
    for path in (
        f"/api/v1/workitems/{item['id']}",
        f"/api/v1/workitems/{item['id']}/versions",
        f"/api/v1/templates/{item['templateId']}",
        f"/api/v1/templates/{item['templateId']}/content",
        f"/api/v1/workgroups/{item['workGroupId']}",
    ):
        assert (await client.get(path, headers=theirs)).status_code == 404, path
    opened = await client.post(f"/api/v1/workitems/{item['id']}/interviews", headers=theirs)
    assert opened.status_code == 404
    created = await client.post(
        "/api/v1/workitems",
        json={"workGroupId": item["workGroupId"], "templateId": item["templateId"], "name": "x"},
        headers=theirs,
    )
    assert created.status_code == 422
    assert (await client.get("/api/v1/workitems", headers=theirs)).json()["items"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workitems/not-a-uuid",
        "/api/v1/workitems/1'%20OR%201=1/versions",
        "/api/v1/workgroups/%00",
        "/api/v1/templates/12345/content",
        "/api/v1/interviews/xyz",
        "/api/v1/workitems/00000000-0000-0000-0000-000000000000/versions/zzz/documents",
    ],
)
async def test_ids_that_are_not_uuids_are_404(
    client: httpx.AsyncClient, site: SiteUsers, path: str
) -> None:
    response = await client.get(path, headers=site.auth())
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


async def test_quick_documents_assemble_without_events(
    client: httpx.AsyncClient, site: SiteUsers, ctx: AppContext
) -> None:
    template = (await upload_template(client, site.auth())).json()
    response = await client.post(
        f"/api/v1/templates/{template['id']}/assemble",
        json={"Client Name": "Quick Ltd", "Fee": "lots"},
        headers=site.auth("User"),
    )
    assert response.status_code == 200, response.text
    paragraphs, _ = document_text(response.content)
    assert paragraphs[0] == "Client: Quick Ltd" and paragraphs[1] == "Fee: "
    assert "Fee" in response.headers["x-docuhooks-warnings"]
    async with ctx.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar() == 0


async def test_the_warnings_header_is_capped_and_counts_the_rest(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """5,000 answers the template does not know: the header names the first 20 and says
    how many more were left out, instead of growing to megabytes."""
    template = (await upload_template(client, site.auth())).json()
    answers = {f"Unknown answer {n}": "x" for n in range(5000)}
    response = await client.post(
        f"/api/v1/templates/{template['id']}/assemble", json=answers, headers=site.auth("User")
    )
    assert response.status_code == 200, response.text
    header = response.headers["x-docuhooks-warnings"]
    assert len(header.encode()) <= quick.MAX_HEADER_BYTES
    warned = json.loads(header)
    assert len(warned) == quick.MAX_HEADER_WARNINGS + 1
    assert "Unknown answer 0" in warned[0]
    assert warned[-1] == f"... and {5000 - quick.MAX_HEADER_WARNINGS} more warnings left out"


def test_long_warnings_are_held_to_the_header_size() -> None:
    header = quick.warnings_header([f"{n}: " + "é" * 2000 for n in range(50)])
    warned = json.loads(header)
    assert len(header.encode()) <= quick.MAX_HEADER_BYTES
    assert 1 <= len(warned) - 1 < quick.MAX_HEADER_WARNINGS
    assert warned[-1] == f"... and {50 - (len(warned) - 1)} more warnings left out"
    assert quick.warnings_header(["one", "two"]) == '["one", "two"]'
