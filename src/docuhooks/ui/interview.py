"""The interview page, for every role of the site: opened from a work item (continuing its
version in progress, as the API's open does), one field per template variable, saved as the
person goes, the template's interview event elements as buttons, answer files in and out,
and *Finish*. Each step calls the `platform.interviews` function its API route calls, so
the answers are read, fitted and limited exactly as the API's are.

Every step of the form is one POST of the whole form with the button pressed (`action`):
`save` (a field changed), `event:NAME`, `add:3`, `remove:3.1`, `finish`. The answers are
saved first, whatever the action, so nothing typed is lost to a button. An htmx request for
`save` gets back only the save status and the fields' messages (swapped out of band, so the
field the person is in keeps focus); the other actions get the form's body again with
`data-focus` naming where focus goes next. Without script, each is a post and a redirect.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from docuhooks.answers.offload import INLINE_BYTES
from docuhooks.api.deps import Ctx
from docuhooks.api.routes.platform_support import attachment
from docuhooks.errors import (
    DocuhooksError,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from docuhooks.interview_hooks import count_interview_event_hooks
from docuhooks.platform import catalog, interviews, workitems
from docuhooks.ui import interview_form
from docuhooks.ui.interview_form import Submitted
from docuhooks.ui.rendering import UiRoute, is_htmx, redirect, render_sized
from docuhooks.ui.session import Checked, SignedIn, UiSession, read_form

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

ANSWER_FILE_FIELD = "answer-file"

#: Errors of the request, not of the uploaded file: raised on to the error page (a 404 for
#: another site's interview), never shown as a problem with the file.
_NOT_ABOUT_THE_FILE = (Unauthorized, Forbidden, NotFound, Unavailable, TooManyRequests)


def _services(count: int) -> str:
    return f"Asking {count} service{'s' if count != 1 else ''}…"


async def _state(ctx: Ctx, session: UiSession, interview_id: str) -> dict[str, Any]:
    """The interview, its work item and template, and how many webhooks each button asks."""
    who = session.principal
    async with ctx.db.read() as conn:
        interview = await interviews.get(conn, who, interview_id)
        item = await workitems.get_row(conn, who, interview["workItemId"])
        template = await catalog.get_summary(conn, who, item.template_id)
        variables = await catalog.variables_of_stored(ctx, conn, template)
        counts = await count_interview_event_hooks(
            conn,
            site_id=who.site_id,
            work_group_id=item.work_group_id,
            template_id=template.id,
            names=template.event_elements,
        )
    asking = {name: _services(count) for name, count in counts.items()}
    answers = interview["answers"]
    if isinstance(answers, orjson.Fragment):
        # The stored JSON text, passed through as it is: read back for the form here when
        # it is small, else with the page, off the loop (`_page`).
        answers = orjson.dumps(answers)
        if len(answers) <= INLINE_BYTES:
            answers = orjson.loads(answers)
    interview["answers"] = answers
    return {
        "interview": interview,
        "item": workitems.to_api(item),
        "tmpl": template,
        "variables": variables,
        "asking": asking,
    }


def _context(
    state: dict[str, Any],
    *,
    submitted: Submitted | None = None,
    warnings: list[dict[str, Any]] | None = None,
    sources: dict[str, dict[str, str]] | None = None,
    message: str = "",
    focus: str = "",
    upload_error: str = "",
    clear_marks: bool = False,
) -> dict[str, Any]:
    warnings = warnings or []
    answers = state["interview"]["answers"]
    if isinstance(answers, bytes):
        answers = orjson.loads(answers)
    fields = interview_form.fields_of(state["variables"], answers)
    interview_form.apply_problems(fields, submitted, warnings, sources or {})
    problems = sum(1 for f in fields if f.errors)
    named = {f.variable.name for f in fields}
    return {
        **state,
        "fields": fields,
        "webhook_warnings": [w for w in warnings if w.get("source") == "webhook"],
        # Answers to no field of the form (a name the template lacks) are said above it.
        "other_warnings": [
            w for w in warnings if w.get("source") != "webhook" and w.get("variable") not in named
        ],
        "problems": problems,
        "message": message,
        "focus": focus,
        "upload_error": upload_error,
        "upload_field": ANSWER_FILE_FIELD,
        "clear_marks": clear_marks,
    }


#: About how many bytes of the interview page each field makes, each more row of a repeated
#: one, and each option of a multiple choice (in each row): measured, a text field is about
#: 330 bytes, a row about 400, a checkbox about 100. A page over `INLINE_BYTES` is rendered
#: off the event loop: past about a hundred fields, a few milliseconds of rendering.
_FIELD_BYTES = 350
_ROW_BYTES = 400
_OPTION_BYTES = 100


def _page_size(state: dict[str, Any], submitted: Submitted | None) -> int:
    """About how many bytes the interview page of `state` is. Answers still undecoded are
    large (`_state`) and so is the page; otherwise each field counts, as many rows as its
    answer or the form as typed holds. Counting stops once the page is large."""
    answers = state["interview"]["answers"]
    if isinstance(answers, bytes):
        return len(answers)
    rows: dict[str, int] = {}
    for entry in answers.get("answers", ()):
        if isinstance(entry, dict) and isinstance(entry.get("value"), list):
            rows[str(entry.get("name"))] = len(entry["value"])
    typed = submitted.typed if submitted is not None else {}
    size = 0
    for index, variable in enumerate(state["variables"]):
        count = 1
        if variable.repeat_depth == 1:
            shown = typed.get(index)
            count = max(1, rows.get(variable.name, 0), len(shown) if isinstance(shown, list) else 0)
        size += (
            _FIELD_BYTES + (count - 1) * _ROW_BYTES + count * _OPTION_BYTES * len(variable.options)
        )
        if size > INLINE_BYTES:
            break
    return size


async def _page(
    request: Request,
    ctx: Ctx,
    session: UiSession,
    template: str,
    state: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    submitted: Submitted | None = None,
    **options: Any,
) -> Response:
    """The interview page (or one of its fragments, `template`) of `state`, with the form's
    fields and messages (`_context`): a large one is built and rendered off the event loop
    (`render_sized`), so one site's template of thousands of variables does not hold
    every other request meanwhile."""
    return await render_sized(
        request,
        template,
        session,
        partial(_context, state, submitted=submitted, **options),
        size=_page_size(state, submitted),
        threads=ctx.settings.answer_parse_threads,
        status_code=status_code,
        headers=headers,
    )


@router.post("/workitems/{work_item_id}/interview")
async def open_interview(
    request: Request, work_item_id: str, ctx: Ctx, session: Checked
) -> Response:
    """Open (or continue) the work item's interview; the InterviewLoadEvent webhooks' answers
    are there, marked, on the page this returns. The page replaces its URL with the
    interview's own, so a reload shows the saved interview without opening it again."""
    opened = await interviews.open_interview(ctx, session.principal, work_item_id, sources=True)
    state = await _state(ctx, session, opened["id"])
    return await _page(
        request,
        ctx,
        session,
        "platform/interview.html",
        state,
        warnings=opened["warnings"],
        sources=opened.get("answerSources") or {},
        message=_opened_message(opened),
        focus="interview-title",
    )


