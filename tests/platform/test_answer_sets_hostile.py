"""Hostile answer sets against every route that takes one, with the default limits: each is
a 4xx with a reason (or left out with a warning), never a 5xx; and while the largest answer
set allowed is being read, the server answers other requests (it is read in a parsing
thread, not on the event loop)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from tests.answers.answer_strategies import HOSTILE, hostile_variants
from tests.platform.platform_client import open_interview, work_item
from tests.support import SiteUsers

from docuhooks.answers import DEFAULT_LIMITS, parse_answer_payload
from docuhooks.platform import interviews

XML = "application/xml"
OVER_THE_LIMIT = b"<AnswerSet>" + b" " * DEFAULT_LIMITS.document_bytes + b"</AnswerSet>"
MORE_HOSTILE: list[tuple[bytes, str]] = [
    *HOSTILE,
    (OVER_THE_LIMIT, XML),
    (OVER_THE_LIMIT, "application/json"),
    (b'{"Child Name": ["x"]}', "text/plain"),
    (b'{"Child Name": ' + b"[" * 5 + b'"x"' + b"]" * 5 + b"}", "application/json"),
    (json.dumps({"Client Name": "x" * (64 * 1024 + 1)}).encode(), "application/json"),
    (json.dumps({f"V{i}": 1 for i in range(5001)}).encode(), "application/json"),
]


async def test_no_hostile_answer_set_is_a_5xx_on_any_route(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    opened = await open_interview(client, site, item)
    routes = [
        ("PUT", f"/api/v1/interviews/{opened['id']}/answers"),
        ("PUT", f"/api/v1/Interviews/{opened['id']}/Answers"),
        ("POST", f"/api/v1/templates/{item['templateId']}/assemble"),
    ]
    user = site.auth("User")
    for body, content_type in MORE_HOSTILE:
        for method, url in routes:
            response = await client.request(
                method, url, content=body, headers=user | {"Content-Type": content_type}
            )
            assert response.status_code < 500, (url, body[:60], response.text[:300])
            if response.status_code >= 400:
                error = response.json()["error"]
                assert error["code"] and error["message"]
            else:  # shorthand too deep for its variable: left out, with a warning
                warned = response.headers.get("X-Docuhooks-Warnings") or response.json()["warnings"]
                assert warned, (url, body[:60])
    # Nothing got in.
    read = await client.get(f"/api/v1/interviews/{opened['id']}/answers", headers=user)
    assert read.json() == {"answers": []}
    # Broken variants of valid answer sets: some are still valid, none is a 5xx.
    for body, content_type in hostile_variants(seed=13, count=60):
        for method, url in routes:
            response = await client.request(
                method, url, content=body, headers=user | {"Content-Type": content_type}
            )
            assert response.status_code < 500, (url, body[:60], response.text[:300])
            if response.status_code >= 400:
                assert response.json()["error"]["message"]


def maximal_answer_set() -> bytes:
    """The standard template's repeated text answer, as large as the default limits allow:
    `max_answer_values_per_answer` iterations, just under `max_answer_set_bytes` in all."""
    count = DEFAULT_LIMITS.values_per_answer
    size = (DEFAULT_LIMITS.document_bytes - 100) // count - len("<TextValue></TextValue>")
    value = b"<TextValue>" + b"x" * size + b"</TextValue>"
    body = b'<AnswerSet><Answer name="Child Name"><RptValue>' + value * count
    return body + b"</RptValue></Answer></AnswerSet>"


async def test_other_requests_are_answered_while_the_largest_answer_set_is_read(
    client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real parser runs, wrapped so that it holds on until `/healthz` was answered: if it
    ran on the event loop, nothing else could be answered meanwhile, and the answers would be
    in before the health check (after the wait runs out)."""
    opened = await open_interview(client, site, await work_item(client, site.auth()))
    body = maximal_answer_set()
    assert DEFAULT_LIMITS.document_bytes - 10_000 < len(body) <= DEFAULT_LIMITS.document_bytes
    parsing, release = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def holding_parse(*args: Any) -> Any:
        threads.append(threading.current_thread())
        parsing.set()
        release.wait(timeout=30)
        return parse_answer_payload(*args)

    monkeypatch.setattr(interviews, "parse_answer_payload", holding_parse)
    put = asyncio.create_task(
        client.put(
            f"/api/v1/interviews/{opened['id']}/answers",
            content=body,
            headers=site.auth("User") | {"Content-Type": XML},
        )
    )
    assert await asyncio.to_thread(parsing.wait, 30)
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert not put.done()  # the answer set is still being read
    release.set()
    answered = await put
    assert answered.status_code == 200, answered.text[:300]
    assert (
        len(answered.json()["answers"]["answers"][0]["value"]) == DEFAULT_LIMITS.values_per_answer
    )
    assert threads[0] is not threading.main_thread()
    assert threads[0].name.startswith("answer-parse")
