"""The templates and work groups pages over HTTP, on both stores: uploading through the form,
refusals shown at the field with nothing stored, the download, *Test assemble*, work groups,
and the role, site and CSRF checks. What the pages did is read back through the API, which
shares their services."""

from __future__ import annotations

import json
from typing import Any

import httpx
from tests.platform.docx_factory import (
    STANDARD_VARIABLES,
    document_text,
    make_docx,
    standard_template,
)
from tests.support import SiteUsers
from tests.ui.ui_support import csrf_of, field_error, make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.platform.catalog import DOCX_CONTENT_TYPE, variable_to_json


async def site_admin(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers) -> str:
    return await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))


def form_of(variables: list[dict[str, Any]], **fields: str) -> dict[str, str]:
    """The upload form filled in with `variables` (each as the API spells them), and a
    spare empty row as the page offers."""
    data = {"name": "Engagement letter", "events": "Look up client\nCheck conflicts"}
    data.update(fields)
    for index, variable in enumerate([*variables, {"name": "", "type": "text"}]):
        data[f"var-{index}-name"] = variable["name"]
        data[f"var-{index}-type"] = variable["type"]
        data[f"var-{index}-depth"] = str(variable.get("repeatDepth", 0))
        data[f"var-{index}-options"] = "\n".join(variable.get("options", []))
    return data


STANDARD = [variable_to_json(v) for v in STANDARD_VARIABLES]


async def upload(
    client: httpx.AsyncClient,
    csrf: str,
    data: dict[str, str],
    content: bytes | None = None,
    file_name: str = "engagement.docx",
) -> httpx.Response:
    return await client.post(
        "/ui/templates",
        data={"csrf_token": csrf, **data},
        files={"file": (file_name, content or standard_template(), DOCX_CONTENT_TYPE)},
    )


async def api_templates(client: httpx.AsyncClient, site: SiteUsers) -> list[dict[str, Any]]:
    listed = await client.get("/api/v1/templates", headers=site.auth())
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


