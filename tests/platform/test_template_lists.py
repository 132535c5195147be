"""Lists of templates read only what they show: a template's variable definitions (up to
about a megabyte of JSON each) are not read for a list that shows their count, and where
the API shows them they are written out as stored, never decoded by the database driver
on the event loop. A template's count of variables is kept beside them (migration 0029)."""

from __future__ import annotations

import json
import re

import httpx
import orjson
import sqlalchemy as sa
from tests.interview_hooks.hooks_support import API_VARIABLES, work_item_over_api
from tests.platform.docx_factory import standard_template
from tests.support import SiteUsers, statements_run
from tests.ui.ui_support import make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.store.schema import templates

#: A statement reading the stored variables as the driver decodes them (as text, cast, they
#: are passed on or read off the loop).
_DECODED = re.compile(r"(?<!CAST\()templates\.variables\b")

NOTES = [{"name": f"Note {i}", "type": "text", "repeatDepth": 0, "options": []} for i in range(50)]


async def test_lists_show_each_templates_count_without_reading_its_variables(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """`GET /templates` decoded, validated and encoded again every template's variables:
    five templates of 5,000 took a quarter of a second of the event loop; the web UI's
    lists read them too, to show their names (the templates page) or not at all (the work
    items and webhook pages' choices of template)."""
    item = await work_item_over_api(client, site, variables=[*API_VARIABLES, *NOTES])
    await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
    light = "/api/v1/templates?variables=false"
    pages = (
        "/ui/templates",
        "/ui/workitems",
        "/ui/webhooks/new",
        f"/ui/templates/{item.template_id}",
    )
    async with statements_run(ctx) as seen:
        full = await client.get("/api/v1/templates", headers=site.auth())
        listed = await client.get(light, headers=site.auth())
        one = await client.get(f"/api/v1/templates/{item.template_id}", headers=site.auth())
        for page in pages:
            shown = await client.get(page)
            assert shown.status_code == 200, (page, shown.text[:300])
    assert [s for s in seen if "templates" in s and _DECODED.search(s)] == []

    count = len(API_VARIABLES) + len(NOTES)
    [template] = full.json()["items"]
    assert template["variables"] == [*API_VARIABLES, *NOTES]
    assert template["variableCount"] == count
    assert one.json() == template
    [lighter] = listed.json()["items"]
    assert "variables" not in lighter
    assert lighter == {k: v for k, v in template.items() if k != "variables"}
    ui = await client.get("/ui/templates")
    assert f"<td>{count}</td>" in ui.text


async def test_the_variables_are_written_out_as_stored(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item_over_api(client, site, variables=[*API_VARIABLES, *NOTES])
    async with ctx.db.read() as conn:
        stored = await conn.scalar(
            sa.select(sa.cast(templates.c.variables, sa.Text)).where(
                templates.c.id == item.template_id
            )
        )
    assert isinstance(stored, str)
    one = await client.get(f"/api/v1/templates/{item.template_id}", headers=site.auth())
    assert one.status_code == 200
    assert orjson.loads(stored) == one.json()["variables"]
    assert b'"variables":' + stored.encode() in one.content


async def test_the_upload_answers_with_what_is_read_back(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The upload's response is built from what was stored, not read back (its variables
    would be decoded again): it is what reading the template gives, but its warnings."""
    definition = {"name": "Engagement", "variables": [*API_VARIABLES, *NOTES]}
    made = await client.post(
        "/api/v1/templates",
        files={"file": ("engagement.docx", standard_template())},
        data={"definition": json.dumps(definition)},
        headers=site.auth(),
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["warnings"] and body["variableCount"] == len(API_VARIABLES) + len(NOTES)
    one = await client.get(f"/api/v1/templates/{body['id']}", headers=site.auth())
    assert one.json() == {**body, "warnings": []}
