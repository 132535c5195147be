"""The work item and interview pages over HTTP (in-process, both stores): every role may use
them, only in its own site; each step saves through the API's services; bad input is a 422
naming the field, and changes nothing."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import orjson
from tests.interview_hooks.hooks_support import make_platform
from tests.platform.docx_factory import make_docx
from tests.support import SiteUsers
from tests.ui.ui_support import FormTab, csrf_of, make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.platform import interviews

HX = {"HX-Request": "true"}


async def _signed_in(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, role: str) -> str:
    return await sign_in(client, await make_user(ctx, site.site_id, role))


async def _open(client: httpx.AsyncClient, csrf: str, work_item_id: str) -> tuple[str, str]:
    """Opens the work item's interview through the UI; returns its id and the page."""
    page = await client.post(f"/ui/workitems/{work_item_id}/interview", data={"csrf_token": csrf})
    assert page.status_code == 200, page.text
    found = re.search(r'data-url="/ui/interviews/([0-9a-f-]{36})"', page.text)
    assert found, page.text
    return found.group(1), page.text


async def _answers(ctx: AppContext, site: SiteUsers, interview_id: str) -> dict[str, object]:
    """The interview's saved answers, by name, as the API reads them."""
    async with ctx.db.read() as conn:
        who = await identity.authenticate_token(conn, site.tokens["User"], now=ctx.now())
        assert who is not None
        body = await interviews.get(conn, who, interview_id)
    stored = orjson.loads(orjson.dumps(body["answers"]))
    return {a["name"]: a["value"] for a in stored["answers"]}


