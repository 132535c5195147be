"""The dashboard and the webhook pages' charts, over HTTP: what they show of the roll-up, who
may see them, and charts that carry their numbers without colour or script."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from tests.support import SiteUsers
from tests.ui.ui_support import make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.delivery import rollup, stats
from docuhooks.store.schema import webhooks
from docuhooks.ui import charts


async def _hook(client: httpx.AsyncClient, site: SiteUsers, name: str, **fields: str) -> str:
    body = {
        "name": name,
        "url": "https://r.example/hook",
        "eventType": "NewWorkItemVersionComplete",
    }
    made = await client.post("/api/v1/webhooks", json=body | fields, headers=site.auth())
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def test_the_dashboard_shows_the_sites_health(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    failing = await _hook(client, site, "Billing sync")
    lookup = await _hook(
        client,
        site,
        "Client lookup",
        eventType="CustomInterviewEvent",
        interviewEventName="Look up client",
    )
    now = ctx.now()
    calls = [rollup.Call(failing, site.site_id, now, 80.0, None) for _ in range(3)]
    calls += [rollup.Call(failing, site.site_id, now, 900.0, "connect") for _ in range(4)]
    calls += [rollup.Call(lookup, site.site_id, now - timedelta(hours=1), 2000.0, "timeout", True)]
    async with ctx.db.transaction() as conn:
        await rollup.add_calls(conn, calls)

    await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    page = await client.get("/ui/dashboard")
    assert page.status_code == 200, page.text
    html = page.text
    assert 'href="/ui/dashboard"' in html  # in the navigation
    failing_row = re.search(r"Billing sync</a></th><td>(\d+)</td><td>(\d+)</td><td>([^<]*)<", html)
    assert failing_row is not None and failing_row.groups() == ("4", "3", "connect 4")
    assert "Client lookup" in html and "timeout 1" in html
    # Hover text on the bar of the current hour, and the same numbers in the table.
    hour = rollup.hour_of(now).strftime("%m-%d %H:00")
    assert f"<title>{hour}: 3 succeeded, 4 failed</title>" in html
    assert "Site attempts by hour as a table" in html
    assert "<script" not in html.split("<main", 1)[1]  # the charts need no script

    webhook_page = await client.get(f"/ui/webhooks/{failing}")
    assert "Health over time" in webhook_page.text
    assert f"<title>{hour}: 3 succeeded, 4 failed</title>" in webhook_page.text
    listing = await client.get("/ui/")
    assert "Last 48 hours: 3 attempts succeeded, 4 failed" in listing.text

    await sign_in(client, await make_user(ctx, site.site_id, "User"))
    refused = await client.get("/ui/dashboard")
    assert refused.status_code == 403
    assert 'href="/ui/dashboard"' not in (await client.get("/ui/workitems")).text


def test_charts_mark_failures_and_lines_without_colour() -> None:
    bars = charts.bar_chart(
        "c1",
        "Attempts",
        ["10:00", "11:00"],
        [charts.Bars("succeeded", [2, 0]), charts.Bars("failed", [1, 0], striped=True)],
        unit="attempts",
    )
    assert 'role="img"' in bars and '<title id="c1-title">Attempts</title>' in bars
    assert bars.count('fill="url(#c1-stripes)"') == 1  # the one failed part, striped
    assert "<title>11:00: 0 succeeded, 0 failed</title>" in bars  # an empty hour hovers too
    lines = charts.line_chart(
        "c2",
        "Durations",
        ["a", "b", "c"],
        [charts.Line("p50", [1.0, None, 3.0]), charts.Line("p99", [5.0, 6.0, 7.0], dashed=True)],
        unit="ms",
    )
    assert lines.count("<polyline") == 1  # p50's gap leaves no line; p99 draws one
    assert lines.count("<rect x=") == 3 and lines.count("<circle") == 2
    assert "<title>b: p99 6 ms</title>" in lines
    assert "<script" not in bars + lines and "style=" not in bars + lines
    hostile = charts.bar_chart("c3", "<b>x</b>", ["<i>"], [charts.Bars("n", [1])], unit="u")
    assert "<b>" not in hostile and "<i>" not in hostile


async def test_the_dashboard_counts_every_suspended_webhook(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    many = stats.LISTED + 3
    ids = [
        await _hook(client, site, f"Hook {n:02d}", url=f"https://r{n}.example/h")
        for n in range(many)
    ]
    async with ctx.db.transaction() as conn:
        await conn.execute(
            webhooks.update().where(webhooks.c.id.in_(ids)).values(suspended_at=ctx.now())
        )
    await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
    html = (await client.get("/ui/dashboard")).text
    assert f"<dt>Suspended webhooks</dt><dd>{many}</dd>" in html
    assert html.count('<li><a href="/ui/webhooks/') == stats.LISTED
    assert f"The first {stats.LISTED} of {many}" in html
