"""The interview page, for every role of the site: opened from a work item (continuing its
version in progress, as the API's open does), one field per template variable, saved as the
person goes, the template's interview event elements as buttons, answer files in and out,
and *Finish*. Each step calls the `platform.interviews` function its API route calls, so
the answers are read, fitted and limited exactly as the API's are.

A page shows as many fields as fit its bound, and a repeated field's rows a window at a time
(`interview_layout`): where the person is (the page's first field, each window's first row)
is in the form and in the page's address. Saving keeps every field and row the page did not
show as it is, and saves a window only over the rows it showed (`interview_form`).

Every step of the form is one POST of the whole form with the button pressed (`action`):
`save` (a field changed), `event:NAME`, `add:3`, `remove:3.1`, `rows:3:25` (another
window of rows; `rows:3` the one of the row typed in `goto.3`), `fields:120` (another page
of fields), `finish`. The answers are saved first, whatever the action, so nothing typed is
lost to a button; only those that changed are saved. An htmx request for `save` gets back
only the save status, the fields' messages and the digest of each window of rows it wrote
(swapped out of band, so the field the person is in keeps focus); the other actions get
the form's body again with `data-focus` naming where focus goes next. Without script, each
is a post and a redirect.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData, UploadFile

from docuhooks.answers import VariableDef, off_loop
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
from docuhooks.platform.storage import StorageQuotaExceeded
from docuhooks.ui import interview_form
from docuhooks.ui.interview_form import Submitted
from docuhooks.ui.interview_layout import LISTED, View, clip, lay_out, whole
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
        stored = await catalog.stored_variables(conn, template)
        counts = await count_interview_event_hooks(
            conn,
            site_id=who.site_id,
            work_group_id=item.work_group_id,
            template_id=template.id,
            names=template.event_elements,
        )
    variables = tuple((await catalog.read_variables(ctx, template, stored)).values())
    asking = {name: _services(count) for name, count in counts.items()}
    answers_text = orjson.dumps(interview["answers"])
    interview["answers"] = _form_answers(answers_text)
    return {
        #: The stored answers' text as read: a save made from them is written only over them.
        "stored": answers_text,
        "interview": interview,
        "item": workitems.to_api(item),
        "tmpl": template,
        "variables": variables,
        "asking": asking,
    }


def _form_answers(answers: Any) -> Any:
    """Stored answers as the form reads them: the stored JSON text (an `orjson.Fragment`,
    passed through as it is, or its bytes) is decoded here when it is small, else with the page, off
    the loop (`_page`)."""
    if isinstance(answers, orjson.Fragment):
        answers = orjson.dumps(answers)
    if isinstance(answers, bytes) and len(answers) <= INLINE_BYTES:
        answers = orjson.loads(answers)
    return answers


def _context(
    state: dict[str, Any],
    *,
    view: View,
    keep: int | None = None,
    submitted: Submitted | None = None,
    posted: frozenset[int] | None = None,
    warnings: list[dict[str, Any]] | None = None,
    sources: dict[str, dict[str, str]] | None = None,
    message: str = "",
    focus: str = "",
    upload_error: str = "",
    clear_marks: bool = False,
    written: dict[int, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The page's fields (those of its `view`, laid out to its bound: `keep` is a field
    that must be on it), with what needs saying; and the digest of each window of rows a
    save `written` (first row, how many, by variable position), for the tab that saved."""
    warnings = warnings or []
    answers = state["interview"]["answers"]
    if isinstance(answers, bytes):
        answers = orjson.loads(answers)
    variables = state["variables"]
    by_name = interview_form.values_by_name(answers)
    layout = lay_out(variables, by_name, view, keep=keep)
    fields = interview_form.fields_of(variables, answers, layout)
    interview_form.apply_problems(fields, submitted, warnings, sources or {})
    problems = sum(1 for f in fields if f.errors)
    if posted is not None and submitted is not None:
        # A field the tab has whose answer was not saved, that the answers as saved now lay
        # out on the next page (a field before it was saved longer): its message has no
        # field here to go with, but the save's status counts it, never "All answers saved."
        on_page = {f.id for f in fields}
        problems += len({key.split("-", 1)[0] for key in submitted.errors} - on_page)
    named = {f.variable.name for f in fields}
    from_webhooks = [w for w in warnings if w.get("source") == "webhook"]
    # Answers to no field of this page (a name the template lacks, a field of another
    # page) are said above it.
    others = [
        w for w in warnings if w.get("source") != "webhook" and w.get("variable") not in named
    ]
    return {
        **state,
        "layout": layout,
        "fields": fields,
        "posted": posted,
        "webhook_warnings": [_listed(w) for w in from_webhooks[:LISTED]],
        "more_webhook_warnings": max(len(from_webhooks) - LISTED, 0),
        "other_warnings": [_listed(w) for w in others[:LISTED]],
        "more_other_warnings": max(len(others) - LISTED, 0),
        "problems": problems,
        "message": clip(message),
        "focus": focus,
        "upload_error": clip(upload_error),
        "upload_field": ANSWER_FILE_FIELD,
        "clear_marks": clear_marks,
        "digests": interview_form.window_digests(variables, by_name, written or {}),
    }