async def test_a_user_lists_creates_and_finds_work_items(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    csrf = await _signed_in(ctx, client, site, "User")
    # A User's home is the work items, not the webhooks they may not manage: the UI's root
    # and the server's address lead there, and the pages every role sees start from it.
    for home in ("/", "/ui/"):
        landed = await client.get(home, follow_redirects=True)
        assert landed.status_code == 200 and landed.url.path == "/ui/workitems", home
    for path in ("/ui/tokens", "/ui/account"):
        crumbs = (await client.get(path)).text.split('aria-label="Breadcrumb">', 1)[1]
        assert crumbs.startswith('<a href="/ui/workitems">Work items</a>'), path
    listing = await client.get("/ui/workitems")
    assert listing.status_code == 200
    assert "Smith engagement" in listing.text

    refused = await client.post(
        "/ui/workitems",
        data={"csrf_token": csrf, "name": "  ", "templateId": "", "workGroupId": "nope"},
    )
    assert refused.status_code == 422
    assert 'id="new-templateId-error">Choose a template.' in refused.text
    assert "no such object in this site" not in refused.text  # one message per field
    made = await client.post(
        "/ui/workitems",
        data={
            "csrf_token": csrf,
            "name": "Jones 100% matter",
            "templateId": platform.template["id"],
            "workGroupId": platform.work_item["work_group_id"],
        },
    )
    assert made.status_code == 303
    page = await client.get(made.headers["location"])
    assert "Work item created." in page.text and "Jones 100% matter" in page.text

    found = await client.get("/ui/workitems", params={"q": "100%"})
    assert "Jones 100% matter" in found.text and "Smith engagement" not in found.text
    none = await client.get("/ui/workitems", params={"q": "1_0"})
    assert "No work items match." in none.text  # `_` is a plain character, not a wildcard


async def test_work_items_are_paged(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    csrf = await _signed_in(ctx, client, site, "User")
    for number in range(26):
        await client.post(
            "/ui/workitems",
            data={
                "csrf_token": csrf,
                "name": f"Matter {number:02}",
                "templateId": platform.template["id"],
                "workGroupId": platform.work_item["work_group_id"],
            },
        )
    first = await client.get("/ui/workitems", params={"group": platform.work_item["work_group_id"]})
    assert "Matter 25" in first.text and "Smith engagement" not in first.text
    older = re.search(r'href="(/ui/workitems\?group=[^"]+cursor=[^"]+)">Older', first.text)
    assert older
    second = await client.get(older.group(1).replace("&amp;", "&"))
    assert "Smith engagement" in second.text and "Matter 25" not in second.text


async def test_another_sites_work_items_and_interviews_do_not_exist(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    theirs = await make_platform(ctx, other_site)
    csrf = await _signed_in(ctx, client, other_site, "User")
    interview_id, _ = await _open(client, csrf, theirs.work_item["id"])

    csrf = await _signed_in(ctx, client, site, "IntegrationAdministrator")
    item = theirs.work_item["id"]
    for path in (
        f"/ui/workitems/{item}",
        f"/ui/interviews/{interview_id}",
        f"/ui/interviews/{interview_id}/answers.xml",
    ):
        assert (await client.get(path)).status_code == 404, path
    opened = await client.post(f"/ui/workitems/{item}/interview", data={"csrf_token": csrf})
    assert opened.status_code == 404
    step = await client.post(
        f"/ui/interviews/{interview_id}",
        data={"csrf_token": csrf, "fields": "0", "f0": "Mallory"},
    )
    assert step.status_code == 404
    upload = await client.post(
        f"/ui/interviews/{interview_id}/answers-file",
        data={"csrf_token": csrf},
        files={"file": ("a.json", b'{"Client Name": "Mallory"}')},
        headers=HX,
    )
    # The error page's 404, not a problem with the file at the upload field.
    assert upload.status_code == 404
    assert "answer set" not in upload.text
    assert (await _answers(ctx, other_site, interview_id)).get("Client Name") is None


async def test_pages_need_a_session_and_steps_the_csrf_token(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    listing = await client.get("/ui/workitems")
    assert listing.status_code == 303
    assert listing.headers["location"].startswith("/ui/login?next=")
    csrf = await _signed_in(ctx, client, site, "User")
    interview_id, _ = await _open(client, csrf, platform.work_item["id"])
    forged = await client.post(
        f"/ui/interviews/{interview_id}", data={"fields": "0", "f0": "Mallory"}
    )
    assert forged.status_code == 403
    assert (await _answers(ctx, site, interview_id)).get("Client Name") is None


async def test_saving_rows_and_bad_numbers(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    csrf = await _signed_in(ctx, client, site, "User")
    interview_id, page = await _open(client, csrf, platform.work_item["id"])
    assert 'for="f0">Client Name' in page
    url = f"/ui/interviews/{interview_id}"
    # Fields by position: 0 Client Name, 4 Fee, 5 Start, 6 Urgent, 7 Parties (rows), 8 Colour.
    # The page as a browser tab holds it: Parties has no rows, and *Add a row* adds one.
    tab = FormTab.of(page)
    assert tab.value("rows.7") == "0" and "No rows." in page
    added = await client.post(url, headers=HX, data=tab.form(action="add:7"))
    assert added.status_code == 200, added.text
    assert 'data-focus="f7-0"' in added.text and 'id="f7-0"' in added.text
    tab.show(added.text)
    saved = await client.post(
        url,
        headers=HX,
        data=tab.form(
            f0="Ann\r\nLee",
            f4="1500.50",
            f5="2026-12-01",
            f6="false",
            **{"f7.0": "Acme"},
            f8=["Blue"],
        ),
    )
    assert saved.status_code == 200, saved.text
    assert saved.headers["HX-Reswap"] == "none"
    assert "All answers saved." in saved.text
    assert await _answers(ctx, site, interview_id) == {
        "Client Name": "Ann\nLee",
        "Fee": 1500.5,
        "Start": "2026-12-01",
        "Urgent": False,
        "Parties": ["Acme"],
        "Colour": ["Blue"],
    }
    tab.show(saved.text)
    # The multi-line answer comes back in a text area.
    page = (await client.get(url)).text
    assert re.search(r'<textarea id="f0" name="f0"[^>]*>Ann\nLee</textarea>', page)

    added = await client.post(url, headers=HX, data=tab.form(action="add:7"))
    assert added.status_code == 200
    assert 'data-focus="f7-1"' in added.text and 'id="f7-1"' in added.text
    assert (await _answers(ctx, site, interview_id))["Parties"] == ["Acme", None]
    tab.show(added.text)
    removed = await client.post(
        url, headers=HX, data=tab.form(action="remove:7.0", **{"f7.1": "Beta"})
    )
    assert 'data-focus="add-f7"' in removed.text
    assert (await _answers(ctx, site, interview_id))["Parties"] == ["Beta"]

    # Letters in a number, an impossible date: said at their fields; those answers stay.
    bad = await client.post(
        url,
        headers=HX,
        data={
            "csrf_token": csrf,
            "fields": ["0", "4", "5"],
            "f0": "Ann Lee",
            "f4": "15OO",
            "f5": "2026-02-30",
        },
    )
    assert bad.status_code == 422
    assert 'id="f4-error" data-invalid="f4"' in bad.text
    assert "Problem: “15OO” is not a number" in bad.text
    assert "Problem: “2026-02-30” is not a date" in bad.text
    answers = await _answers(ctx, site, interview_id)
    assert answers["Fee"] == 1500.5 and answers["Start"] == "2026-12-01"
    assert answers["Client Name"] == "Ann Lee"  # the good answer of the same form is saved
    # Finishing with a problem does not finish.
    refused = await client.post(
        url,
        headers=HX,
        data={"csrf_token": csrf, "fields": "4", "f4": "lots", "action": "finish"},
    )
    assert refused.status_code == 422
    assert "Not finished: correct the answers marked below first." in refused.text
    assert 'id="f4" name="f4" type="text" inputmode="decimal" value="lots"' in refused.text

    # Without script: a save is a post and a redirect; a problem is the whole page, at 422.
    plain = await client.post(url, data={"csrf_token": csrf, "fields": "4", "f4": "1600"})
    assert plain.status_code == 303 and plain.headers["location"] == url
    plain = await client.post(url, data={"csrf_token": csrf, "fields": "4", "f4": "x"})
    assert plain.status_code == 422 and "<h1" in plain.text
    assert "Problem: “x” is not a number" in plain.text
    assert (await _answers(ctx, site, interview_id))["Fee"] == 1600


async def test_answer_files_in_and_out(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    csrf = await _signed_in(ctx, client, site, "SiteAdministrator")
    interview_id, _ = await _open(client, csrf, platform.work_item["id"])
    url = f"/ui/interviews/{interview_id}/answers-file"

    def upload(name: str, content: bytes) -> dict[str, Any]:
        return {"data": {"csrf_token": csrf}, "files": {"file": (name, content)}, "headers": HX}

    good = await client.post(url, **upload("a.json", b'{"Client Name": "Jane", "Nope": 1}'))
    assert good.status_code == 200, good.text
    assert "The answers of a.json are in." in good.text
    assert "Nope" in good.text  # the answer the template cannot take is named
    for name, content in (
        ("notes.txt", b"call Jane"),
        ("list.json", b"[1, 2]"),
        ("broken.xml", b"<AnswerSet><Answer name='Fee'><NumValue>x</NumValue>"),
        ("empty.json", b"   "),
    ):
        bad = await client.post(url, **upload(name, content))
        assert bad.status_code == 422, name
        assert 'data-focus="answer-file"' in bad.text
        assert re.search(r'id="answer-file-error" role="alert">Problem: ', bad.text), name
        assert await _answers(ctx, site, interview_id) == {"Client Name": "Jane"}, name

    # Past the answer-set limit, a file or a step's form is cut off as it streams in.
    most = ctx.settings.max_answer_set_bytes
    huge = await client.post(url, **upload("big.json", b'{"Client Name": "' + b"x" * most + b'"}'))
    assert huge.status_code == 413
    step = await client.post(
        f"/ui/interviews/{interview_id}",
        data={"csrf_token": csrf, "fields": "0", "f0": "y" * most},
    )
    assert step.status_code == 413
    assert await _answers(ctx, site, interview_id) == {"Client Name": "Jane"}

    xml = await client.get(f"/ui/interviews/{interview_id}/answers.xml")
    assert xml.status_code == 200
    assert xml.headers["content-disposition"].startswith('attachment; filename="Smith engagement')
    assert b"<TextValue>Jane</TextValue>" in xml.content
    as_json = await client.get(f"/ui/interviews/{interview_id}/answers.json")
    assert json.loads(as_json.content) == {
        "answers": [{"name": "Client Name", "type": "text", "value": "Jane"}]
    }
    assert (await client.get(f"/ui/interviews/{interview_id}/answers.csv")).status_code == 404


async def test_a_replaced_interview_cannot_change(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    csrf = await _signed_in(ctx, client, site, "User")
    first, _ = await _open(client, csrf, platform.work_item["id"])
    second, page = await _open(client, csrf, platform.work_item["id"])
    assert first != second and "Continue" not in page
    old = await client.get(f"/ui/interviews/{first}")
    assert "This interview is replaced" in old.text and 'id="interview-form"' not in old.text
    step = await client.post(
        f"/ui/interviews/{first}",
        headers=HX,
        data={"csrf_token": csrf, "fields": "0", "f0": "Late"},
    )
    assert step.status_code == 409
    assert step.headers["HX-Retarget"] == "#flash"
    home = await client.get(f"/ui/workitems/{platform.work_item['id']}")
    assert "Continue interview" in home.text and "InProgress" in home.text
    assert "by User person" in home.text  # who started the version, by name
    assert csrf_of(home.text) == csrf


async def test_an_interview_of_many_variables_saves_from_its_whole_form(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The page posts every field it shows (a hidden `fields` input and the value of each
    variable): a template of 600 variables, well within the answer-set limits, is a form of
    over 1,200 fields, past the form parser's default of 1,000, which refused the whole
    save (and the CSRF check reading it) with a 400."""
    count = 600
    definition = {
        "name": "Many",
        "variables": [{"name": f"V{i}", "type": "text"} for i in range(count)],
    }
    uploaded = await client.post(
        "/api/v1/templates",
        files={"file": ("many.docx", make_docx(["A letter."]))},
        data={"definition": json.dumps(definition)},
        headers=site.auth(),
    )
    assert uploaded.status_code == 201, uploaded.text
    group = await client.post("/api/v1/workgroups", json={"name": "Many"}, headers=site.auth())
    item = await client.post(
        "/api/v1/workitems",
        json={
            "name": "Many",
            "workGroupId": group.json()["id"],
            "templateId": uploaded.json()["id"],
        },
        headers=site.auth(),
    )
    assert item.status_code == 201, item.text
    csrf = await _signed_in(ctx, client, site, "User")
    interview_id, page = await _open(client, csrf, item.json()["id"])
    assert page.count('name="fields"') == count
    form: dict[str, Any] = {"csrf_token": csrf, "fields": [str(i) for i in range(count)]}
    form |= {f"f{i}": f"answer {i}" for i in range(count)}
    saved = await client.post(f"/ui/interviews/{interview_id}", headers=HX, data=form)
    assert saved.status_code == 200, saved.text[:500]
    assert "All answers saved." in saved.text
    answers = await _answers(ctx, site, interview_id)
    assert answers["V0"] == "answer 0" and answers[f"V{count - 1}"] == f"answer {count - 1}"
