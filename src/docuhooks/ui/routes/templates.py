"""Templates, for site administrators: the list, uploading a DOCX with its variables and
interview event elements, one template with its download, *Test assemble*, which builds
a quick document from sample answers and downloads it, and deleting one (after a page that
asks first, and says what keeps it when something does).

Each page calls the service the API's template routes call (`platform.catalog`,
`platform.quick`), so the rules and the messages are the API's own: the form is turned into
the API's `definition` and read by the same parser, and the API's error details are shown at
the form field they name. A refused upload stores nothing."""

from __future__ import annotations

import json
import re
from datetime import date
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import FormData, UploadFile

from docuhooks.answers import VariableDef
from docuhooks.api.deps import Ctx
from docuhooks.api.routes.platform_support import attachment
from docuhooks.errors import Conflict, DocuhooksError, FieldError, ValidationFailed
from docuhooks.platform import catalog, deletion, quick
from docuhooks.platform.access import require_site_admin
from docuhooks.platform.templates import template_identifier
from docuhooks.store import pagination
from docuhooks.ui.rendering import UiRoute, redirect, render, render_sized, sentence
from docuhooks.ui.session import Checked, SignedIn, UiSession, read_form

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

TYPES = ("text", "number", "date", "truefalse", "multiplechoice")
#: Empty rows the upload form offers beyond those filled in (more can be added in place).
SPARE_ROWS = 3
#: The most variable rows one form is read for.
MAX_ROWS = 500
_ROW_PATH = re.compile(r"^definition\.variables\[(\d+)\](?:\.(\w+))?$")


@router.get("/templates")
async def template_list(
    request: Request, ctx: Ctx, session: SignedIn, cursor: str = ""
) -> Response:
    require_site_admin(session.principal, "managing templates")
    async with ctx.db.read() as conn:
        page = await catalog.list_page(
            conn, session.principal, limit=pagination.MAX_LIMIT, cursor=cursor or None
        )
    return render(request, "platform/templates.html", session, page=page)


# Before /templates/{template_id}, which would otherwise take "new" for an id.
@router.get("/templates/new")
async def new_template(request: Request, session: SignedIn) -> Response:
    require_site_admin(session.principal, "uploading a template")
    return _upload_page(request, session, {"name": "", "events": "", "rows": []})


@router.get("/templates/variable-row")
async def variable_row(request: Request, session: SignedIn, index: int = 0) -> Response:
    """One more empty variable row for the upload form (htmx), and the button that adds the
    next one."""
    require_site_admin(session.principal, "uploading a template")
    index = max(0, min(index, MAX_ROWS - 1))
    return render(
        request,
        "platform/_variable_row.html",
        session,
        row=_empty_row(),
        index=index,
        errors={},
        types=TYPES,
        oob_button=True,
    )


@router.post("/templates")
async def upload_template(request: Request, ctx: Ctx, session: Checked) -> Response:
    require_site_admin(session.principal, "uploading a template")
    form = await read_form(request)
    values = _form_values(form)
    upload = form.get("file")
    errors: dict[str, list[str]] = {}
    definition, row_of = _definition(values)
    parsed: catalog.TemplateDefinition | None = None
    try:
        parsed = await catalog.read_definition(ctx, session.principal, json.dumps(definition))
    except ValidationFailed as exc:
        _place_errors(exc, values, row_of, errors)
    if not isinstance(upload, UploadFile) or not upload.filename:
        errors.setdefault("file", []).append("Choose the template's .docx file.")
    if parsed is None or errors or not isinstance(upload, UploadFile):
        return _upload_page(request, session, values, errors=errors, status_code=422)
    problem = ""
    try:
        created = await catalog.create(
            ctx,
            session.principal,
            file_name=upload.filename or "template.docx",
            content=await upload.read(),
            definition=parsed,
        )
    except DocuhooksError as exc:
        if exc.status >= 500:
            raise
        problem = _place_errors(exc, values, row_of, errors)
        status = exc.status
    else:
        if not created["warnings"]:
            return redirect(f"/ui/templates/{created['id']}?notice=template-uploaded")
        # Stored, with declarations the document does not use: say which, once.
        return await _template_page(
            request,
            ctx,
            session,
            created,
            parsed.variables,
            upload_warnings=created["warnings"],
        )
    return _upload_page(
        request, session, values, errors=errors, problem=problem, status_code=status
    )


