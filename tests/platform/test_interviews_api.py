"""Interviews over the API, on both stores: versions opened and continued, answers in each
format with warnings naming the variable, interview events, and finishing atomically."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from tests.platform.platform_client import open_interview, work_item
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery import outbox
from docuhooks.store.schema import documents, events, work_item_versions


async def test_opening_continues_the_version_in_progress(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    first = await open_interview(client, site, item)
    await client.put(
        f"/api/v1/interviews/{first['id']}/answers",
        json={"Client Name": "Jane"},
        headers=site.auth("User"),
    )
    second = await open_interview(client, site, item)
    assert second["workItemVersionId"] == first["workItemVersionId"]
    assert second["versionNumber"] == 1
    assert second["answers"]["answers"] == [
        {"name": "Client Name", "type": "text", "value": "Jane"}
    ]
    stale = await client.put(
        f"/api/v1/interviews/{first['id']}/answers", json={"Fee": 1}, headers=site.auth("User")
    )
    assert stale.status_code == 409 and "replaced" in stale.json()["error"]["message"]
    read = await client.get(f"/api/v1/interviews/{first['id']}", headers=site.auth("User"))
    assert read.json()["status"] == "replaced"
    versions = await client.get(f"/api/v1/workitems/{item['id']}/versions", headers=site.auth())
    [version] = versions.json()["items"]
    assert version["status"] == "InProgress" and "answers" not in version
    read = await client.get(
        f"/api/v1/workitems/{item['id']}/versions/{version['id']}", headers=site.auth()
    )
    assert read.json()["answers"] == second["answers"]


async def test_answers_overlay_whole_and_warn_by_variable(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    interview = await open_interview(client, site, await work_item(client, site.auth()))
    url = f"/api/v1/interviews/{interview['id']}/answers"
    user = site.auth("User")
    await client.put(url, json={"Child Name": ["Ann", "Bob", "Cy"], "Fee": 10}, headers=user)
    changed = await client.put(
        url,
        json={"Child Name": ["Dee"], "Colours": ["Purple"], "Start Date": "2026-02-30"},
        headers=user,
    )
    assert changed.status_code == 200
    answers = {a["name"]: a["value"] for a in changed.json()["answers"]["answers"]}
    assert answers == {"Child Name": ["Dee"], "Fee": 10}
    warnings = {w["variable"]: w for w in changed.json()["warnings"]}
    assert set(warnings) == {"Colours", "Start Date"}
    assert warnings["Colours"]["code"] == "unknown_option"
    assert "Purple" in warnings["Colours"]["message"]
    assert warnings["Start Date"]["code"] == "type_mismatch"
    assert "not a real date" in warnings["Start Date"]["message"]
    assert all(
        w["source"] == "answers" and w["webhookId"] is None and w["webhookName"] is None
        for w in warnings.values()
    )


@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (
            b'{"answers": [{"name": "Fee", "type": "money", "value": 1}]}',
            "application/json",
            "type",
        ),
        (b"{not json", "application/json", "line 1"),
        (b"<AnswerSet><Answer name='Fee'><NumValue>x</NumValue>", "text/xml", ""),
        (b"Fee=1", "application/x-www-form-urlencoded", "Content-Type"),
    ],
)
async def test_answer_sets_that_cannot_be_read_are_422_and_change_nothing(
    client: httpx.AsyncClient, site: SiteUsers, body: bytes, content_type: str, field: str
) -> None:
    interview = await open_interview(client, site, await work_item(client, site.auth()))
    url = f"/api/v1/interviews/{interview['id']}/answers"
    user = site.auth("User")
    await client.put(url, json={"Fee": 5}, headers=user)
    response = await client.put(url, content=body, headers={**user, "Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert field in response.json()["error"]["details"][0]["field"]
    after = await client.get(f"/api/v1/interviews/{interview['id']}", headers=user)
    assert after.json()["answers"]["answers"] == [{"name": "Fee", "type": "number", "value": 5}]


async def test_answers_read_back_as_json_or_hotdocs_xml(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    interview = await open_interview(client, site, await work_item(client, site.auth()))
    url = f"/api/v1/interviews/{interview['id']}/answers"
    user = site.auth("User")
    await client.put(url, json={"Start Date": "2026-11-29", "Is Company": False}, headers=user)
    as_json = await client.get(url, headers=user)
    assert as_json.json()["answers"][0] == {
        "name": "Start Date",
        "type": "date",
        "value": "2026-11-29",
    }
    as_xml = await client.get(url, headers={**user, "Accept": "text/xml"})
    assert as_xml.headers["content-type"].startswith("application/xml")
    roundtrip = await client.put(
        url, content=as_xml.content, headers={**user, "Content-Type": "application/xml"}
    )
    assert roundtrip.json()["answers"] == as_json.json()


async def test_interview_events_must_be_declared_by_the_template(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    interview = await open_interview(client, site, await work_item(client, site.auth()))
    base = f"/api/v1/interviews/{interview['id']}/events"
    assert interview["eventElements"] == ["Look up client"]
    fired = await client.post(f"{base}/Look up client", headers=site.auth("User"))
    assert fired.status_code == 200, fired.text
    assert fired.json()["warnings"] == []
    unknown = await client.post(f"{base}/Delete everything", headers=site.auth("User"))
    assert unknown.status_code == 404
    assert "no interview event element named 'Delete everything'" in unknown.text
    assert "'Look up client'" in unknown.text


async def test_finishing_completes_once_and_the_next_interview_starts_a_new_version(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    interview = await open_interview(client, site, item)
    user = site.auth("User")
    await client.put(
        f"/api/v1/interviews/{interview['id']}/answers", json={"Fee": 99}, headers=user
    )
    finished = await client.post(f"/api/v1/interviews/{interview['id']}/finish", headers=user)
    assert finished.status_code == 200 and finished.json()["status"] == "Completed"
    again = await client.post(f"/api/v1/interviews/{interview['id']}/finish", headers=user)
    assert again.status_code == 409 and "already finished" in again.json()["error"]["message"]
    following = await open_interview(client, site, item)
    assert following["versionNumber"] == 2
    assert following["answers"]["answers"] == [{"name": "Fee", "type": "number", "value": 99}]


async def test_a_completion_whose_event_cannot_be_written_completes_nothing(
    client: httpx.AsyncClient, site: SiteUsers, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = await work_item(client, site.auth())
    interview = await open_interview(client, site, item)

    async def outbox_down(*args: object, **kwargs: object) -> list[str]:
        raise RuntimeError("the outbox is unavailable")

    monkeypatch.setattr(outbox, "enqueue", outbox_down)
    failed = await client.post(
        f"/api/v1/interviews/{interview['id']}/finish", headers=site.auth("User")
    )
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "internal_error"
    async with ctx.db.read() as conn:
        version = (await conn.execute(sa.select(work_item_versions))).one()
        assert version.status == "InProgress" and version.completed_at is None
        assert (await conn.execute(sa.select(sa.func.count()).select_from(documents))).scalar() == 0
        assert (await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar() == 0
    monkeypatch.undo()
    retried = await client.post(
        f"/api/v1/interviews/{interview['id']}/finish", headers=site.auth("User")
    )
    assert retried.status_code == 200 and len(retried.json()["documents"]) == 1


async def test_the_interview_calls_answer_in_their_response_models_shape(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    # These two routes write their JSON without FastAPI's response-model pass; what they
    # write must still be exactly what that pass would have let through and written.
    from docuhooks.api.routes.interviews import Interview

    item = await work_item(client, site.auth())
    opened = await client.post(
        f"/api/v1/workitems/{item['id']}/interviews", headers=site.auth("User")
    )
    fired = await client.post(
        f"/api/v1/interviews/{opened.json()['id']}/events/Look up client",
        headers=site.auth("User"),
    )
    for response in (opened, fired):
        assert response.headers["content-type"] == "application/json"
        model = Interview.model_validate_json(response.content)  # extra keys are refused
        assert model.model_dump(mode="json") == response.json()
        assert response.json()["createdDate"].endswith("Z")