def _opened_message(opened: dict[str, Any]) -> str:
    filled = len(opened.get("answerSources") or {})
    if filled:
        return f"Interview open. {filled} answer{'s' if filled != 1 else ''} filled in for you."
    return "Interview open."


@router.get("/interviews/{interview_id}")
async def interview_page(
    request: Request, interview_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    state = await _state(ctx, session, interview_id)
    return await _page(request, ctx, session, "platform/interview.html", state)


async def _save(
    ctx: Ctx, session: UiSession, interview_id: str, answers: dict[str, Any]
) -> list[dict[str, Any]]:
    if not answers:
        return []
    updated = await interviews.update_answers(
        ctx,
        session.principal,
        interview_id,
        body=json.dumps(answers).encode(),
        content_type="application/json",
    )
    return list(updated["warnings"])


def _row_action(action: str) -> tuple[int, int]:
    where = action.split(":", 1)[1]
    index, _, row = where.partition(".")
    try:
        return int(index), int(row or -1)
    except ValueError:
        return -1, -1


@router.post("/interviews/{interview_id}")
async def interview_step(
    request: Request, interview_id: str, ctx: Ctx, session: Checked
) -> Response:
    form = await read_form(request)
    action = str(form.get("action") or "save")
    state = await _state(ctx, session, interview_id)
    variables = state["variables"]
    submitted = interview_form.read_form(form, variables)
    focus = ""
    message = ""
    if action.startswith(("add:", "remove:")):
        index, row = _row_action(action)
        variable = variables[index] if 0 <= index < len(variables) else None
        if variable is not None and variable.repeat_depth == 1:
            if action.startswith("add:") and interview_form.add_row(submitted, variable):
                rows = len(submitted.answers[variable.name])
                focus = f"f{index}-{rows - 1}"
                message = f"Row {rows} added to {variable.name}."
            elif action.startswith("remove:") and interview_form.remove_row(
                submitted, variable, row
            ):
                focus = f"add-f{index}"
                message = f"Row {row + 1} of {variable.name} removed."
    warnings = await _save(ctx, session, interview_id, submitted.answers)
    sources: dict[str, dict[str, str]] = {}
    if action.startswith("event:"):
        name = action.split(":", 1)[1]
        fired = await interviews.fire_event(
            ctx, session.principal, interview_id, name, sources=True
        )
        warnings += fired["warnings"]
        sources = fired.get("answerSources") or {}
        filled = len(sources)
        message = f"{name}: {filled} answer{'s' if filled != 1 else ''} filled in."
        if fired["warnings"]:
            message += " See the warnings below."
        focus = "interview-result"
    # What the person's answers could not take blocks finishing; a webhook's misfit does not
    # (it is listed with the webhook's warnings).
    problems = bool(submitted.errors) or any(
        w.get("variable") and w.get("source") != "webhook" for w in warnings
    )
    if action == "finish" and not problems:
        version = await interviews.finish(ctx, session.principal, interview_id)
        target = f"/ui/workitems/{version['workItemId']}/versions/{version['id']}?notice=finished"
        if is_htmx(request):
            return Response(status_code=204, headers={"HX-Redirect": target})
        return redirect(target)
    if action == "finish":
        message = "Not finished: correct the answers marked below first."
        focus = "interview-result"
    quiet = not (problems or warnings or action.startswith("event:"))
    if not is_htmx(request) and quiet:
        return redirect(f"/ui/interviews/{interview_id}")
    state = await _state(ctx, session, interview_id)
    context: dict[str, Any] = {
        "submitted": submitted,
        "warnings": warnings,
        "sources": sources,
        "message": message,
        "focus": focus,
        "status_code": 422 if problems else 200,
    }
    if not is_htmx(request):
        # Without script: the whole page, with what needs saying at its place.
        return await _page(request, ctx, session, "platform/interview.html", state, **context)
    if action == "save":
        return await _page(
            request,
            ctx,
            session,
            "platform/_saved.html",
            state,
            headers={"HX-Reswap": "none"},
            **context,
        )
    return await _page(request, ctx, session, "platform/_interview_body.html", state, **context)


@router.get("/interviews/{interview_id}/answers.{kind}")
async def download_answers(interview_id: str, kind: str, ctx: Ctx, session: SignedIn) -> Response:
    """The answers as a file: HotDocs answer XML (`.xml`) or canonical answer JSON."""
    if kind not in ("xml", "json"):
        return Response("answers.xml or answers.json", status_code=404)
    who = session.principal
    async with ctx.db.read() as conn:
        stored = await interviews.stored_answers_text(conn, who, interview_id)
        interview = await interviews.get(conn, who, interview_id)
        item = await workitems.get_row(conn, who, interview["workItemId"])
    document = await interviews.answers_document(ctx, who, stored, xml=kind == "xml")
    media = "application/xml" if kind == "xml" else "application/json"
    name = f"{item.name} answers.{kind}"
    return Response(document, media_type=media, headers={"Content-Disposition": attachment(name)})


def _answer_file_type(upload: UploadFile, content: bytes) -> str:
    name = (upload.filename or "").lower()
    if name.endswith(".xml") or content.lstrip()[:1] == b"<":
        return "application/xml"
    return "application/json"


@router.post("/interviews/{interview_id}/answers-file")
async def upload_answers(
    request: Request, interview_id: str, ctx: Ctx, session: Checked
) -> Response:
    """Overlay an answer file (HotDocs answer XML, or canonical or shorthand answer JSON) on
    the interview's answers. A file that is not an answer set changes nothing and is named
    at the upload field."""
    form = await read_form(request)
    upload = form.get("file")
    problem = ""
    warnings: list[dict[str, Any]] = []
    if not isinstance(upload, UploadFile) or not upload.filename:
        problem = "Choose an answer file (.xml or .json) first."
    else:
        most = ctx.settings.max_answer_set_bytes
        content = await upload.read(most + 1)
        if not content.strip():
            problem = "The file is empty: it holds no answers."
        elif len(content) > most:
            problem = f"The file is over {most} bytes, the most an answer set may be."
        else:
            try:
                updated = await interviews.update_answers(
                    ctx,
                    session.principal,
                    interview_id,
                    body=content,
                    content_type=_answer_file_type(upload, content),
                )
            except _NOT_ABOUT_THE_FILE:
                raise  # the error page says these, not the upload field
            except DocuhooksError as exc:
                text = exc.message.rstrip(".")
                problem = (
                    f"{upload.filename} is not an answer set this interview can read, so "
                    f"nothing changed: {text}."
                )
            else:
                warnings = list(updated["warnings"])
    state = await _state(ctx, session, interview_id)
    # Without htmx, the whole page; its script (when it runs) gives it the interview's own
    # address, so a reload does not post again.
    page = "platform/_interview_body.html" if is_htmx(request) else "platform/interview.html"
    if problem:
        return await _page(
            request,
            ctx,
            session,
            page,
            state,
            status_code=422,
            upload_error=problem,
            focus=ANSWER_FILE_FIELD,
        )
    name = upload.filename if isinstance(upload, UploadFile) else ""
    message = f"The answers of {name} are in."
    if warnings:
        message += " Some could not be used: they are listed below."
    # The file may have replaced answers a webhook supplied: their marks no longer hold.
    return await _page(
        request,
        ctx,
        session,
        page,
        state,
        warnings=warnings,
        message=message,
        focus="interview-result",
        clear_marks=True,
    )
