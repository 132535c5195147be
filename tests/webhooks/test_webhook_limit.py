"""The most webhooks a site may have (`site_max_webhooks`), on both stores: one more is a
422 naming the setting and creates nothing, inactive webhooks count, deleting one makes
room, another site is not held to this one's count, and two creates racing for the last
place create one."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.support import SiteUsers, racing_at_the_site_lock

from docuhooks.context import AppContext
from docuhooks.store.schema import audit_log, webhooks

API = "/api/v1/webhooks"


async def create(client: httpx.AsyncClient, site: SiteUsers, name: str) -> httpx.Response:
    return await client.post(
        API,
        json={
            "name": name,
            "url": f"https://receiver.example/{name}",
            "eventType": "NewWorkItemVersionComplete",
        },
        headers=site.auth(),
    )


def at_most(ctx: AppContext, webhooks_per_site: int) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, site_max_webhooks=webhooks_per_site)


async def count(ctx: AppContext, site: SiteUsers) -> int:
    async with ctx.db.read() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(webhooks)
                .where(webhooks.c.site_id == site.site_id)
            )
        ).scalar_one()


def refused(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "webhook_limit_exceeded", error
    assert "site_max_webhooks" in error["message"], error
    return error


async def test_one_webhook_past_the_limit_is_refused_until_one_is_deleted(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    at_most(ctx, 2)
    first = await create(client, site, "first")
    assert first.status_code == 201, first.text
    assert (await create(client, site, "second")).status_code == 201
    # An inactive webhook counts: activating it later must not pass the limit.
    off = await client.post(f"{API}/{first.json()['id']}/deactivate", headers=site.auth())
    assert off.status_code == 200, off.text
    error = refused(await create(client, site, "third"))
    assert "the site has 2 webhooks" in error["message"]
    assert await count(ctx, site) == 2
    async with ctx.db.read() as conn:
        created = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(audit_log)
            .where(audit_log.c.site_id == site.site_id, audit_log.c.action == "webhook.created")
        )
    assert created == 2  # the refusal left no trace but its answer
    # Another site has its own count.
    assert (await create(client, other_site, "third")).status_code == 201

    deleted = await client.delete(f"{API}/{first.json()['id']}", headers=site.auth())
    assert deleted.status_code == 204, deleted.text
    assert (await create(client, site, "third")).status_code == 201
    refused(await create(client, site, "fourth"))


async def test_no_limit_when_set_to_0(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    at_most(ctx, 0)
    for n in range(3):
        assert (await create(client, site, f"hook-{n}")).status_code == 201
    at_most(ctx, 3)
    refused(await create(client, site, "one-more"))


async def test_two_creates_at_once_for_the_last_place_create_one(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    at_most(ctx, 1)
    results = await asyncio.gather(create(client, site, "a"), create(client, site, "b"))
    assert sorted(r.status_code for r in results) == [201, 422], [r.text for r in results]
    assert await count(ctx, site) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_creates_racing_for_the_last_place_are_counted_in_turn(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    at_most(ctx, 1)
    results = await racing_at_the_site_lock(
        ctx, site.site_id, lambda: create(client, site, "a"), lambda: create(client, site, "b")
    )
    assert sorted(r.status_code for r in results) == [201, 422], [r.text for r in results]
    assert await count(ctx, site) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_openapi_document_names_the_limit(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    refused = spec["paths"]["/api/v1/webhooks"]["post"]["responses"]["422"]["description"]
    assert "webhook_limit_exceeded" in refused and "site_max_webhooks" in refused
