"""Receivers on a loopback socket that keep the trace headers of every call, and the API
steps the trace tests share: a site with an interview webhook, a post-processing webhook and
a NewWorkItemVersionComplete webhook on one template, and an interview run through them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from aiohttp import web
from tests.platform.platform_client import work_item
from tests.support import SiteUsers

from docuhooks.core.tracecontext import TraceContext, parse_traceparent

API = "/api/v1"


@dataclass
class Call:
    event_type: str
    traceparent: str | None
    tracestate: str | None
    #: The event as sent (read from the HMAC token, unverified: these tests are not about
    #: signing).
    event: dict[str, Any] = field(default_factory=dict)

    @property
    def trace(self) -> TraceContext:
        parsed = parse_traceparent(self.traceparent)
        assert parsed is not None, f"not a valid traceparent: {self.traceparent!r}"
        return parsed


@dataclass
class Receivers:
    """One receiver for every event type; `calls` in the order they came."""

    base: str = ""
    calls: list[Call] = field(default_factory=list)
    #: 202: post-processing in callback mode (the test then calls `completeUrl`).
    post_processing_status: int = 200

    def url(self, event_type: str) -> str:
        return f"{self.base}/{event_type}"

    def of(self, event_type: str) -> list[Call]:
        return [call for call in self.calls if call.event_type == event_type]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        event_type = request.match_info["event_type"]
        token = (await request.post()).get("token") or request.query.get("token")
        event = jwt.decode(str(token), options={"verify_signature": False}) if token else {}
        self.calls.append(
            Call(
                event_type,
                request.headers.get("traceparent"),
                request.headers.get("tracestate"),
                event,
            )
        )
        if event_type == "PostProcessingEvent":
            if self.post_processing_status == 202:
                return web.Response(status=202)
            return web.json_response({"documents": []})  # keep the documents as they are
        if event_type == "InterviewLoadEvent":
            return web.Response(status=204)
        return web.Response(text="ok")


@asynccontextmanager
async def running_receivers() -> AsyncIterator[Receivers]:
    receivers = Receivers()
    app = web.Application()
    app.router.add_route("*", "/{event_type}", receivers.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receivers.base = f"http://127.0.0.1:{port}"
    try:
        yield receivers
    finally:
        await runner.cleanup()


async def webhooks_for_every_step(
    client: httpx.AsyncClient, site: SiteUsers, receivers: Receivers
) -> dict[str, Any]:
    """A work item, and on its template an InterviewLoadEvent, a PostProcessingEvent and a
    NewWorkItemVersionComplete webhook, each calling its receiver; the work item."""
    item = await work_item(client, site.auth())
    for event_type in ("InterviewLoadEvent", "PostProcessingEvent", "NewWorkItemVersionComplete"):
        response = await client.post(
            f"{API}/webhooks",
            json={
                "name": event_type,
                "url": receivers.url(event_type),
                "eventType": event_type,
                "templateIds": [item["templateId"]],
            },
            headers=site.auth(),
        )
        assert response.status_code == 201, response.text
    return item


async def run_interview(
    client: httpx.AsyncClient,
    site: SiteUsers,
    item: dict[str, Any],
    *,
    opening: dict[str, str] | None = None,
    finishing: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Open an interview (with the `opening` headers), answer it, finish it (with the
    `finishing` headers): the finished version."""
    user = site.auth("User")
    opened = await client.post(
        f"{API}/workitems/{item['id']}/interviews", headers={**user, **(opening or {})}
    )
    assert opened.status_code == 201, opened.text
    interview = opened.json()["id"]
    answered = await client.put(
        f"{API}/interviews/{interview}/answers", json={"Client Name": "Jane Doe"}, headers=user
    )
    assert answered.status_code == 200, answered.text
    finished = await client.post(
        f"{API}/interviews/{interview}/finish", headers={**user, **(finishing or {})}
    )
    assert finished.status_code == 200, finished.text
    version: dict[str, Any] = finished.json()
    assert version["status"] == "Completed", version
    return version
