"""The whole platform over real HTTP: upload a template, run an interview with answers in all
three formats, finish, read the assembled DOCX back, and follow the completion event's
document URLs to the same bytes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from tests.platform.docx_factory import document_text
from tests.platform.platform_client import DOCX, upload_template

from docuhooks.app import create_app
from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.store.schema import deliveries, events, webhooks

HOTDOCS_XML = b"""<?xml version="1.0" encoding="UTF-8"?>
<AnswerSet version="1.1">
  <Answer name="Start Date"><DateValue>29/11/2026</DateValue></Answer>
  <Answer name="Child Name">
    <RptValue><TextValue>Ann</TextValue><TextValue>Bob</TextValue><TextValue>Cy</TextValue></RptValue>
  </Answer>
</AnswerSet>"""


@dataclass
class Live:
    url: str
    site_id: str
    admin: dict[str, str]
    user: dict[str, str]
    receiver: tuple[str, str, str]


@pytest.fixture
async def live(ctx: AppContext) -> AsyncIterator[Live]:
    """The app on a loopback socket, in this test's event loop (so it shares the store), with
    a site whose base URL is that socket: event URLs are then fetchable as written."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with ctx.db.transaction() as conn:
        site_id = await identity.create_site(conn, name="Live", base_url=url, now=ctx.now())
        headers = {}
        for role in ("SiteAdministrator", "User"):
            login = f"{role.lower()}@live.example"
            await identity.create_user(
                conn, site_id=site_id, login_name=login, name=role, roles=[role], now=ctx.now()
            )
            token = await identity.create_token(conn, login_name=login, now=ctx.now())
            headers[role] = {"Authorization": f"Bearer {token}"}
        await identity.create_user(
            conn,
            site_id=site_id,
            login_name="archive@live.example",
            name="Archive",
            roles=["User"],
            account_type="ServicePrincipal",
            client_name="live-client",
            password="receiver password",
            now=ctx.now(),
        )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ctx, migrate=False), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.01)
    try:
        yield Live(
            url,
            site_id,
            headers["SiteAdministrator"],
            headers["User"],
            ("live-client", "archive@live.example", "receiver password"),
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_interview_to_document_to_event_over_http(live: Live, ctx: AppContext) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        # A NewWorkItemVersionComplete webhook, so the event gets a delivery to show for it.
        hook = await http.post(
            "/api/v1/webhooks",
            json={
                "name": "Archive",
                "url": "https://archive.example/hook",
                "eventType": "NewWorkItemVersionComplete",
            },
            headers=live.admin,
        )
        assert hook.status_code == 201, hook.text

        template = await upload_template(http, live.admin)
        assert template.status_code == 201, template.text
        assert {v["type"] for v in template.json()["variables"]} == {
            "text",
            "number",
            "date",
            "truefalse",
            "multiplechoice",
        }
        group = await http.post("/api/v1/workgroups", json={"name": "Clients"}, headers=live.admin)
        item = await http.post(
            "/api/v1/workitems",
            json={
                "workGroupId": group.json()["id"],
                "templateId": template.json()["id"],
                "name": "Jane's engagement",
            },
            headers=live.user,
        )
        assert item.status_code == 201, item.text
        work_item_id = item.json()["id"]

        opened = await http.post(f"/api/v1/workitems/{work_item_id}/interviews", headers=live.user)
        assert opened.status_code == 201, opened.text
        interview = opened.json()
        assert interview["versionNumber"] == 1 and interview["answers"] == {"answers": []}
        answers_url = f"/api/v1/interviews/{interview['id']}/answers"

        canonical = {
            "answers": [
                {"name": "Client Name", "type": "text", "value": "Jane & Co <Ltd>"},
                {"name": "Colours", "type": "multiplechoice", "value": ["Red", "Blue"]},
            ]
        }
        first = await http.put(answers_url, json=canonical, headers=live.user)
        assert first.status_code == 200 and first.json()["warnings"] == [], first.text
        shorthand = {"Fee": 1500, "Is Company": True, "Nickname": "JJ"}
        second = await http.put(answers_url, json=shorthand, headers=live.user)
        assert second.status_code == 200, second.text
        assert [w["message"] for w in second.json()["warnings"]] == [
            "answer \"Nickname\": the template has no variable named 'Nickname'; ignored"
        ]
        third = await http.put(
            answers_url,
            content=HOTDOCS_XML,
            headers={**live.user, "Content-Type": "application/xml"},
        )
        assert third.status_code == 200, third.text
        assert {a["name"] for a in third.json()["answers"]["answers"]} == {
            "Client Name",
            "Colours",
            "Fee",
            "Is Company",
            "Start Date",
            "Child Name",
        }

        finished = await http.post(
            f"/api/v1/interviews/{interview['id']}/finish", headers=live.user
        )
        assert finished.status_code == 200, finished.text
        version = finished.json()
        assert version["status"] == "Completed" and version["versionNumber"] == 1
        [document] = version["documents"]
        assert document["contentType"] == DOCX and document["fileName"] == "engagement.docx"

        content = await http.get(document["url"], headers=live.user)
        assert content.status_code == 200
        assert content.headers["content-type"] == DOCX
        assert "engagement.docx" in content.headers["content-disposition"]
        paragraphs, tables = document_text(content.content)
        assert paragraphs == [
            "Client: Jane & Co <Ltd>",
            "Fee: 1500",
            "Start: 29 November 2026",
            "Company client",
            "Colours: Red, Blue",
        ]
        assert tables == [[["#", "Child"], ["1", "Ann"], ["2", "Bob"], ["3", "Cy"]]]
        assert hashlib.sha256(content.content).hexdigest() == document["sha256"]
        assert len(content.content) == document["size"]

        # The completion event, as receivers get it: written with the completion.
        async with ctx.db.read() as conn:
            [row] = (
                await conn.execute(sa.select(events).where(events.c.site_id == live.site_id))
            ).all()
            delivered_to = (
                await conn.execute(
                    sa.select(webhooks.c.name)
                    .join(deliveries, deliveries.c.webhook_id == webhooks.c.id)
                    .where(deliveries.c.event_id == row.id)
                )
            ).scalars()
            assert list(delivered_to) == ["Archive"]
        event = row.payload
        assert event["eventType"] == "NewWorkItemVersionComplete"
        assert event["createdBy"]["loginName"] == "user@live.example"
        data = event["data"]
        assert data["workItemId"] == work_item_id and data["versionNumber"] == 1
        assert data["workItemVersionId"] == version["id"]
        assert data["templateName"] == "Engagement letter"
        assert data["workGroupId"] == group.json()["id"]
        [announced] = data["documents"]
        assert announced["url"].startswith(live.url + "/api/v1/workitems/")

        # A receiver logs in as a service principal and downloads by the event's URL.
        client_name, principal_name, password = live.receiver
        login = await http.post(
            "/api/v1/auth/service-principal-login",
            json={"clientName": client_name, "principalName": principal_name, "password": password},
        )
        assert login.status_code == 201, login.text
        receiver = {"Authorization": f"Bearer {login.json()['token']}"}
        fetched = await http.get(announced["url"], headers=receiver)
        assert fetched.content == content.content
        assert hashlib.sha256(fetched.content).hexdigest() == announced["sha256"]
        # …and by the source platform's spelling of the same path.
        pascal = announced["url"].replace("/workitems/", "/WorkItems/")
        pascal = pascal.replace("/versions/", "/Versions/").replace("/documents/", "/Documents/")
        pascal = pascal.replace("/content", "/Content")
        assert (await http.get(pascal, headers=receiver)).content == content.content

        # The answers read back in HotDocs XML as well.
        xml = await http.get(answers_url, headers={**live.user, "Accept": "application/xml"})
        assert xml.status_code == 200 and b"<RptValue>" in xml.content
        assert base64.b64encode(xml.content)  # it is bytes, as a receiver would store it
        reopened = await http.post(
            f"/api/v1/workitems/{work_item_id}/interviews", headers=live.user
        )
        assert reopened.json()["versionNumber"] == 2
        assert reopened.json()["answers"] == json.loads(json.dumps(version["answers"]))