async def test_upload_list_download_and_test_assemble(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await site_admin(ctx, client, site)
    assert (await client.get("/ui/templates")).status_code == 200
    assert "No templates yet." in (await client.get("/ui/templates")).text
    form = await client.get("/ui/templates/new")
    assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text

    done = await upload(client, csrf, form_of(STANDARD))
    assert done.status_code == 303, done.text
    template_id = done.headers["location"].split("/")[-1].split("?")[0]
    [stored] = await api_templates(client, site)
    assert stored["id"] == template_id
    assert stored["name"] == "Engagement letter"
    assert stored["variables"] == STANDARD
    assert stored["eventElements"] == ["Look up client", "Check conflicts"]

    page = await client.get(done.headers["location"])
    assert page.status_code == 200 and "Template uploaded." in page.text
    assert "{{ Client_Name }}" in page.text  # the placeholder each variable takes
    listing = await client.get("/ui/templates")
    assert "Engagement letter" in listing.text and "Child Name" not in listing.text
    assert f"<td>{len(STANDARD)}</td>" in listing.text  # how many: the page names them
    assert "Child Name" in page.text

    download = await client.get(f"/ui/templates/{template_id}/content")
    assert download.status_code == 200 and download.content == standard_template()
    assert download.headers["content-type"] == DOCX_CONTENT_TYPE
    assert 'filename="engagement.docx"' in download.headers["content-disposition"]

    # Test assemble: the sample answers on the page assemble as they are...
    sample = page.text.split('name="answers"')[1].split(">", 1)[1].split("</textarea>")[0]
    assert "Sample Client Name" in sample
    answers = {
        "Client Name": "Jane Doe",
        "Fee": 1500,
        "Start Date": "2026-01-31",
        "Is Company": False,
        "Colours": ["Green"],
        "Child Name": ["Ann", "Bob"],
    }
    assembled = await client.post(
        f"/ui/templates/{template_id}/assemble",
        data={"csrf_token": csrf, "answers": json.dumps(answers)},
    )
    assert assembled.status_code == 200, assembled.text
    assert assembled.headers["content-type"] == DOCX_CONTENT_TYPE
    paragraphs, tables = document_text(assembled.content)
    assert "Client: Jane Doe" in paragraphs and "Fee: 1500" in paragraphs
    assert [row[1] for row in tables[0][1:]] == ["Ann", "Bob"]

    # ...answers the template cannot take are listed before anything is assembled...
    unfit = json.dumps({**answers, "Fee": "a lot"})
    warned = await client.post(
        f"/ui/templates/{template_id}/assemble", data={"csrf_token": csrf, "answers": unfit}
    )
    assert warned.status_code == 200 and warned.headers["content-type"].startswith("text/html")
    assert "would be left out" in warned.text and "Fee" in warned.text
    anyway = await client.post(
        f"/ui/templates/{template_id}/assemble",
        data={"csrf_token": csrf, "answers": unfit, "anyway": "yes"},
    )
    assert anyway.status_code == 200 and anyway.headers["content-type"] == DOCX_CONTENT_TYPE
    assert "Fee: " in document_text(anyway.content)[0]

    # ...and something that is not an answer set is refused at the field.
    refused = await client.post(
        f"/ui/templates/{template_id}/assemble",
        data={"csrf_token": csrf, "answers": "{not json"},
    )
    assert refused.status_code == 422
    assert "JSON" in field_error(refused.text, "answers")


async def test_a_file_that_is_not_a_docx_is_refused_at_the_file_field(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await site_admin(ctx, client, site)
    for content in (b"just some text, not a document", make_docx().replace(b"PK", b"QK", 1)):
        refused = await upload(client, csrf, form_of(STANDARD), content=content)
        assert refused.status_code == 422, refused.text
        assert "DOCX" in field_error(refused.text, "file") or "zip" in field_error(
            refused.text, "file"
        )
        assert 'aria-invalid="true" aria-describedby="file-error"' in refused.text
        # What was typed is still there; only the file must be chosen again.
        assert 'value="Fee"' in refused.text and "Choose the file again" in refused.text
    # No file, and a row that is wrong too: both are shown at once.
    money = [STANDARD[0], {**STANDARD[1], "type": "money"}]
    missing = await client.post("/ui/templates", data={"csrf_token": csrf, **form_of(money)})
    assert missing.status_code == 422
    assert field_error(missing.text, "file") == "Choose the template&#39;s .docx file."
    assert "Unknown type" in field_error(missing.text, "var-1-type")
    assert await api_templates(client, site) == []


async def test_declarations_that_do_not_fit_are_shown_at_their_fields(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await site_admin(ctx, client, site)
    without_fee = [v for v in STANDARD if v["name"] != "Fee"]
    refused = await upload(client, csrf, form_of(without_fee))
    assert refused.status_code == 422
    assert "&#39;Fee&#39;" in field_error(refused.text, "variables")
    assert "matches no declared variable" in field_error(refused.text, "variables")

    # Each row's own problems at that row's field (rows counted as the form shows them).
    rows = [*STANDARD]
    rows[1] = {**rows[1], "type": "money"}
    rows[0] = {**rows[0], "options": ["A", "B"]}
    rows[5] = {**rows[5], "repeatDepth": 9}
    refused = await upload(client, csrf, form_of(rows))
    assert refused.status_code == 422
    assert "Unknown type" in field_error(refused.text, "var-1-type")
    assert "options" in field_error(refused.text, "var-0-options")
    assert "repeat depth" in field_error(refused.text, "var-5-depth")

    twice = await upload(client, csrf, form_of(STANDARD, events="Look up\nLook up"))
    assert twice.status_code == 422
    assert "more than once" in field_error(twice.text, "events")
    assert await api_templates(client, site) == []

    # A declared variable the document does not use is allowed, and said once.
    extra = [*STANDARD, {"name": "Matter Number", "type": "text", "repeatDepth": 0}]
    warned = await upload(client, csrf, form_of(extra, name="With an extra variable"))
    assert warned.status_code == 200
    assert "Template uploaded." in warned.text and "Matter Number" in warned.text
    assert [t["name"] for t in await api_templates(client, site)] == ["With an extra variable"]

    # A template name already taken is a 409 at the name.
    assert (await upload(client, csrf, form_of(STANDARD))).status_code == 303
    taken = await upload(client, csrf, form_of(STANDARD))
    assert taken.status_code == 409 and "already exists" in field_error(taken.text, "name")
    assert len(await api_templates(client, site)) == 2


async def test_work_groups(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers) -> None:
    csrf = await site_admin(ctx, client, site)
    assert "No work groups yet." in (await client.get("/ui/workgroups")).text
    made = await client.post(
        "/ui/workgroups",
        data={"csrf_token": csrf, "name": "Litigation", "description": "Court work"},
    )
    assert made.status_code == 303
    page = await client.get(made.headers["location"])
    assert "Work group created." in page.text and "Litigation" in page.text

    empty = await client.post("/ui/workgroups", data={"csrf_token": csrf, "name": "  "})
    assert empty.status_code == 422 and "1 to 200" in field_error(empty.text, "name")
    again = await client.post("/ui/workgroups", data={"csrf_token": csrf, "name": "Litigation"})
    assert again.status_code == 409 and "already exists" in field_error(again.text, "name")
    long = await client.post(
        "/ui/workgroups", data={"csrf_token": csrf, "name": "Tax", "description": "x" * 2001}
    )
    assert long.status_code == 422 and field_error(long.text, "description")

    listed = await client.get("/api/v1/workgroups", headers=site.auth())
    assert [(g["name"], g["description"]) for g in listed.json()["items"]] == [
        ("Litigation", "Court work")
    ]


async def test_other_roles_get_403_and_change_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    template = await client.post(
        "/api/v1/templates",
        files={"file": ("t.docx", standard_template(), DOCX_CONTENT_TYPE)},
        data={"definition": json.dumps({"variables": STANDARD})},
        headers=site.auth(),
    )
    template_id = template.json()["id"]
    for role in ("IntegrationAdministrator", "User"):
        csrf = await sign_in(client, await make_user(ctx, site.site_id, role))
        for path in (
            "/ui/templates",
            "/ui/templates/new",
            f"/ui/templates/{template_id}",
            f"/ui/templates/{template_id}/content",
            "/ui/templates/variable-row",
            "/ui/workgroups",
        ):
            page = await client.get(path)
            assert page.status_code == 403, (role, path)
            assert "SiteAdministrator" in page.text
        assert (await upload(client, csrf, form_of(STANDARD))).status_code == 403
        made = await client.post("/ui/workgroups", data={"csrf_token": csrf, "name": "Mine"})
        assert made.status_code == 403
        assembled = await client.post(
            f"/ui/templates/{template_id}/assemble", data={"csrf_token": csrf, "answers": "{}"}
        )
        assert assembled.status_code == 403
    assert len(await api_templates(client, site)) == 1
    groups = await client.get("/api/v1/workgroups", headers=site.auth())
    assert groups.json()["items"] == []


async def test_another_sites_template_is_404_and_forms_need_the_csrf_token(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    foreign = await client.post(
        "/api/v1/templates",
        files={"file": ("t.docx", standard_template(), DOCX_CONTENT_TYPE)},
        data={"definition": json.dumps({"variables": STANDARD})},
        headers=other_site.auth(),
    )
    foreign_id = foreign.json()["id"]
    csrf = await site_admin(ctx, client, site)
    for path in (f"/ui/templates/{foreign_id}", f"/ui/templates/{foreign_id}/content"):
        assert (await client.get(path)).status_code == 404, path
    assembled = await client.post(
        f"/ui/templates/{foreign_id}/assemble", data={"csrf_token": csrf, "answers": "{}"}
    )
    assert assembled.status_code == 404

    page = await client.get("/ui/templates/new")
    assert csrf_of(page.text) == csrf
    forged = await upload(client, "not-the-token", form_of(STANDARD))
    assert forged.status_code == 403
    forged_group = await client.post("/ui/workgroups", data={"name": "Forged"})
    assert forged_group.status_code == 403
    assert await api_templates(client, site) == []


async def test_an_upload_of_as_many_variable_rows_as_the_form_offers_is_read(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The form offers up to 500 variable rows of four fields each; past 249 rows the form
    parser's default of 1,000 fields refused the whole upload with a 400 (before the CSRF
    check could read its token)."""
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
    rows = 300
    form: dict[str, Any] = {"csrf_token": csrf, "name": "Many rows", "events": ""}
    for i in range(rows):
        form |= {
            f"var-{i}-name": f"V{i}",
            f"var-{i}-type": "text",
            f"var-{i}-depth": "0",
            f"var-{i}-options": "",
        }
    answer = await client.post(
        "/ui/templates", data=form, files={"file": ("many.docx", make_docx(["A letter."]))}
    )
    assert answer.status_code in (200, 303), answer.text[-500:]
    listed = await client.get("/api/v1/templates", headers=site.auth())
    [template] = [t for t in listed.json()["items"] if t["name"] == "Many rows"]
    assert len(template["variables"]) == rows
