"""Drive the platform API the way a user would: upload the standard template, make a work
group and a work item. Shared by the platform API tests and the end-to-end test."""

from __future__ import annotations

import json
from typing import Any

import httpx
from tests.platform.docx_factory import STANDARD_VARIABLES, standard_template
from tests.support import SiteUsers

from docuhooks.platform.catalog import variable_to_json

EVENT_ELEMENTS = ("Look up client",)
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def standard_definition(name: str = "Engagement letter") -> dict[str, Any]:
    return {
        "name": name,
        "variables": [variable_to_json(v) for v in STANDARD_VARIABLES],
        "eventElements": list(EVENT_ELEMENTS),
    }


async def upload_template(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    *,
    content: bytes | None = None,
    definition: dict[str, Any] | str | None = None,
    file_name: str = "engagement.docx",
) -> httpx.Response:
    body = definition if definition is not None else standard_definition()
    return await http.post(
        "/api/v1/templates",
        files={"file": (file_name, content or standard_template(), DOCX)},
        data={"definition": body if isinstance(body, str) else json.dumps(body)},
        headers=headers,
    )


async def work_item(
    http: httpx.AsyncClient, admin: dict[str, str], user: dict[str, str] | None = None
) -> dict[str, Any]:
    """A work group, the standard template and a work item on them; the work item as created."""
    template = await upload_template(http, admin)
    assert template.status_code == 201, template.text
    group = await http.post("/api/v1/workgroups", json={"name": "Clients"}, headers=admin)
    assert group.status_code == 201, group.text
    item = await http.post(
        "/api/v1/workitems",
        json={
            "workGroupId": group.json()["id"],
            "templateId": template.json()["id"],
            "name": "Jane's engagement",
        },
        headers=user or admin,
    )
    assert item.status_code == 201, item.text
    body: dict[str, Any] = item.json()
    return body


async def open_interview(
    client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any]
) -> dict[str, Any]:
    opened = await client.post(
        f"/api/v1/workitems/{item['id']}/interviews", headers=site.auth("User")
    )
    assert opened.status_code == 201, opened.text
    body: dict[str, Any] = opened.json()
    return body
