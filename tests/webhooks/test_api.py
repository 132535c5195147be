"""The webhook administration API over both stores: the life of a webhook, and every rule."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import jwt  # noqa: F401  (the receiver side of a secret is exercised in the signing tests)
import pytest
from tests.support import SiteUsers

from docuhooks.context import AppContext

NEW = {
    "name": "Orders",
    "url": "https://receiver.example/hook",
    "eventType": "NewWorkItemVersionComplete",
}


async def create(client: httpx.AsyncClient, site: SiteUsers, **fields: Any) -> httpx.Response:
    return await client.post("/api/v1/webhooks", json={**NEW, **fields}, headers=site.auth())


async def test_life_of_a_webhook(client: httpx.AsyncClient, site: SiteUsers) -> None:
    created = await create(client, site)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"] and len(body["secret"]) >= 43
    assert body["authenticationMethod"] == "HMAC" and body["requestVerb"] == "POST"
    assert body["timeoutSeconds"] == 15 and body["status"] == "active"
    hook = f"/api/v1/webhooks/{body['id']}"

    read = (await client.get(hook, headers=site.auth())).json()
    assert "secret" not in read and body["secret"] not in str(read)

    patched = await client.patch(hook, json={"url": "https://other.example/x"}, headers=site.auth())
    assert patched.status_code == 200 and patched.json()["url"] == "https://other.example/x"
    # Reads and writes that make no secret have one shape: no `secret` key at all.
    assert "secret" not in patched.json()
    assert sorted(patched.json()) == sorted(read)

    off = await client.post(f"{hook}/deactivate", headers=site.auth())
    assert off.json()["status"] == "inactive" and off.json()["active"] is False
    on = await client.post(f"{hook}/activate", headers=site.auth())
    assert on.json()["status"] == "active"

    rotated = await client.post(f"{hook}/regenerate-secret", headers=site.auth())
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (None, body["secret"])
    assert rotated.json()["secretRotation"] is None

    graced = await client.post(
        f"{hook}/regenerate-secret", json={"gracePeriodSeconds": 3600}, headers=site.auth()
    )
    assert graced.json()["secretRotation"]["previousSecretId"] == rotated.json()["secretId"]

    log = (await client.get(f"{hook}/audit", headers=site.auth())).json()
    actions = [e["action"] for e in log]
    assert actions == [
        "webhook.secret_rotated",
        "webhook.secret_rotated",
        "webhook.activated",
        "webhook.deactivated",
        "webhook.updated",
        "webhook.created",
    ]
    assert all(body["secret"] not in str(e) for e in log)

    assert (await client.delete(hook, headers=site.auth())).status_code == 204
    assert (await client.get(hook, headers=site.auth())).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field", "status"),
    [
        ({"name": ""}, "name", 422),
        ({"name": "x" * 201}, "name", 422),
        ({"url": "ftp://example.com/"}, "url", 422),
        ({"url": "https://user:pw@example.com/"}, "url", 422),
        ({"url": "/relative"}, "url", 422),
        ({"url": "https://example.com/" + "a" * 2048}, "url", 422),
        # 599 characters as written, 2,399 as sent (IDNA): longer than DNS resolves.
        ({"url": "https://" + ".".join(["é"] * 300) + "/x"}, "url", 422),
        ({"url": "https://example.com:0/"}, "url", 422),
        ({"url": "https://" + ".".join(["a" * 63] * 4)[:254] + "/"}, "url", 422),
        ({"eventType": "Nope"}, "eventType", 422),
        ({"eventType": "CustomInterviewEvent"}, "interviewEventName", 422),
        ({"interviewEventName": "Lookup"}, "interviewEventName", 422),
        ({"authenticationMethod": "AccessToken"}, "accessToken", 422),
        ({"accessToken": "abc"}, "accessToken", 422),
        ({"requestVerb": "GET"}, "requestVerb", 422),
        ({"requestVerb": "PUT"}, "requestVerb", 422),
        ({"timeoutSeconds": 0}, "timeoutSeconds", 422),
        ({"timeoutSeconds": 121}, "timeoutSeconds", 422),
        ({"timeoutSeconds": "5"}, "timeoutSeconds", 422),
        ({"workGroupIds": ["not-a-uuid"]}, "workGroupIds.0", 422),
        ({"workGroupIds": ["6b0b7a34-8f1c-4d53-9a7e-1f0f8a7c3b2d"]}, "workGroupIds.0", 422),
        ({"orderedDelivery": 1}, "orderedDelivery", 422),
        ({"colour": "blue"}, "colour", 422),
        (
            {"eventType": "InterviewLoadEvent", "url": "https://r.example/x?token=1"},
            "url",
            422,
        ),
        (
            {
                "eventType": "InterviewLoadEvent",
                "authenticationMethod": "StandardWebhooks",
                "requestVerb": "GET",
            },
            "requestVerb",
            422,
        ),
    ],
)
async def test_invalid_webhooks_are_refused_naming_the_field(
    client: httpx.AsyncClient, site: SiteUsers, fields: dict[str, Any], field: str, status: int
) -> None:
    response = await create(client, site, **fields)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert field in [d["field"] for d in error["details"]], error
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()
    assert listed["items"] == []


@pytest.mark.parametrize(
    "token",
    [
        "café-token-0123456789",  # non-ASCII: every call would fail in the Authorization header
        "token with spaces",
        " leading-space",
        "trailing-tab\t",
        "line\nbreak",
        "nul\x00",
        "del\x7f",
        "   ",
        "",
        "x" * 4097,
        # The prefix of a Standard Webhooks secret: receivers would read it as one.
        "whsec_" + "A" * 32,
    ],
)
async def test_access_tokens_must_be_visible_ascii(
    client: httpx.AsyncClient, site: SiteUsers, token: str
) -> None:
    response = await create(client, site, authenticationMethod="AccessToken", accessToken=token)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [d["field"] for d in error["details"]] == ["accessToken"], error
    made = await create(
        client, site, authenticationMethod="AccessToken", accessToken="!~" + "Az09" * 1023 + "!~"
    )
    assert made.status_code == 201, made.text
    patched = await client.patch(
        f"/api/v1/webhooks/{made.json()['id']}", json={"accessToken": token}, headers=site.auth()
    )
    assert patched.status_code == 422, patched.text


async def test_defaults_follow_the_event_type(client: httpx.AsyncClient, site: SiteUsers) -> None:
    load = (await create(client, site, name="Load", eventType="InterviewLoadEvent")).json()
    assert (load["requestVerb"], load["timeoutSeconds"]) == ("GET", 5)
    pp = (await create(client, site, name="PP", eventType="PostProcessingEvent")).json()
    assert (pp["requestVerb"], pp["timeoutSeconds"]) == ("POST", 60)
    custom = (
        await create(
            client, site, name="C", eventType="CustomInterviewEvent", interviewEventName="  Lookup "
        )
    ).json()
    assert custom["interviewEventName"] == "Lookup" and custom["requestVerb"] == "POST"


async def test_one_post_processing_webhook_per_site(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    first = await create(client, site, name="PP1", eventType="PostProcessingEvent", active=False)
    assert first.status_code == 201
    second = await create(client, site, name="PP2", eventType="PostProcessingEvent")
    assert second.status_code == 409
    assert "only one" in second.json()["error"]["message"]
    elsewhere = await create(client, other_site, name="PP2", eventType="PostProcessingEvent")
    assert elsewhere.status_code == 201


async def test_names_are_unique_per_site(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    assert (await create(client, site)).status_code == 201
    assert (await create(client, site)).status_code == 409
    assert (await create(client, other_site)).status_code == 201


async def test_access_token_is_write_only(client: httpx.AsyncClient, site: SiteUsers) -> None:
    created = await create(
        client, site, authenticationMethod="AccessToken", accessToken="tok-123-abc"
    )
    assert created.status_code == 201
    body = created.json()
    assert "secret" not in body and body["hasAccessToken"] is True
    read = await client.get(f"/api/v1/webhooks/{body['id']}", headers=site.auth())
    assert "tok-123-abc" not in read.text
    # Switching to HMAC hands out a secret, as the source platform does.
    switched = await client.patch(
        f"/api/v1/webhooks/{body['id']}", json={"authenticationMethod": "HMAC"}, headers=site.auth()
    )
    assert switched.status_code == 200 and switched.json()["secret"]
    assert switched.json()["hasAccessToken"] is False
    again = await client.post(
        f"/api/v1/webhooks/{body['id']}/regenerate-secret", headers=site.auth()
    )
    assert again.status_code == 200


async def test_regenerating_an_access_token_webhook_is_a_conflict(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    body = (await create(client, site, authenticationMethod="AccessToken", accessToken="t")).json()
    response = await client.post(
        f"/api/v1/webhooks/{body['id']}/regenerate-secret", headers=site.auth()
    )
    assert response.status_code == 409


async def test_pagination_walks_every_webhook_once(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    for i in range(7):
        assert (await create(client, site, name=f"hook {i}")).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/webhooks", params=params, headers=site.auth())).json()
        seen += [w["name"] for w in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"hook {i}" for i in range(7)]
    bad = await client.get("/api/v1/webhooks", params={"cursor": "garbage!"}, headers=site.auth())
    assert bad.status_code == 422


async def test_malformed_and_oversized_bodies(client: httpx.AsyncClient, site: SiteUsers) -> None:
    headers = {**site.auth(), "content-type": "application/json"}
    malformed = await client.post("/api/v1/webhooks", content=b"{bad", headers=headers)
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_json"
    huge = await client.post(
        "/api/v1/webhooks", content=b'{"name": "' + b"x" * 2_000_000 + b'"}', headers=headers
    )
    assert huge.status_code == 413
    not_object = await client.post("/api/v1/webhooks", json=[1, 2], headers=site.auth())
    assert not_object.status_code == 422
    nul = await create(client, site, name="bad\x00name")
    assert nul.status_code == 422
    # C1 controls too: `\x9b` is a terminal's CSI, and `docuhooks listen` prints names.
    for control in ("\x1b[2J", "\x7f", "\x85", "\x9b2J"):
        refused = await create(client, site, name=f"bad{control}name")
        assert refused.status_code == 422, repr(control)
        assert "control characters" in refused.text


async def test_tokens_are_required_and_checked(client: httpx.AsyncClient, site: SiteUsers) -> None:
    assert (await client.get("/api/v1/webhooks")).status_code == 401
    bad = await client.get("/api/v1/webhooks", headers={"Authorization": "Bearer dht_nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"


async def test_login_issues_a_working_token(client: httpx.AsyncClient, site: SiteUsers) -> None:
    login = f"siteadministrator-{site.tokens['SiteAdministrator'][:0]}"
    del login
    users = await client.post(
        "/api/v1/auth/tokens", json={"loginName": "nobody@example.com", "password": "whatever1"}
    )
    assert users.status_code == 401


async def test_a_failed_commit_is_never_reported_as_success(
    client: httpx.AsyncClient, site: SiteUsers, ctx: Any
) -> None:
    """The request's transaction commits before the response leaves: a commit that fails
    turns into an error response, not a 201 for a webhook that does not exist."""
    import sqlalchemy as sa
    from sqlalchemy import event

    def refuse_commit(conn: Any) -> None:
        raise sa.exc.OperationalError("COMMIT", {}, Exception("disk full"))

    event.listen(ctx.db.engine.sync_engine, "commit", refuse_commit)
    try:
        response = await create(client, site, name="Never")
    finally:
        event.remove(ctx.db.engine.sync_engine, "commit", refuse_commit)
    assert response.status_code == 500
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()
    assert [w["name"] for w in listed["items"]] == []


async def test_the_openapi_document_says_when_secret_is_present(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]

    def answer_of(path: str, method: str) -> dict[str, Any]:
        responses = document["paths"][path][method]["responses"]
        ref = next(r for code, r in responses.items() if code.startswith("2"))
        name = ref["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        schema: dict[str, Any] = schemas[name]
        return schema

    for path, method in [
        ("/api/v1/webhooks", "post"),
        ("/api/v1/webhooks/{webhook_id}", "patch"),
        ("/api/v1/webhooks/{webhook_id}/regenerate-secret", "post"),
    ]:
        with_secret = answer_of(path, method)
        assert with_secret["properties"]["secret"]["type"] == "string", path
        assert "secret" not in with_secret.get("required", []), path
        assert "present only" in with_secret["properties"]["secret"]["description"]
    assert "secret" not in answer_of("/api/v1/webhooks/{webhook_id}", "get")["properties"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # The walkthrough's first request: the event type used to hide the URL.
        ({"name": "ok", "url": "nope", "eventType": "Bogus"}, {"url", "eventType"}),
        # A field the model typed (a range, a type) used to hide the service's rules.
        ({"url": "nope", "timeoutSeconds": 0}, {"url", "timeoutSeconds"}),
        (
            {"url": "nope", "timeoutSeconds": "5", "active": "yes"},
            {"url", "timeoutSeconds", "active"},
        ),
        ({"url": "nope", "colour": "blue"}, {"url", "colour"}),
        ({"url": "nope", "accessToken": "a b"}, {"url", "accessToken"}),
        (
            {"url": "nope", "workGroupIds": ["6b0b7a34-8f1c-4d53-9a7e-1f0f8a7c3b2d"]},
            {"url", "workGroupIds.0"},
        ),
        ({"name": None, "url": None, "eventType": None}, {"name", "url", "eventType"}),
        ({"interviewEventName": 5, "requestVerb": ["GET"]}, {"interviewEventName", "requestVerb"}),
    ],
)
async def test_every_problem_is_reported_at_once(
    client: httpx.AsyncClient, site: SiteUsers, fields: dict[str, Any], expected: set[str]
) -> None:
    response = await create(client, site, **fields)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert {d["field"] for d in error["details"]} == expected, error
    made = await create(client, site)
    assert made.status_code == 201, made.text
    if None in fields.values():
        return  # in a PATCH, null leaves a field as it is
    patched = await client.patch(
        f"/api/v1/webhooks/{made.json()['id']}", json=fields, headers=site.auth()
    )
    assert patched.status_code == 422, patched.text
    assert {d["field"] for d in patched.json()["error"]["details"]} == expected, patched.text


async def test_a_missing_required_field_does_not_hide_the_others(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    response = await client.post(
        "/api/v1/webhooks", json={"url": "nope", "eventType": "Bogus"}, headers=site.auth()
    )
    assert response.status_code == 422, response.text
    fields = {d["field"] for d in response.json()["error"]["details"]}
    assert fields == {"name", "url", "eventType"}, response.text


async def test_a_body_not_sent_as_json_is_a_415_that_says_so(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    import json

    # What `curl -d '{…}'` sends: the JSON, labelled as a form.
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        response = await client.post(
            "/api/v1/webhooks",
            content=json.dumps(NEW).encode(),
            headers={**site.auth(), "content-type": content_type},
        )
        assert response.status_code == 415, response.text
        error = response.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert "Content-Type: application/json" in error["message"]
        assert content_type in error["message"]
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()
    assert listed["items"] == []


async def test_malformed_json_says_where(client: httpx.AsyncClient, site: SiteUsers) -> None:
    headers = {**site.auth(), "content-type": "application/json"}
    response = await client.post(
        "/api/v1/webhooks", content=b'{\n  "name": "x",\n  bad}', headers=headers
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "malformed_json"
    assert error["details"][0]["field"] == "body"
    message = error["details"][0]["message"]
    assert "line 3, column 3" in message and "double quotes" in message, message
    assert "line 3, column 3" in error["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_trailing_slash_names_the_route(
    client: httpx.AsyncClient, site: SiteUsers, method: str
) -> None:
    response = await client.request(method, "/api/v1/webhooks/", json=NEW, headers=site.auth())
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "/api/v1/webhooks/" in error["message"] and "'/api/v1/webhooks'" in error["message"]
    assert "location" not in response.headers
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()
    assert listed["items"] == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://localhost:8001/hooks", "localhost"),
        ("http://127.0.0.1:8001/hooks", "127.0.0.1"),
        ("https://10.0.0.5/x", "10.0.0.5"),
        ("https://[::1]/x", "::1"),
    ],
)
async def test_a_url_the_address_policy_refuses_is_saved_with_a_warning(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, url: str, shown: str
) -> None:
    # The policy as production has it: no dev mode, no allowed_networks.
    ctx.settings = dataclasses.replace(ctx.settings, dev_mode=False)
    created = await create(client, site, url=url)
    assert created.status_code == 201, created.text
    warnings = created.json()["warnings"]
    assert [w["field"] for w in warnings] == ["url"], warnings
    assert shown in warnings[0]["message"] and "allowed_networks" in warnings[0]["message"]
    hook = f"/api/v1/webhooks/{created.json()['id']}"
    assert (await client.get(hook, headers=site.auth())).json()["warnings"] == warnings
    public = await client.patch(
        hook, json={"url": "https://receiver.example/x"}, headers=site.auth()
    )
    assert public.status_code == 200 and public.json()["warnings"] == []
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
    assert listed[0]["warnings"] == []


async def test_dev_mode_lets_loopback_through_without_a_warning(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    created = await create(client, site, url="http://localhost:8001/hooks")
    assert created.status_code == 201 and created.json()["warnings"] == [], created.text
    private = await create(client, site, name="Private", url="https://10.0.0.5/x")
    assert [w["field"] for w in private.json()["warnings"]] == ["url"], private.text
