"""Every webhook route × every role × own site / another site / no token.

The rule: no or bad token → 401; a role that may not manage webhooks → 403;
another site's object → 404, exactly as if it did not exist."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.support import ROLES, SiteUsers

WEBHOOK = {
    "name": "Matrix",
    "url": "https://receiver.example/hook",
    "eventType": "NewWorkItemVersionComplete",
}

#: (method, path after /api/v1/webhooks, body, status for an allowed caller on its own site)
ROUTES: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "", None, 200),
    ("POST", "", {**WEBHOOK, "name": "Another"}, 201),
    ("GET", "/{id}", None, 200),
    ("PATCH", "/{id}", {"timeoutSeconds": 30}, 200),
    ("DELETE", "/{id}", None, 204),
    ("POST", "/{id}/activate", None, 200),
    ("POST", "/{id}/deactivate", None, 200),
    ("POST", "/{id}/resume", None, 200),
    ("POST", "/{id}/regenerate-secret", {"gracePeriodSeconds": 60}, 200),
    ("GET", "/{id}/audit", None, 200),
    ("GET", "/{id}/deliveries", None, 200),
    ("POST", "/{id}/recover", {"since": "2020-01-01T00:00:00Z"}, 202),
    ("POST", "/{id}/test", None, 202),
]
ADMIN_ROLES = {"SiteAdministrator", "IntegrationAdministrator"}


async def _webhook(client: httpx.AsyncClient, site: SiteUsers) -> str:
    response = await client.post("/api/v1/webhooks", json=WEBHOOK, headers=site.auth())
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _request(route: tuple[str, str, Any, int], webhook_id: str) -> tuple[str, str, Any]:
    method, path, body, _ = route
    return method, "/api/v1/webhooks" + path.format(id=webhook_id), body


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers, role: str
) -> None:
    failures = []
    for route in ROUTES:
        own_id = await _webhook(client, site)
        foreign_id = await _webhook(client, other_site)
        expected_own = route[3] if role in ADMIN_ROLES else 403
        targets_object = "{id}" in route[1]
        expected_foreign = (404 if role in ADMIN_ROLES else 403) if targets_object else None
        method, url, body = _request(route, own_id)
        got = (await client.request(method, url, json=body, headers=site.auth(role))).status_code
        if got != expected_own:
            failures.append(f"{role} {method} {route[1]} own site: {got} != {expected_own}")
        if expected_foreign is not None:
            method, url, body = _request(route, foreign_id)
            response = await client.request(method, url, json=body, headers=site.auth(role))
            if response.status_code != expected_foreign:
                failures.append(
                    f"{role} {method} {route[1]} other site: {response.status_code} "
                    f"!= {expected_foreign}"
                )
            still_there = await client.get(
                f"/api/v1/webhooks/{foreign_id}", headers=other_site.auth()
            )
            if still_there.status_code != 200 or still_there.json()["timeoutSeconds"] != 15:
                failures.append(f"{role} {method} {route[1]} changed another site's webhook")
        method, url, body = _request(route, own_id)
        anonymous = (await client.request(method, url, json=body)).status_code
        if anonymous != 401:
            failures.append(f"no token {method} {route[1]}: {anonymous} != 401")
        # Clean up so names stay free for the next route.
        await client.delete(f"/api/v1/webhooks/{own_id}", headers=site.auth())
        await client.delete(f"/api/v1/webhooks/{foreign_id}", headers=other_site.auth())
        listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
        for leftover in listed:
            await client.delete(f"/api/v1/webhooks/{leftover['id']}", headers=site.auth())
    assert not failures, "\n".join(failures)


async def test_errors_have_the_documented_shape(client: httpx.AsyncClient, site: SiteUsers) -> None:
    for response in (
        await client.get("/api/v1/webhooks"),
        await client.get("/api/v1/webhooks/nope", headers=site.auth()),
        await client.get("/api/v1/webhooks", headers=site.auth("User")),
    ):
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"} and error["message"]


#: The routes that change an operational webhook: a SiteAdministrator's alone.
OPERATIONAL_CHANGES = {
    ("POST", ""),
    ("PATCH", "/{id}"),
    ("DELETE", "/{id}"),
    ("POST", "/{id}/activate"),
    ("POST", "/{id}/deactivate"),
    ("POST", "/{id}/resume"),
    ("POST", "/{id}/regenerate-secret"),
}


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix_of_operational_webhooks(
    client: httpx.AsyncClient, site: SiteUsers, role: str
) -> None:
    """An operational webhook reports on every webhook of the site: an IntegrationAdministrator
    may read it, test it and re-send its deliveries, not create or change it."""
    operational = {**WEBHOOK, "eventType": "WebhookSuspended"}
    failures = []
    for route in ROUTES:
        created = await client.post("/api/v1/webhooks", json=operational, headers=site.auth())
        assert created.status_code == 201, created.text
        own_id = created.json()["id"]
        method, url, body = _request(route, own_id)
        if body is not None and method == "POST" and route[1] == "":
            body = {**operational, "name": "Another"}
        changes = (method, route[1]) in OPERATIONAL_CHANGES
        allowed = role == "SiteAdministrator" or (role in ADMIN_ROLES and not changes)
        expected = route[3] if allowed else 403
        got = (await client.request(method, url, json=body, headers=site.auth(role))).status_code
        if got != expected:
            failures.append(f"{role} {method} {route[1]}: {got} != {expected}")
        listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
        for leftover in listed:
            await client.delete(f"/api/v1/webhooks/{leftover['id']}", headers=site.auth())
    assert not failures, "\n".join(failures)
