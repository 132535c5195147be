"""The delivery log API on both stores: deliveries and their attempts, redelivery, recovery,
events, and the test send, with the real worker (`Worker.run_once`) doing the sending."""

from __future__ import annotations

import base64
import json
import random
import re
import struct
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from aiohttp import web
from tests.delivery.delivery_support import make_webhook, queue_event
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import claims as claiming
from docuhooks.delivery.recovery import RecoveryRunner
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.store.schema import deliveries, destinations

URL = "https://receiver.example/hook"
API = "/api/v1"

Handler = Callable[[OutboundRequest], TransportResult]


def worker(ctx: AppContext, *, attempts: int = 1) -> Worker:
    """The real worker; `attempts` attempts in all, the retries 10 minutes apart."""
    schedule = RetrySchedule(delays=(0, *([600] * (attempts - 1))))
    return Worker(ctx, WorkerOptions(schedule=schedule), rng=random.Random(3), worker_id="w1")


def mock(ctx: AppContext, handler: Handler) -> MockTransport:
    transport = MockTransport(handler)
    ctx.transport_override = transport
    return transport


def answer(status: int, body: bytes = b"ok", headers: dict[str, str] | None = None) -> Handler:
    return lambda _request: TransportResult.response(status, body, headers)


def claims(sent: OutboundRequest, secret: str, audience: str) -> dict[str, Any]:
    if sent.body is not None and sent.body.startswith(b"token="):
        token = sent.body.decode().removeprefix("token=")
    else:
        token = sent.url.split("token=", 1)[1]
    decoded: dict[str, Any] = jwt.decode(
        token, secret, algorithms=["HS256"], audience=audience, options={"verify_iat": False}
    )
    return decoded


