"""A large template definition is read off the event loop, in the parsing threads under its
site's slots (`answers.offload`): as uploaded (`catalog.read_definition`), and as stored,
the first time a template is used after a start (`answers.load_template_variables`), by
every operation that reads it. While one is read, the server answers other requests."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import pytest
from tests.interview_hooks.hooks_support import (
    API_VARIABLES,
    answer_json,
    hook_over_api,
    serve,
    work_item_over_api,
)
from tests.platform.docx_factory import standard_template
from tests.support import SiteUsers
from tests.ui.ui_support import make_user, sign_in

from docuhooks.answers import validate
from docuhooks.answers.offload import INLINE_BYTES
from docuhooks.context import AppContext
from docuhooks.platform import catalog

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

#: Declarations of well over `INLINE_BYTES` (about 70 bytes each as JSON).
NOTES = [
    {"name": f"Note {i}", "type": "text", "repeatDepth": 0, "options": []} for i in range(1_000)
]


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never happened")


class Held:
    """A step of reading definitions made observable: the first call with large input waits
    for `release` (where it runs: on the event loop, that would stall it), and notes in
    `order` when it has read them."""

    def __init__(self, large: Callable[[Any], bool]) -> None:
        self.large = large
        self.started = threading.Event()
        self.release = threading.Event()
        self.order: list[str] = []

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def held(raw: Any, *args: Any) -> Any:
            if not self.large(raw) or self.started.is_set():
                return real(raw, *args)
            self.started.set()
            self.release.wait(10)
            try:
                return real(raw, *args)
            finally:
                self.order.append("read")

        return held

    async def meanwhile(
        self,
        operation: Awaitable[httpx.Response],
        others: dict[str, Callable[[], Awaitable[httpx.Response]]],
    ) -> httpx.Response:
        """Run `operation`; once it is held, make the `others` requests, one by one, each
        noted in `order` when answered. The operation's response."""
        task = asyncio.ensure_future(operation)
        try:
            await until(self.started.is_set)
            for name, request in others.items():
                response = await request()
                assert response.status_code in (200, 201), response.text[:500]
                self.order.append(name)
        finally:
            self.release.set()
        return await task


async def test_a_large_definition_is_read_while_other_requests_are_answered(
    client: httpx.AsyncClient,
    site: SiteUsers,
    other_site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A definition of about 1 MB (the most a form field holds) took about 0.2 s to read on
    the event loop. Now, while one is held half-read, the health check and another site's
    upload of a small one are answered first."""
    held = Held(lambda raw: len(raw) > INLINE_BYTES)
    monkeypatch.setattr(catalog, "parse_definition", held.wrap(catalog.parse_definition))

    def upload(who: SiteUsers, variables: Iterable[dict[str, Any]]) -> Awaitable[httpx.Response]:
        definition = {"name": "Engagement", "variables": [*API_VARIABLES, *variables]}
        return client.post(
            "/api/v1/templates",
            files={"file": ("engagement.docx", standard_template(), DOCX)},
            data={"definition": json.dumps(definition)},
            headers=who.auth(),
        )

    large = await held.meanwhile(
        upload(site, NOTES),
        {
            "healthz": lambda: client.get("/healthz"),
            "other site's upload": lambda: upload(other_site, []),
        },
    )
    assert held.order == ["healthz", "other site's upload", "read"]
    assert large.status_code == 201, large.text
    assert len(large.json()["variables"]) == len(API_VARIABLES) + len(NOTES)


OPERATIONS = [
    "saving answers",
    "the interview page",
    "opening with a webhook",
    "finishing",
    "a quick document",
    "a test send",
    "the template's page",
]


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_a_large_stored_definition_is_read_while_other_requests_are_answered(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
) -> None:
    """A stored template's variables are read once and kept; the first use after a start
    reads them, and a large template's took a tenth of a second on the event loop. Every
    operation that reads them now does so in the parsing threads: while one is held
    half-read, the health check is answered."""
    item = await work_item_over_api(client, site, variables=[*API_VARIABLES, *NOTES])
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{item.id}/interviews", headers=user)
    interview_id = opened.json()["id"]
    saved = await client.put(
        f"/api/v1/interviews/{interview_id}/answers", json={"Fee": 99}, headers=user
    )
    assert saved.status_code == 200, saved.text
    async with serve() as receiver:
        if operation in ("opening with a webhook", "a test send"):
            hook = await hook_over_api(
                client, site, f"{receiver.base}/load", templateIds=[item.template_id]
            )
            receiver.route("/load", hook.verifier(), answer_json({"Client Name": "Jane"}))
        if operation == "the interview page":
            await sign_in(client, await make_user(ctx, site.site_id, "User"))
        if operation == "the template's page":
            await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
        requests: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
            "saving answers": lambda: client.put(
                f"/api/v1/interviews/{interview_id}/answers", json={"Fee": 100}, headers=user
            ),
            "the interview page": lambda: client.get(f"/ui/interviews/{interview_id}"),
            "opening with a webhook": lambda: client.post(
                f"/api/v1/workitems/{item.id}/interviews", headers=user
            ),
            "finishing": lambda: client.post(
                f"/api/v1/interviews/{interview_id}/finish", headers=user
            ),
            "a quick document": lambda: client.post(
                f"/api/v1/templates/{item.template_id}/assemble",
                json={"Fee": 99},
                headers=site.auth(),
            ),
            "a test send": lambda: client.post(
                f"/api/v1/webhooks/{hook.id}/test", headers=site.auth()
            ),
            "the template's page": lambda: client.get(f"/ui/templates/{item.template_id}"),
        }
        # As after a start: no template's variables are kept yet.
        monkeypatch.setattr(validate, "_TEMPLATE_VARIABLES", OrderedDict())
        held = Held(lambda raw: isinstance(raw, list) and len(raw) > len(NOTES))
        monkeypatch.setattr(
            validate, "variables_from_json", held.wrap(validate.variables_from_json)
        )
        response = await held.meanwhile(
            requests[operation](), {"healthz": lambda: client.get("/healthz")}
        )
    assert response.status_code in (200, 201), response.text[:500]
    assert held.order == ["healthz", "read"]
    if operation == "opening with a webhook":
        assert response.json()["warnings"] == []
        assert receiver.seen, "the webhook was called"
