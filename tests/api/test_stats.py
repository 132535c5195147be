"""The stats routes: a webhook's history and the site's summary, from the roll-up, each
for webhook administrators of the caller's site only."""

from __future__ import annotations

from datetime import timedelta

import httpx
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery import rollup, stats
from docuhooks.store.schema import webhooks

WEBHOOK = {
    "name": "Stats",
    "url": "https://receiver.example/hook",
    "eventType": "NewWorkItemVersionComplete",
}


async def _webhook(client: httpx.AsyncClient, site: SiteUsers, **fields: str) -> str:
    response = await client.post("/api/v1/webhooks", json=WEBHOOK | fields, headers=site.auth())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_stats_count_the_sites_own_attempts(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    mine = await _webhook(client, site)
    interview = await _webhook(
        client, site, name="Load", eventType="InterviewLoadEvent", url="https://i.example/x"
    )
    theirs = await _webhook(client, other_site)
    now = ctx.now()
    calls = [
        rollup.Call(mine, site.site_id, now, 12.0, None),
        rollup.Call(mine, site.site_id, now - timedelta(hours=2), 40.0, "timeout"),
        rollup.Call(mine, site.site_id, now - timedelta(days=3), 40.0, "http_status"),
        rollup.Call(interview, site.site_id, now, 3000.0, "timeout", budget_cut=True),
        rollup.Call(theirs, other_site.site_id, now, 5.0, "connect"),
    ]
    async with ctx.db.transaction() as conn:
        await rollup.add_calls(conn, calls)

    response = await client.get(f"/api/v1/webhooks/{mine}/stats", headers=site.auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert (len(body["hours"]), len(body["days"])) == (48, 30)
    day = body["last24Hours"]
    assert (day["succeeded"], day["failed"], day["failedByClass"]) == (1, 1, {"timeout": 1})
    assert sum(b["failed"] for b in body["days"]) == 2
    assert body["hours"][-1]["p50Ms"] is not None and body["hours"][0]["p50Ms"] is None

    summary = (await client.get("/api/v1/stats", headers=site.auth())).json()
    assert summary["webhookCount"] == 2
    assert sum(b["failed"] for b in summary["days"]) == 3  # not the other site's
    # One failure each in the last 24 hours: by name then.
    assert [f["webhookId"] for f in summary["failingMost"]] == [interview, mine]
    (load,) = summary["interviewWebhooks"]
    assert (load["webhookId"], load["budgetCutOff"], load["failedByClass"]) == (
        interview,
        1,
        {"timeout": 1},
    )

    foreign = await client.get(f"/api/v1/webhooks/{theirs}/stats", headers=site.auth())
    assert foreign.status_code == 404
    assert (await client.get("/api/v1/stats", headers=site.auth("User"))).status_code == 403
    assert (await client.get("/api/v1/stats")).status_code == 401
    integration = await client.get("/api/v1/stats", headers=site.auth("IntegrationAdministrator"))
    assert integration.status_code == 200


async def test_the_stats_routes_are_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/api/v1/webhooks/{webhook_id}/stats"]
    assert "get" in paths["/api/v1/stats"]


async def test_the_summary_counts_every_suspended_webhook_beyond_those_it_lists(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    many = stats.LISTED + 5
    ids = [
        await _webhook(client, site, name=f"Hook {n:02d}", url=f"https://r{n}.example/hook")
        for n in range(many)
    ]
    async with ctx.db.transaction() as conn:
        await conn.execute(
            webhooks.update()
            .where(webhooks.c.id.in_(ids))
            .values(suspended_at=ctx.now(), status_reason="suspended: test")
        )
    summary = (await client.get("/api/v1/stats", headers=site.auth())).json()
    # The list stays bounded; the count is every suspended webhook, not the list's length.
    assert len(summary["suspended"]) == stats.LISTED
    assert summary["suspendedCount"] == many
    assert summary["openBreakerCount"] == 0

    # A suspended webhook an administrator then deactivated is inactive, as its status, the
    # list's status filter and the suspended-webhooks metric say: not counted as suspended.
    deactivated = await client.post(f"/api/v1/webhooks/{ids[0]}/deactivate", headers=site.auth())
    assert deactivated.json()["status"] == "inactive"
    summary = (await client.get("/api/v1/stats", headers=site.auth())).json()
    assert summary["suspendedCount"] == many - 1
    assert ids[0] not in {item["webhookId"] for item in summary["suspended"]}