async def create_hook(
    client: httpx.AsyncClient, site: SiteUsers, event_type: str, **fields: Any
) -> dict[str, Any]:
    body = {"name": f"{event_type} hook", "url": URL, "eventType": event_type, **fields}
    response = await client.post(f"{API}/webhooks", json=body, headers=site.auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# --- listing and reading -----------------------------------------------------------------------


async def test_deliveries_filter_paginate_newest_first(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = []
    for minute in range(5):
        _, (delivery_id,) = await queue_event(
            ctx, site.site_id, now=start + timedelta(minutes=minute), work_item_id=f"wi-{minute}"
        )
        ids.append(delivery_id)
    failing = {ids[1], ids[3]}
    mock(
        ctx,
        lambda r: TransportResult.response(
            500 if r.headers["X-Docuhooks-Delivery-Id"] in failing else 200
        ),
    )
    assert sorted(await worker(ctx).run_once()) == sorted(ids)

    async def listed(**params: Any) -> dict[str, Any]:
        response = await client.get(
            f"{API}/webhooks/{hook}/deliveries", params=params, headers=site.auth()
        )
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        return page

    everything = await listed()
    assert [d["id"] for d in everything["items"]] == ids[::-1]
    assert everything["nextCursor"] is None
    failed = (await listed(status="failed"))["items"]
    assert {d["id"] for d in failed} == failing
    assert all(
        (d["lastStatusCode"], d["lastErrorClass"], d["attemptCount"]) == (500, "http_status", 1)
        for d in failed
    )
    assert {d["id"] for d in (await listed(status="succeeded"))["items"]} == set(ids) - failing
    assert (await listed(status="pending"))["items"] == []

    seen, cursor = [], None
    while True:
        page = await listed(limit=2, **({"cursor": cursor} if cursor else {}))
        seen += [d["id"] for d in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]

    window = await listed(
        since=(start + timedelta(minutes=1)).isoformat(),
        until=(start + timedelta(minutes=3)).isoformat(),
    )
    assert [d["id"] for d in window["items"]] == [ids[2], ids[1]]
    naive = (start + timedelta(minutes=4)).replace(tzinfo=None).isoformat()
    assert [d["id"] for d in (await listed(since=naive))["items"]] == [ids[4]], "UTC"
    assert len((await listed(eventType="NewWorkItemVersionComplete"))["items"]) == 5
    assert (await listed(eventType="InterviewLoadEvent"))["items"] == []

    for bad in ({"status": "lost"}, {"eventType": "Nope"}, {"cursor": "%%%"}, {"limit": 0}):
        response = await client.get(
            f"{API}/webhooks/{hook}/deliveries", params=bad, headers=site.auth()
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["error"]["message"]
    response = await client.get(
        f"{API}/webhooks/{hook}/deliveries",
        params={"since": start.isoformat(), "until": (start - timedelta(1)).isoformat()},
        headers=site.auth(),
    )
    assert response.status_code == 422 and "until" in response.text


async def test_attempt_log_has_every_field_and_no_credentials(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hmac_hook, secret = await make_webhook(ctx, site, URL, name="hmac")
    token_hook = await create_hook(
        client,
        site,
        "NewWorkItemVersionComplete",
        name="legacy",
        authenticationMethod="AccessToken",
        accessToken="very-secret-access-token",
    )
    standard = await create_hook(
        client,
        site,
        "NewWorkItemVersionComplete",
        name="standard",
        authenticationMethod="StandardWebhooks",
    )
    event, delivery_ids = await queue_event(
        ctx, site.site_id, now=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert len(delivery_ids) == 3
    calls = iter([503, 200, 200, 200])
    transport = mock(
        ctx,
        lambda _r: TransportResult.response(
            next(calls), b"x" * 20_000, {"Set-Cookie": "s=1", "Retry-After": "1"}
        ),
    )
    run = worker(ctx, attempts=2)
    await run.run_once()
    # The retry is due now, without waiting; so is the destination, which the 503's
    # Retry-After paused for a second.
    async with ctx.db.transaction() as conn:
        await conn.execute(deliveries.update().values(next_attempt_at=datetime.now(UTC)))
        await conn.execute(destinations.update().values(paused_until=None))
    await run.run_once()

    by_webhook = {}
    for delivery_id in delivery_ids:
        response = await client.get(f"{API}/deliveries/{delivery_id}", headers=site.auth())
        assert response.status_code == 200, response.text
        by_webhook[response.json()["webhookId"]] = response.json()
    detail = by_webhook[hmac_hook]
    assert detail["eventId"] == event.event_id and detail["status"] == "succeeded"
    first = detail["attempts"][0]
    assert first["attemptNumber"] == 1 and first["requestMethod"] == "POST"
    assert first["requestUrl"] == URL
    assert first["requestHeaders"]["X-Docuhooks-Event-Id"] == event.event_id
    assert first["durationMs"] >= 0 and first["startedDate"]
    assert len(first["responseBody"]) == 16 * 1024
    assert first["responseHeaders"]["Retry-After"] == "1"
    assert {a["statusCode"] for hook in by_webhook.values() for a in hook["attempts"]} >= {200}
    assert any(a["errorClass"] == "http_status" for h in by_webhook.values() for a in h["attempts"])
    assert by_webhook[token_hook["id"]]["attempts"][0]["requestHeaders"]["Authorization"] == (
        "[redacted]"
    )
    assert by_webhook[standard["id"]]["attempts"][0]["requestHeaders"]["webhook-signature"] == (
        "[redacted]"
    )

    log_text = json.dumps(list(by_webhook.values()))
    sent_tokens = [
        s.request.body.decode().removeprefix("token=")
        for s in transport.sent
        if s.request.body and s.request.body.startswith(b"token=")
    ]
    assert sent_tokens
    for credential in [secret, "very-secret-access-token", *sent_tokens]:
        assert credential and credential not in log_text
    assert "Bearer" not in log_text and "v1," not in log_text


async def test_interview_attempts_redact_the_token_in_the_url(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await create_hook(client, site, "InterviewLoadEvent")  # HMAC over GET
    transport = mock(ctx, answer(204, b""))
    response = await client.post(f"{API}/webhooks/{hook['id']}/test", headers=site.auth())
    assert response.status_code == 200, response.text
    (sent,) = transport.sent
    assert "token=" in sent.request.url
    jwt_sent = sent.request.url.split("token=", 1)[1]
    detail = (await client.get(response.json()["link"], headers=site.auth())).json()
    text = json.dumps(detail)
    assert jwt_sent not in text and hook["secret"] not in text
    assert re.findall(r"token=([^&\"]*)", text) == ["[redacted]"], text


# --- redelivery -----------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[str]]]:
    """A real HTTP receiver on loopback answering 200; yields its URL and the event ids seen."""
    seen: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request.headers["X-Docuhooks-Event-Id"])
        return web.Response(text="thanks")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/hook", seen
    await runner.cleanup()


async def test_redeliver_sends_the_same_event_again_as_a_new_delivery(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: tuple[str, list[str]],
) -> None:
    url, seen = receiver
    hook, _ = await make_webhook(ctx, site, url)
    event, (original,) = await queue_event(ctx, site.site_id, now=datetime.now(UTC))
    woken: list[bool] = []
    ctx.on_events_committed.append(lambda: woken.append(True))
    try:
        assert await worker(ctx).run_once() == [original]
        assert seen == [event.event_id]

        response = await client.post(f"{API}/deliveries/{original}/redeliver", headers=site.auth())
        assert response.status_code == 202, response.text
        again = response.json()
        assert again["id"] != original and again["eventId"] == event.event_id
        assert (again["status"], again["attemptCount"], again["attempts"]) == ("pending", 0, [])
        assert woken, "the worker is woken after the commit"
        assert await worker(ctx).run_once() == [again["id"]]
        assert seen == [event.event_id, event.event_id]
    finally:
        await ctx.close()

    new = (await client.get(f"{API}/deliveries/{again['id']}", headers=site.auth())).json()
    old = (await client.get(f"{API}/deliveries/{original}", headers=site.auth())).json()
    assert (new["status"], new["attemptCount"], new["attempts"][0]["statusCode"]) == (
        "succeeded",
        1,
        200,
    )
    assert new["attempts"][0]["requestHeaders"]["X-Docuhooks-Attempt"] == "1"
    assert new["attempts"][0]["responseBody"] == "thanks"
    assert len(old["attempts"]) == 1, "the original's history is kept as it ended"
    listed = (await client.get(f"{API}/webhooks/{hook}/deliveries", headers=site.auth())).json()[
        "items"
    ]
    assert [d["id"] for d in listed] == [again["id"], original]
    on_event = (await client.get(f"{API}/events/{event.event_id}", headers=site.auth())).json()
    assert [d["id"] for d in on_event["deliveries"]] == [original, again["id"]]
    assert on_event["payload"]["eventId"] == event.event_id
    audit = (await client.get(f"{API}/webhooks/{hook}/audit", headers=site.auth())).json()
    assert audit[0]["action"] == "delivery.redelivered"
    assert audit[0]["details"]["newDeliveryId"] == again["id"]


async def test_redeliver_a_pending_delivery_makes_it_due_and_refuses_one_in_flight(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    _, (waiting,) = await queue_event(ctx, site.site_id, now=datetime.now(UTC))
    mock(ctx, answer(500))
    await worker(ctx, attempts=3).run_once()
    response = await client.post(f"{API}/deliveries/{waiting}/redeliver", headers=site.auth())
    assert response.status_code == 202, response.text
    assert response.json()["id"] == waiting, "no duplicate of a delivery still pending"
    assert response.json()["status"] == "pending"
    due = datetime.fromisoformat(response.json()["nextAttemptDate"])
    assert due <= datetime.now(UTC)

    async with ctx.db.transaction() as conn:
        leased = await claiming.claim(
            conn,
            owner="elsewhere",
            now=datetime.now(UTC),
            lease=timedelta(minutes=1),
            limit=10,
            probe_interval=timedelta(seconds=30),
            caps=claiming.Caps(),
        )
    assert [job.delivery_id for job in leased] == [waiting]
    listed = (await client.get(f"{API}/webhooks/{hook}/deliveries", headers=site.auth())).json()[
        "items"
    ]
    assert listed[0]["inFlight"] is True
    response = await client.post(f"{API}/deliveries/{waiting}/redeliver", headers=site.auth())
    assert response.status_code == 409 and "being sent" in response.json()["error"]["message"]

    await client.post(f"{API}/webhooks/{hook}/deactivate", headers=site.auth())
    async with ctx.db.transaction() as conn:
        await conn.execute(deliveries.update().values(status="failed", lease_owner=None))
    response = await client.post(f"{API}/deliveries/{waiting}/redeliver", headers=site.auth())
    assert response.status_code == 409 and "inactive" in response.json()["error"]["message"]


async def test_recover_resends_failed_deliveries_since_a_time_once(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    start = datetime.now(UTC) - timedelta(hours=4)
    failed = []
    for hours in range(3):
        _, (delivery_id,) = await queue_event(
            ctx, site.site_id, now=start + timedelta(hours=hours), work_item_id=f"wi-{hours}"
        )
        failed.append(delivery_id)
    mock(ctx, answer(500))
    await worker(ctx).run_once()
    _, (succeeded,) = await queue_event(ctx, site.site_id, now=start + timedelta(hours=3))
    transport = mock(ctx, answer(200))
    await worker(ctx).run_once()

    async def recover(**body: str) -> int:
        response = await client.post(
            f"{API}/webhooks/{hook}/recover", json=body, headers=site.auth()
        )
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["status"] == "queued" and job["done"] == 0 and job["total"] is None
        assert await RecoveryRunner(ctx).run_once() == 1
        finished = (await client.get(job["link"], headers=site.auth())).json()
        assert finished["status"] == "succeeded" and finished["id"] == job["id"]
        assert finished["done"] == finished["total"]
        count: int = finished["redelivered"]
        return count

    since = (start + timedelta(minutes=30)).isoformat()
    until = (start + timedelta(hours=1, minutes=30)).isoformat()
    assert await recover(since=since, until=until) == 1
    assert await recover(since=since) == 1, "the one already queued is not queued twice"
    assert await recover(since=since) == 0
    sent_before = len(transport.sent)
    attempted = await worker(ctx).run_once()
    assert len(attempted) == 2 and len(transport.sent) == sent_before + 2
    assert await recover(since=start.isoformat()) == 1, "only the oldest is left failed"
    assert succeeded not in attempted

    response = await client.post(
        f"{API}/webhooks/{hook}/recover", json={"since": "yesterday"}, headers=site.auth()
    )
    assert response.status_code == 422
    response = await client.post(f"{API}/webhooks/{hook}/recover", json={}, headers=site.auth())
    assert response.status_code == 422 and "since" in response.text


# --- events -------------------------------------------------------------------------------


async def test_events_list_and_detail(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    start = datetime.now(UTC) - timedelta(minutes=10)
    queued = [
        (await queue_event(ctx, site.site_id, now=start + timedelta(minutes=i)))[0]
        for i in range(3)
    ]
    mock(ctx, answer(200))
    test = await client.post(f"{API}/webhooks/{hook}/test", headers=site.auth())
    assert test.status_code == 202, test.text

    listed = (await client.get(f"{API}/events", headers=site.auth())).json()
    ids = [e["id"] for e in listed["items"]]
    assert ids == [test.json()["eventId"]] + [e.event_id for e in reversed(queued)]
    assert [e["test"] for e in listed["items"]] == [True, False, False, False]
    page = (await client.get(f"{API}/events", params={"limit": 2}, headers=site.auth())).json()
    rest = (
        await client.get(
            f"{API}/events", params={"cursor": page["nextCursor"]}, headers=site.auth()
        )
    ).json()
    assert [e["id"] for e in page["items"] + rest["items"]] == ids
    since = {"since": (start + timedelta(minutes=1, seconds=30)).isoformat()}
    assert (
        len((await client.get(f"{API}/events", params=since, headers=site.auth())).json()["items"])
        == 2
    )
    typed = {"eventType": "InterviewLoadEvent"}
    assert (await client.get(f"{API}/events", params=typed, headers=site.auth())).json()[
        "items"
    ] == []

    detail = (await client.get(f"{API}/events/{queued[0].event_id}", headers=site.auth())).json()
    assert detail["payload"] == queued[0].to_dict()
    (only,) = detail["deliveries"]
    assert (only["webhookId"], only["status"], only["webhookName"]) == (
        hook,
        "pending",
        f"hook {URL}",
    )


# --- the test send ------------------------------------------------------------------------------


async def test_test_send_of_a_notification_is_queued_to_that_webhook_alone(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, secret = await make_webhook(ctx, site, URL, name="tested")
    await make_webhook(ctx, site, URL + "/other", name="bystander")
    response = await client.post(f"{API}/webhooks/{hook}/test", headers=site.auth())
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "pending" and body["call"] is None
    assert body["link"] == f"{API}/deliveries/{body['deliveryId']}"
    transport = mock(ctx, answer(200))
    assert await worker(ctx).run_once() == [body["deliveryId"]]
    (sent,) = transport.sent
    assert secret is not None
    event = claims(sent.request, secret, hook)
    assert event["test"] is True and event["eventId"] == body["eventId"]
    assert event["createdBy"]["id"] == site.user_ids["SiteAdministrator"]
    data = event["data"]
    assert data["versionNumber"] == 1 and data["documents"][0]["url"].startswith("https://")
    assert set(data) >= {
        "workItemId",
        "workItemName",
        "workItemVersionId",
        "workGroupId",
        "templateId",
        "templateName",
    }
    detail = (await client.get(body["link"], headers=site.auth())).json()
    assert detail["status"] == "succeeded"

    await client.post(f"{API}/webhooks/{hook}/deactivate", headers=site.auth())
    response = await client.post(f"{API}/webhooks/{hook}/test", headers=site.auth())
    assert response.status_code == 409 and "activate" in response.json()["error"]["message"]


async def test_test_send_of_interview_events_calls_at_once_and_reads_the_answers(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    load = await create_hook(client, site, "InterviewLoadEvent")
    custom = await create_hook(
        client, site, "CustomInterviewEvent", interviewEventName="Look up client", name="custom"
    )
    reply = json.dumps({"Client Name": "Jane Roe", "Fee": "lots", "Nope": 1}).encode()
    transport = mock(ctx, answer(200, reply, {"Content-Type": "application/json"}))
    response = await client.post(f"{API}/webhooks/{load['id']}/test", headers=site.auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "succeeded" and body["call"]["statusCode"] == 200
    assert {a["name"]: a["value"] for a in body["answers"]["answers"]} == {
        "Client Name": "Jane Roe"
    }
    assert {w["code"] for w in body["warnings"]} == {"type_mismatch", "unknown_variable"}
    (sent,) = transport.sent
    assert sent.request.method == "GET"
    event = claims(sent.request, load["secret"], load["id"])
    assert event["test"] is True and event["eventType"] == "InterviewLoadEvent"
    assert event["data"]["interviewId"]
    logged = (await client.get(body["link"], headers=site.auth())).json()
    assert logged["status"] == "succeeded" and len(logged["attempts"]) == 1

    mock(ctx, answer(500, b"boom"))
    response = await client.post(f"{API}/webhooks/{custom['id']}/test", headers=site.auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["call"]["statusCode"], body["answers"]) == ("failed", 500, None)
    assert body["call"]["errorClass"] == "http_status"
    (warning,) = body["warnings"]
    assert (warning["webhookId"], warning["source"]) == (custom["id"], "webhook")
    logged = (await client.get(body["link"], headers=site.auth())).json()
    assert logged["status"] == "failed" and logged["lastErrorClass"] == warning["code"]
    assert logged["attempts"][0]["responseBody"] == "boom"
    response = await client.post(
        f"{API}/deliveries/{body['deliveryId']}/redeliver", headers=site.auth()
    )
    assert response.status_code == 409 and "/test" in response.json()["error"]["message"]


async def test_test_send_of_an_interview_event_holds_the_reply_to_the_answer_limits(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    load = await create_hook(client, site, "InterviewLoadEvent")
    reply = json.dumps({"Client Name": "x" * (64 * 1024 + 1)}).encode()
    mock(ctx, answer(200, reply, {"Content-Type": "application/json"}))
    response = await client.post(f"{API}/webhooks/{load['id']}/test", headers=site.auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["answers"]) == ("failed", None)
    (warning,) = body["warnings"]
    assert warning["code"] == "answer_limit_exceeded"
    assert "max_answer_value_bytes" in warning["message"]


async def test_test_send_of_post_processing_checks_the_reply(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await create_hook(client, site, "PostProcessingEvent")
    transport = mock(ctx, answer(202, b""))
    response = await client.post(f"{API}/webhooks/{hook['id']}/test", headers=site.auth())
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    event = claims(transport.sent[0].request, hook["secret"], hook["id"])
    data = event["data"]
    assert data["documents"][0]["content"] and data["completeUrl"].endswith("/complete")
    assert datetime.fromisoformat(data["callbackDeadline"]) > datetime.now(UTC)

    for status, body, ok in (
        (200, b'{"documents": []}', True),
        (200, b'{"files": []}', False),
        (200, b"not json", False),
        (500, b"", False),
    ):
        mock(ctx, answer(status, body, {"Content-Type": "application/json"}))
        response = await client.post(f"{API}/webhooks/{hook['id']}/test", headers=site.auth())
        assert response.json()["status"] == ("succeeded" if ok else "failed"), (status, body)

    # A reply carrying documents is read whole, not cut at the interview replies' 1 MiB.
    big_pdf = b"%PDF-1.7\n" + b"0" * (2 * 1024 * 1024)
    replaced = {
        "documents": [
            {
                "name": "Signed",
                "fileName": "signed.pdf",
                "contentType": "application/pdf",
                "content": base64.b64encode(big_pdf).decode(),
                "action": "add",
            }
        ]
    }
    transport = mock(
        ctx, answer(200, json.dumps(replaced).encode(), {"Content-Type": "application/json"})
    )
    response = await client.post(f"{API}/webhooks/{hook['id']}/test", headers=site.auth())
    assert response.json()["status"] == "succeeded", response.text
    assert transport.sent[0].max_body > len(json.dumps(replaced))


async def test_test_send_of_post_processing_refuses_a_docx_of_100_000_entries(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The reply is judged in a render worker, as a live one is: a DOCX of 100,001 bare
    zip-directory records is refused at the entry limit, not walked to its end."""
    hook = await create_hook(client, site, "PostProcessingEvent")
    record = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", *[0] * 9, 1, 0, 0, 0, 0, 0, 0) + b"a"
    directory = record * 100_001
    archive = directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0, 0, len(directory), 0, 0)
    document = {
        "name": "Signed",
        "fileName": "signed.docx",
        "contentType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "content": base64.b64encode(archive).decode(),
        "action": "add",
    }
    body = json.dumps({"documents": [document, document]}).encode()
    mock(ctx, answer(200, body, {"Content-Type": "application/json"}))
    response = await client.post(f"{API}/webhooks/{hook['id']}/test", headers=site.auth())
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "failed"
    assert "docx_max_entries" in response.text and "documents[1]: signed.docx" in response.text
    assert [job for _, job in ctx.render_pool.started] == ["judge_reply_job"]


# --- who may see what -----------------------------------------------------------------------------


async def test_another_sites_deliveries_and_events_are_not_found(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, other_site, URL)
    event, (delivery_id,) = await queue_event(ctx, other_site.site_id, now=datetime.now(UTC))
    mock(ctx, answer(500))
    await worker(ctx).run_once()
    foreign = [
        ("GET", f"{API}/webhooks/{hook}/deliveries", None),
        ("GET", f"{API}/deliveries/{delivery_id}", None),
        ("POST", f"{API}/deliveries/{delivery_id}/redeliver", None),
        ("POST", f"{API}/webhooks/{hook}/recover", {"since": "2000-01-01T00:00:00Z"}),
        ("POST", f"{API}/webhooks/{hook}/test", None),
        ("GET", f"{API}/events/{event.event_id}", None),
        ("GET", f"{API}/deliveries/not-a-uuid", None),
        ("GET", f"{API}/events/not-a-uuid", None),
    ]
    for method, url, body in foreign:
        for role, expected in (("SiteAdministrator", 404), ("User", 403)):
            response = await client.request(method, url, json=body, headers=site.auth(role))
            assert response.status_code == expected, (role, method, url, response.text)
        assert (await client.request(method, url, json=body)).status_code == 401
    assert (await client.get(f"{API}/events", headers=site.auth())).json()["items"] == []
    assert (await client.get(f"{API}/events", headers=site.auth("User"))).status_code == 403
    async with ctx.db.read() as conn:
        statuses = (await conn.execute(sa.select(deliveries.c.status))).scalars().all()
    assert statuses == ["failed"], "nothing was redelivered or queued across sites"
