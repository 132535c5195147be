"""A real post-processing receiver on a loopback socket (aiohttp), verifying each call with the
SDK, and the API steps the post-processing tests share."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp import web
from tests.platform.docx_factory import make_docx
from tests.platform.platform_client import upload_template, work_item
from tests.support import SiteUsers

from docuhooks.delivery.transport import TransportResult
from docuhooks.platform.postprocessing.replies import judge_reply_job
from docuhooks.platform.renderjobs import RenderLimits
from docuhooks.receiver import HmacSecret, PostProcessingEvent, Verifier

API = "/api/v1"
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"

Reply = Callable[[PostProcessingEvent], Awaitable[web.StreamResponse]]


async def keep_all(event: PostProcessingEvent) -> web.StreamResponse:
    return web.json_response({"documents": []})


@dataclass
class Receiver:
    """Answers each PostProcessingEvent with `reply`; keeps every verified event."""

    url: str = ""
    reply: Reply = keep_all
    verifier: Verifier | None = None
    events: list[PostProcessingEvent] = field(default_factory=list)
    under_way: int = 0
    most_at_once: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.verifier is not None, "set the webhook's secret first"
        body = await request.read()
        event = self.verifier.verify(request.method, str(request.url), request.headers, body)
        assert isinstance(event, PostProcessingEvent)
        self.events.append(event)
        self.under_way += 1
        self.most_at_once = max(self.most_at_once, self.under_way)
        try:
            return await self.reply(event)
        finally:
            self.under_way -= 1


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application(client_max_size=200 * 1024 * 1024)
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def post_processing_webhook(
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    *,
    template_ids: list[str],
    timeout_seconds: int = 5,
) -> dict[str, Any]:
    response = await client.post(
        f"{API}/webhooks",
        json={
            "name": "Stamp documents",
            "url": receiver.url,
            "eventType": "PostProcessingEvent",
            "templateIds": template_ids,
            "timeoutSeconds": timeout_seconds,
        },
        headers=site.auth(),
    )
    assert response.status_code == 201, response.text
    hook: dict[str, Any] = response.json()
    receiver.verifier = Verifier(secrets=[HmacSecret(hook["secret"])], audience=hook["id"])
    return hook


async def same_kind(
    client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any]
) -> dict[str, Any]:
    """Another work item in `item`'s work group, on its template."""
    response = await client.post(
        f"{API}/workitems",
        json={
            "workGroupId": item["workGroupId"],
            "templateId": item["templateId"],
            "name": "Another engagement",
        },
        headers=site.auth(),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def finish(client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any]) -> Any:
    """Open an interview on `item`, answer it, finish it: the response."""
    user = site.auth("User")
    opened = await client.post(f"{API}/workitems/{item['id']}/interviews", headers=user)
    assert opened.status_code == 201, opened.text
    interview = opened.json()["id"]
    answered = await client.put(
        f"{API}/interviews/{interview}/answers", json={"Client Name": "Jane Doe"}, headers=user
    )
    assert answered.status_code == 200, answered.text
    return await client.post(f"{API}/interviews/{interview}/finish", headers=user)


async def version_of(
    client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any], version_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"{API}/workitems/{item['id']}/versions/{version_id}", headers=site.auth()
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def content_of(client: httpx.AsyncClient, site: SiteUsers, url: str) -> bytes:
    response = await client.get(local(url), headers=site.auth("User"))
    assert response.status_code == 200, response.text
    return response.content


def local(url: str) -> str:
    """An address the site announced, as the in-process client asks for it."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def returned(
    action: str, name: str, file_name: str, content_type: str, content: bytes, **extra: Any
) -> dict[str, Any]:
    return {
        "action": action,
        "name": name,
        "fileName": file_name,
        "contentType": content_type,
        "content": base64.b64encode(content).decode("ascii"),
        **extra,
    }


async def second_template(client: httpx.AsyncClient, site: SiteUsers) -> str:
    response = await upload_template(
        client,
        site.auth(),
        content=make_docx(["A letter without placeholders"]),
        definition={"name": "Another letter", "variables": [], "eventElements": []},
    )
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


def gated_judge_reply_job(
    gate: str, limits: RenderLimits, result: TransportResult, document_ids: Any
) -> Any:
    """`judge_reply_job` that first waits (in the render worker) until the file `gate`
    exists: holds a reply's judging under way for as long as a test needs."""
    for _ in range(3000):
        if os.path.exists(gate):
            break
        time.sleep(0.01)
    return judge_reply_job(limits, result, document_ids)


__all__ = ["finish", "work_item"]