def _listed(warning: dict[str, Any]) -> dict[str, Any]:
    """A warning as the page lists it: its message cut to `MESSAGE_CHARS`."""
    return {**warning, "message": clip(str(warning.get("message", "")))}


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
    view: View,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    submitted: Submitted | None = None,
    **options: Any,
) -> Response:
    """The interview page (or one of its fragments, `template`) of `state` at `view`, with
    the form's fields and messages (`_context`): a large one is built and rendered off the
    event loop (`render_sized`), so one site's template of thousands of variables does not
    hold every other request meanwhile."""
    return await render_sized(
        request,
        template,
        session,
        partial(_context, state, view=view, submitted=submitted, **options),
        size=_page_size(state, submitted),
        threads=ctx.settings.answer_parse_threads,
        status_code=status_code,
        headers=headers,
    )


def _address(interview_id: str, view: View) -> str:
    """The page's address at `view`: a reload shows the same fields and rows."""
    return f"/ui/interviews/{interview_id}{view.query()}"


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
        view=View(),
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


#: How many times a step is made again when the answers it was made from were saved by
#: another tab meanwhile (`interviews.AnswersChanged`), before the conflict is shown.
_STEP_ATTEMPTS = 3


@router.get("/interviews/{interview_id}")
async def interview_page(
    request: Request, interview_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    state = await _state(ctx, session, interview_id)
    view = View.read(request.query_params)
    return await _page(request, ctx, session, "platform/interview.html", state, view=view)


async def _save(
    ctx: Ctx, session: UiSession, interview_id: str, body: bytes, *, over: bytes | None = None
) -> tuple[list[dict[str, Any]], Any]:
    """Save the answers of a step (`Step.body`, shorthand answer JSON), as the API's
    `PUT …/answers` does; their warnings, and the answers as this save wrote them (as the
    form reads them: `_form_answers`), None when there was nothing to save. With `over`
    (the stored answers' text the step was made from), only over those answers
    (`interviews.AnswersChanged` otherwise)."""
    if not body:
        return [], None
    updated = await interviews.update_answers(
        ctx,
        session.principal,
        interview_id,
        body=body,
        content_type="application/json",
        expected=over.decode() if over is not None else None,
    )
    return list(updated["warnings"]), _form_answers(updated["answers"])


@dataclass
class Step:
    """What a step's form asks: the answers read from it (`submitted`), what of them to
    save (`body`, shorthand answer JSON, empty when nothing changed), and where the page
    is then (`view`, with the field it is about to `keep` on it), with what to say."""

    submitted: Submitted
    body: bytes
    view: View
    keep: int | None = None
    focus: str = ""
    message: str = ""
    #: The windows of rows (first row, how many, by variable position) whose rows `body`
    #: saves: the tab that saved them holds new rows there.
    written: dict[int, tuple[int, int]] = field(default_factory=dict)


def _step(form: FormData, variables: Sequence[VariableDef], answers: Any, action: str) -> Step:
    """The step `action` of the form: the form read against the saved `answers` (decoded
    here when they are still the stored JSON: `_state`), then the row or page the action
    is about. Pure; run off the event loop when the interview is large."""
    if isinstance(answers, bytes):
        answers = orjson.loads(answers)
    saved = interview_form.values_by_name(answers)
    submitted = interview_form.read_form(form, variables, saved)
    step = Step(submitted, b"", View.read(form))
    kind, _, where = action.partition(":")
    if kind in ("add", "remove", "rows"):
        _rows(step, form, variables, kind, where)
    elif kind == "fields":
        if submitted.errors:
            # Moving on would lose what was typed: the page stays with its problems.
            step.message = "Not moved on: correct the answers marked below first."
            step.focus = "interview-result"
        else:
            step.view = step.view.moved(first=whole(where, step.view.first))
            step.focus = "fields-shown"
    changes = interview_form.changed(submitted, saved)
    step.body = json.dumps(changes).encode() if changes else b""
    step.written = {
        index: window
        for index, window in submitted.windows.items()
        if variables[index].name in changes
    }
    # Where the page will be, as its address says it (the page's first field, the first
    # row of each window on it): a reload shows the same fields and rows.
    layout = lay_out(variables, saved | submitted.answers, step.view, keep=step.keep)
    starts = {index: window.start for index, window in layout.windows.items() if window.start}
    step.view = View(layout.first, starts)
    return step


def _rows(
    step: Step, form: FormData, variables: Sequence[VariableDef], kind: str, where: str
) -> None:
    """A repeated field's row added or removed, or another window of its rows shown."""
    position, _, row_text = where.replace(".", ":").partition(":")
    index = whole(position, -1)
    if not 0 <= index < len(variables) or variables[index].repeat_depth != 1:
        return
    variable, submitted = variables[index], step.submitted
    step.keep = index
    if kind == "add" and interview_form.add_row(submitted, variable):
        rows = len(submitted.answers[variable.name])
        step.view = step.view.moved(index=index, start=rows - 1)
        step.focus = f"f{index}-{rows - 1}"
        step.message = f"Row {rows:,} added to {variable.name}."
    elif kind == "remove":
        # Only a row the page showed has a remove button: the rows of its window, which
        # matched the saved ones (`submitted.windows`); any other row stays.
        row = whole(row_text, -1)
        start, count = submitted.windows.get(index, (0, 0))
        if start <= row < start + count and interview_form.remove_row(submitted, variable, row):
            step.focus = f"add-f{index}"
            step.message = f"Row {row + 1:,} of {variable.name} removed."
    elif kind == "rows":
        if any(key.startswith(f"f{index}-") for key in submitted.errors):
            step.message = "Not moved on: correct the rows marked below first."
            step.focus = "interview-result"
            return
        # `rows:3:25` (a paging button), or `rows:3` and the row typed in `goto.3`.
        start = whole(row_text, -1) if row_text else whole(form.get(f"goto.{index}"), 0) - 1
        step.view = step.view.moved(index=index, start=start)
        step.focus = f"f{index}-rows"


@router.post("/interviews/{interview_id}")
async def interview_step(
    request: Request, interview_id: str, ctx: Ctx, session: Checked
) -> Response:
    form = await read_form(request)
    action = str(form.get("action") or "save")
    for attempt in range(1, _STEP_ATTEMPTS + 1):
        state = await _state(ctx, session, interview_id)
        step = await off_loop(
            _page_size(state, None),
            ctx.settings.answer_parse_threads,
            _step,
            form,
            state["variables"],
            state["interview"]["answers"],
            action,
            site=session.principal.site_id,
        )
        # A step that writes windows of rows writes each repeated variable whole, built
        # from the rows just read: only over those, or it would put back rows outside its
        # windows that another tab saved since. Then the step is made again from the
        # answers as they are now (its windows checked against them again).
        over = state["stored"] if step.written else None
        try:
            warnings, written = await _save(ctx, session, interview_id, step.body, over=over)
        except interviews.AnswersChanged:
            if attempt == _STEP_ATTEMPTS:
                raise
            continue
        break
    submitted, message, focus = step.submitted, step.message, step.focus
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
    address = _address(interview_id, step.view)
    if not is_htmx(request) and quiet:
        return redirect(address)
    context: dict[str, Any] = {
        "view": step.view,
        "keep": step.keep,
        "submitted": submitted,
        "warnings": warnings,
        "sources": sources,
        "message": message,
        "focus": focus,
        "status_code": 422 if problems else 200,
    }
    if is_htmx(request) and action == "save":
        # The page stays as it is (the field the person moved to keeps focus): said are the
        # save's status and the fields' messages, and the digest of each window of rows it
        # wrote, so the next save from this tab is checked against the rows it holds now.
        # Read from the answers as this save wrote them: a save by another tab since is
        # not taken for this one's.
        if written is not None:
            state = {**state, "interview": {**state["interview"], "answers": written}}
        posted = frozenset(whole(v, -1) for v in form.getlist("fields"))
        return await _page(
            request,
            ctx,
            session,
            "platform/_saved.html",
            state,
            headers={"HX-Reswap": "none"},
            posted=posted,
            written=step.written,
            **context,
        )
    state = await _state(ctx, session, interview_id)
    if not is_htmx(request):
        # Without script: the whole page, with what needs saying at its place.
        return await _page(request, ctx, session, "platform/interview.html", state, **context)
    # The address follows the page, so a reload shows the same fields and rows.
    return await _page(
        request,
        ctx,
        session,
        "platform/_interview_body.html",
        state,
        headers={"HX-Replace-Url": address},
        **context,
    )


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
            except StorageQuotaExceeded as exc:
                # A good answer set, with no room left for it.
                problem = f"{upload.filename} was not saved: {exc.message.rstrip('.')}."
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
    # address, so a reload does not post again. The same fields as before, from the top.
    page = "platform/_interview_body.html" if is_htmx(request) else "platform/interview.html"
    view = View(max(whole(form.get("first"), 0), 0))
    if problem:
        return await _page(
            request,
            ctx,
            session,
            page,
            state,
            view=view,
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
        view=view,
        warnings=warnings,
        message=message,
        focus="interview-result",
        clear_marks=True,
    )