@router.get("/templates/{template_id}")
async def template_page(
    request: Request, template_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    require_site_admin(session.principal, "managing templates")
    return await _template_page_of(request, ctx, session, template_id)


@router.get("/templates/{template_id}/content")
async def template_content(template_id: str, ctx: Ctx, session: SignedIn) -> Response:
    require_site_admin(session.principal, "managing templates")
    async with ctx.db.read() as conn:
        row = await catalog.get_document(conn, session.principal, template_id)
    return Response(
        row.content,
        media_type=catalog.DOCX_CONTENT_TYPE,
        headers={"Content-Disposition": attachment(row.file_name)},
    )


@router.get("/templates/{template_id}/delete")
async def confirm_template_delete(
    request: Request, template_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    """Asks first; or, while work items use the template or webhooks name it, says so
    (with the way to them) instead of offering the button."""
    require_site_admin(session.principal, "deleting a template")
    return await _delete_page(request, ctx, session, template_id)


@router.post("/templates/{template_id}/delete")
async def delete_template(
    request: Request, template_id: str, ctx: Ctx, session: Checked
) -> Response:
    require_site_admin(session.principal, "deleting a template")
    try:
        async with ctx.db.transaction() as conn:
            await deletion.delete_template(conn, session.principal, template_id, now=ctx.now())
    except Conflict:
        # Used since the page was shown: the page again, saying by what.
        return await _delete_page(request, ctx, session, template_id, status_code=409)
    return redirect("/ui/templates?notice=template-deleted")


async def _delete_page(
    request: Request, ctx: Ctx, session: UiSession, template_id: str, *, status_code: int = 200
) -> Response:
    async with ctx.db.read() as conn:
        row = await catalog.get_summary(conn, session.principal, template_id, size=True)
        use = await deletion.template_use(conn, session.principal.site_id, row.id)
    return render(
        request,
        "platform/template_delete.html",
        session,
        status_code=status_code,
        document_template=catalog.to_api(row),
        use=use,
    )


@router.post("/templates/{template_id}/assemble")
async def test_assemble(request: Request, template_id: str, ctx: Ctx, session: Checked) -> Response:
    """A quick document from the answers in the form, downloaded. Answers the template cannot
    take are left out, as the API does; the page lists them first and assembles only when
    asked again (`anyway`), since a download cannot show them."""
    require_site_admin(session.principal, "managing templates")
    form = await read_form(request)
    answers = str(form.get("answers") or "")
    body = answers.encode()
    content_type = "application/xml" if answers.lstrip().startswith("<") else "application/json"
    try:
        document = await quick.assemble_quick_document(
            ctx, session.principal, template_id, body=body, content_type=content_type
        )
    except DocuhooksError as exc:
        if exc.status >= 500 or exc.status in (403, 404):
            raise
        message = "; ".join(f"{e.field}: {e.message}" for e in exc.details) or exc.message
        return await _template_page_of(
            request, ctx, session, template_id, answers, answers_error=sentence(message), status=422
        )
    if document.warnings and form.get("anyway") != "yes":
        return await _template_page_of(
            request, ctx, session, template_id, answers, warnings=document.warnings
        )
    headers = {"Content-Disposition": attachment(document.file_name)}
    if document.warnings:
        headers["X-Docuhooks-Warnings"] = quick.warnings_header(document.warnings)
    return Response(document.content, media_type=catalog.DOCX_CONTENT_TYPE, headers=headers)


# --- the upload form -------------------------------------------------------------------------


def _empty_row() -> dict[str, str]:
    return {"name": "", "type": "text", "depth": "0", "options": ""}


def _form_values(form: FormData) -> dict[str, Any]:
    """The upload form as it was filled in, to show it again after a refusal."""
    rows = []
    for index in range(MAX_ROWS):
        if f"var-{index}-name" not in form:
            break
        rows.append(
            {
                key: str(form.get(f"var-{index}-{key}") or "")
                for key in ("name", "type", "depth", "options")
            }
        )
    return {
        "name": str(form.get("name") or ""),
        "events": str(form.get("events") or ""),
        "rows": rows,
    }


def _definition(values: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """The API's `definition` from the form, and for each variable in it the form row it
    came from. Rows with neither a name nor options are spare rows, left out."""
    variables: list[dict[str, Any]] = []
    row_of: list[int] = []
    for index, row in enumerate(values["rows"]):
        if not row["name"].strip() and not row["options"].strip():
            continue
        depth: Any = row["depth"].strip() or "0"
        if re.fullmatch(r"-?\d{1,3}", depth):
            depth = int(depth)
        variable: dict[str, Any] = {
            "name": row["name"].strip(),
            "type": row["type"],
            "repeatDepth": depth,
        }
        options = [line.strip() for line in row["options"].splitlines() if line.strip()]
        if options:
            variable["options"] = options
        variables.append(variable)
        row_of.append(index)
    events = [line.strip() for line in values["events"].splitlines() if line.strip()]
    definition: dict[str, Any] = {"variables": variables, "eventElements": events}
    if values["name"].strip():
        definition["name"] = values["name"].strip()
    return definition, row_of


def _place_errors(
    exc: DocuhooksError,
    values: dict[str, Any],
    row_of: list[int],
    errors: dict[str, list[str]],
) -> str:
    """Put each of the API's error details at the form field it is about; returns a message
    for the top of the form when the error names no field."""
    details = exc.details or [FieldError("file" if exc.code != "conflict" else "name", "")]
    for detail in details:
        message = sentence(detail.message or exc.message)
        errors.setdefault(_field_of(detail, values, row_of), []).append(message)
    return "" if exc.details else sentence(exc.message)


def _field_of(detail: FieldError, values: dict[str, Any], row_of: list[int]) -> str:
    field = detail.field
    row = _ROW_PATH.match(field)
    if row is not None and int(row.group(1)) < len(row_of):
        index = row_of[int(row.group(1))]
        if row.group(2) == "type":
            return f"var-{index}-type"
        text = detail.message.lower()
        for word, key in (("repeat depth", "depth"), ("option", "options"), ("name", "name")):
            if word in text:
                return f"var-{index}-{key}"
        return f"var-{index}-name"
    if field.startswith("definition.eventElements"):
        return "events"
    if field in ("definition.name", "name"):
        return "name"
    if field == "definition":
        # The declarations against the document: a named variable's row, the event
        # elements, or (a placeholder no variable declares) the variables as a whole.
        for index, row in enumerate(values["rows"]):
            if row["name"].strip() and f'"{row["name"].strip()}"' in detail.message:
                return f"var-{index}-name"
        if "interview event element" in detail.message:
            return "events"
        return "variables"
    return "file"


def _upload_page(
    request: Request,
    session: UiSession,
    values: dict[str, Any],
    *,
    errors: dict[str, list[str]] | None = None,
    problem: str = "",
    status_code: int = 200,
) -> Response:
    rows = list(values["rows"])
    # Spare rows after the last one filled in, so more variables can be typed without script.
    filled = max((i + 1 for i, r in enumerate(rows) if r["name"] or r["options"]), default=0)
    rows = rows[: max(filled, len(rows) - SPARE_ROWS)]
    rows += [_empty_row() for _ in range(SPARE_ROWS)]
    return render(
        request,
        "platform/template_new.html",
        session,
        status_code=status_code,
        values={**values, "rows": rows},
        errors=errors or {},
        problem=problem,
        types=TYPES,
    )


# --- one template and Test assemble ----------------------------------------------------------


def _sample_value(variable: dict[str, Any], today: date) -> Any:
    samples: dict[str, Any] = {
        "text": f"Sample {variable['name']}",
        "number": 1500,
        "date": today.isoformat(),
        "truefalse": True,
        "multiplechoice": variable["options"][:1],
    }
    value = samples[variable["type"]]
    for _ in range(variable["repeatDepth"]):
        value = [value, value]
    return value


def _sample_answers(variables: list[dict[str, Any]], today: date) -> dict[str, Any]:
    """Canonical answer JSON with a sample answer for each variable (two iterations per
    repeat level), for the administrator to edit before *Test assemble*."""
    return {
        "answers": [
            {"name": v["name"], "type": v["type"], "value": _sample_value(v, today)}
            for v in variables
        ]
    }


async def _template_page_of(
    request: Request,
    ctx: Ctx,
    session: UiSession,
    template_id: str,
    answers: str | None = None,
    *,
    answers_error: str = "",
    warnings: tuple[str, ...] = (),
    status: int = 200,
) -> Response:
    """The template's page: its variables read as `catalog.read_variables` reads them
    (kept, or off the event loop when many), never with the document."""
    async with ctx.db.read() as conn:
        row = await catalog.get_summary(conn, session.principal, template_id, size=True)
        stored = await catalog.stored_variables(conn, row)
    variables = tuple((await catalog.read_variables(ctx, row, stored)).values())
    return await _template_page(
        request,
        ctx,
        session,
        catalog.to_api(row),
        variables,
        answers=answers,
        answers_error=answers_error,
        warnings=warnings,
        status_code=status,
    )


#: About how many bytes of the template page each variable makes (a row of its table and
#: its sample answer), and each option of one.
_VARIABLE_BYTES = 250
_OPTION_BYTES = 20


async def _template_page(
    request: Request,
    ctx: Ctx,
    session: UiSession,
    template: dict[str, Any],
    variables: tuple[VariableDef, ...],
    *,
    answers: str | None = None,
    answers_error: str = "",
    warnings: tuple[str, ...] = (),
    upload_warnings: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    """One template's page; `answers` as typed, or (None) sample answers for each variable.
    A template of thousands of variables is a page of megabytes: it is built and rendered
    off the event loop (`render_sized`)."""
    size = sum(_VARIABLE_BYTES + _OPTION_BYTES * len(v.options) for v in variables)
    return await render_sized(
        request,
        "platform/template.html",
        session,
        partial(
            _template_context,
            template,
            variables,
            answers=answers,
            today=ctx.now().date(),
            answers_error=answers_error,
            warnings=warnings,
            upload_warnings=upload_warnings or [],
        ),
        size=size,
        threads=ctx.settings.answer_parse_threads,
        status_code=status_code,
    )


def _template_context(
    template: dict[str, Any],
    variables: tuple[VariableDef, ...],
    *,
    answers: str | None,
    today: date,
    **rest: Any,
) -> dict[str, Any]:
    declared = [catalog.variable_to_json(v) for v in variables]
    if answers is None:
        answers = json.dumps(_sample_answers(declared, today), indent=2, ensure_ascii=False)
    return {
        "document_template": template,
        "variables": [{**v, "identifier": template_identifier(v["name"])} for v in declared],
        "answers": answers,
        **rest,
    }
