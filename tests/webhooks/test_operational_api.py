"""Operational webhooks through the API: who may manage them, the rules of their
configuration, their test sends and the event an administrator's resume fires."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.events import OPERATIONAL_EVENTS
from docuhooks.delivery import recorder_queries
from docuhooks.store.schema import deliveries, events

OPERATIONAL = {
    "name": "Ops",
    "url": "https://ops.example/hook",
    "eventType": "WebhookSuspended",
}
ORDINARY = {
    "name": "Orders",
    "url": "https://receiver.example/hook",
    "eventType": "NewWorkItemVersionComplete",
}


async def create(
    client: httpx.AsyncClient, site: SiteUsers, role: str = "SiteAdministrator", **fields: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/webhooks", json={**OPERATIONAL, **fields}, headers=site.auth(role)
    )


@pytest.mark.parametrize("event_type", sorted(t.value for t in OPERATIONAL_EVENTS))
async def test_a_site_administrator_subscribes_to_each_operational_event(
    client: httpx.AsyncClient, site: SiteUsers, event_type: str
) -> None:
    created = await create(client, site, eventType=event_type, name=event_type)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["eventType"], body["requestVerb"], body["timeoutSeconds"]) == (
        event_type,
        "POST",
        15,
    )
    listed = await client.get(
        "/api/v1/webhooks", params={"eventType": event_type}, headers=site.auth()
    )
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]


async def test_only_a_site_administrator_manages_operational_webhooks(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    integration = "IntegrationAdministrator"
    refused = await create(client, site, integration)
    assert refused.status_code == 403
    assert "SiteAdministrator" in refused.json()["error"]["message"]

    hook = (await create(client, site)).json()["id"]
    path = f"/api/v1/webhooks/{hook}"
    # Reading is allowed, as for every webhook.
    assert (await client.get(path, headers=site.auth(integration))).status_code == 200
    for method, suffix, body in [
        ("PATCH", "", {"timeoutSeconds": 30}),
        ("POST", "/deactivate", None),
        ("POST", "/activate", None),
        ("POST", "/resume", None),
        ("POST", "/regenerate-secret", {"gracePeriodSeconds": 60}),
        ("DELETE", "", None),
    ]:
        response = await client.request(
            method, path + suffix, json=body, headers=site.auth(integration)
        )
        assert response.status_code == 403, (method, suffix, response.text)
    assert (await client.get(path, headers=site.auth())).json()["timeoutSeconds"] == 15

    # Nor may it turn an ordinary webhook into an operational one.
    ordinary = await client.post("/api/v1/webhooks", json=ORDINARY, headers=site.auth(integration))
    turned = await client.patch(
        f"/api/v1/webhooks/{ordinary.json()['id']}",
        json={"eventType": "WebhookResumed"},
        headers=site.auth(integration),
    )
    assert turned.status_code == 403


async def test_operational_webhooks_take_no_scope_and_post_only(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    group = "00000000-0000-4000-8000-000000000001"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"workGroupIds": [group]}, "workGroupIds"),
        ({"templateIds": [group]}, "templateIds"),
        ({"requestVerb": "GET"}, "requestVerb"),
        ({"interviewEventName": "x"}, "interviewEventName"),
        ({"orderedDelivery": True}, "orderedDelivery"),
    ]
    for fields, field in cases:
        response = await create(client, site, **fields)
        assert response.status_code == 422, (fields, response.text)
        assert field in str(response.json()["error"]["details"])


async def test_a_test_send_queues_a_sample_operational_event(
    client: httpx.AsyncClient, site: SiteUsers, ctx: AppContext
) -> None:
    hook = (await create(client, site, eventType="DestinationBreakerOpened")).json()["id"]
    sent = await client.post(f"/api/v1/webhooks/{hook}/test", headers=site.auth())
    assert sent.status_code == 202, sent.text
    async with ctx.db.read() as conn:
        payload = (
            await conn.execute(
                sa.select(events.c.payload).where(events.c.id == sent.json()["eventId"])
            )
        ).scalar_one()
    assert payload["test"] is True and payload["eventType"] == "DestinationBreakerOpened"
    assert payload["data"]["destination"] and payload["data"]["webhooks"]


async def test_resuming_through_the_api_fires_webhook_resumed_once(
    client: httpx.AsyncClient, site: SiteUsers, ctx: AppContext
) -> None:
    listener = (await create(client, site, eventType="WebhookResumed")).json()["id"]
    hook = (await client.post("/api/v1/webhooks", json=ORDINARY, headers=site.auth())).json()
    now = ctx.now()
    async with ctx.db.transaction() as conn:
        await recorder_queries.suspend(
            conn, hook["id"], now=now, next_probe_at=now, reason="suspended: test"
        )
    for _ in range(2):
        resumed = await client.post(f"/api/v1/webhooks/{hook['id']}/resume", headers=site.auth())
        assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    async with ctx.db.read() as conn:
        rows = (
            await conn.execute(
                sa.select(events.c.payload, deliveries.c.webhook_id)
                .join(deliveries, deliveries.c.event_id == events.c.id)
                .where(events.c.event_type == "WebhookResumed")
            )
        ).all()
    ((payload, webhook_id),) = rows
    assert webhook_id == listener
    assert payload["data"]["webhook"]["id"] == hook["id"]
    assert payload["data"]["resumedBy"] == "admin"
    assert payload["createdBy"]["accountType"] == "UserAccount"
