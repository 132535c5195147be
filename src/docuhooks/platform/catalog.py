"""Templates: upload a DOCX with its variable declarations, read them back.

The document itself is checked by `platform.templates` (it must be a DOCX whose placeholders
parse, and every placeholder must map to a declared variable); this module reads the
declarations sent with it, stores both, and turns rows back into `VariableDef`s.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from types import SimpleNamespace
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.answers import (
    AnswerSetError,
    AnswerType,
    VariableDef,
    cached_template_variables,
    load_template_variables,
    off_loop,
)
from docuhooks.errors import FieldError, NotFound, ValidationFailed
from docuhooks.identity.models import Principal
from docuhooks.platform import storage
from docuhooks.platform.access import parse_id, require_site_admin
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.templates import check_declarations
from docuhooks.store import pagination
from docuhooks.store.schema import templates
from docuhooks.store.scoped import insert_named

DOCX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_VARIABLE_KEYS = frozenset({"name", "type", "repeatDepth", "options"})
_DEFINITION_KEYS = frozenset({"name", "variables", "eventElements"})
#: A template declares at most this many variables: as many answers as an answer set holds
#: by default (`max_answers`). Each is a field of the interview page, rendered on every
#: visit; tens of thousands made a page of megabytes that held the server for seconds.
MAX_VARIABLES = 5_000
#: Interview event elements (buttons) a template declares at most.
MAX_EVENT_ELEMENTS = 500
#: Options of one multiplechoice variable at most.
MAX_OPTIONS = 1_000


@dataclass(frozen=True, slots=True)
class TemplateDefinition:
    """What is declared with a template upload (the `definition` JSON part)."""

    name: str | None
    variables: tuple[VariableDef, ...]
    event_elements: tuple[str, ...]


def parse_definition(raw: str | bytes) -> TemplateDefinition:
    """The `definition` JSON: `{name?, variables: [{name, type, repeatDepth?, options?}],
    eventElements?: [names]}`. Every problem is reported with its path."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed.of([FieldError("definition", f"is not valid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise ValidationFailed.of([FieldError("definition", "must be a JSON object")])
    errors: list[FieldError] = []
    for key in sorted(set(data) - _DEFINITION_KEYS):
        errors.append(FieldError(f"definition.{key}", "is not a known field"))
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name.strip()) <= 200):
        errors.append(FieldError("definition.name", "must be a string of 1 to 200 characters"))
    raw_variables = data.get("variables", [])
    variables: list[VariableDef] = []
    if not isinstance(raw_variables, list):
        errors.append(FieldError("definition.variables", "must be a list"))
        raw_variables = []
    elif len(raw_variables) > MAX_VARIABLES:
        errors.append(
            FieldError(
                "definition.variables",
                f"declares {len(raw_variables)} variables; a template may have {MAX_VARIABLES}",
            )
        )
        raw_variables = []
    for index, entry in enumerate(raw_variables):
        variable = _variable(entry, f"definition.variables[{index}]", errors)
        if variable is not None:
            variables.append(variable)
    raw_events = data.get("eventElements", [])
    if not isinstance(raw_events, list) or not all(isinstance(e, str) for e in raw_events):
        errors.append(FieldError("definition.eventElements", "must be a list of names"))
        raw_events = []
    elif len(raw_events) > MAX_EVENT_ELEMENTS:
        errors.append(
            FieldError(
                "definition.eventElements",
                f"names {len(raw_events)} event elements; a template may have {MAX_EVENT_ELEMENTS}",
            )
        )
        raw_events = []
    for index, event in enumerate(raw_events):
        if len(event.strip()) > 200:
            errors.append(
                FieldError(f"definition.eventElements[{index}]", "is longer than 200 characters")
            )
    if errors:
        raise ValidationFailed.of(errors)
    return TemplateDefinition(
        name=name.strip() if isinstance(name, str) else None,
        variables=tuple(variables),
        event_elements=tuple(e.strip() for e in raw_events),
    )


async def read_definition(
    ctx: PlatformContext, principal: Principal, raw: str | bytes
) -> TemplateDefinition:
    """`parse_definition`, in the parsing threads under one of the site's slots when the
    definition is large (`answers.offload`): one of about 1 MB (the most a form field holds)
    takes a tenth of a second or more to read, which on the event loop every site's requests
    would wait for."""
    return await off_loop(
        len(raw),
        ctx.settings.answer_parse_threads,
        parse_definition,
        raw,
        site=principal.site_id,
    )


def _variable(entry: Any, where: str, errors: list[FieldError]) -> VariableDef | None:
    """One entry of the definition's `variables`, or None with its problem in `errors`."""
    if not isinstance(entry, dict):
        errors.append(FieldError(where, "must be an object {name, type, repeatDepth, options}"))
        return None
    unknown = sorted(set(entry) - _VARIABLE_KEYS)
    if unknown:
        errors.append(FieldError(where, f"unknown field(s) {', '.join(unknown)}"))
        return None
    if "name" not in entry or "type" not in entry:
        errors.append(FieldError(where, "needs a name and a type"))
        return None
    options = entry.get("options")
    if isinstance(options, list) and len(options) > MAX_OPTIONS:
        errors.append(
            FieldError(
                f"{where}.options",
                f"has {len(options)} options; a variable may have {MAX_OPTIONS}",
            )
        )
        return None
    if entry["type"] not in {t.value for t in AnswerType}:
        errors.append(
            FieldError(
                f"{where}.type",
                f"unknown type {entry['type']!r}; expected one of "
                + ", ".join(t.value for t in AnswerType),
            )
        )
        return None
    try:
        return VariableDef(
            entry["name"],
            AnswerType(entry["type"]),
            entry.get("repeatDepth", 0),
            entry.get("options", ()),
        )
    except AnswerSetError as exc:
        errors.append(FieldError(where, exc.message))
        return None


def docx_file_name(template_file_name: str) -> str:
    """The file name of a document assembled from the template: its name, as a .docx."""
    stem = PurePath(template_file_name).stem or "document"
    return f"{stem}.docx"


def variable_to_json(variable: VariableDef) -> dict[str, Any]:
    return {
        "name": variable.name,
        "type": str(variable.type),
        "repeatDepth": variable.repeat_depth,
        "options": list(variable.options),
    }


#: What a template is shown with but its document and its variables: a template's variable
#: definitions are up to about a megabyte of JSON, which the database driver would decode
#: on the event loop for every template read. Lists show their count (`variable_count`).
_DECLARED_COLUMNS = tuple(c for c in templates.c if c.name not in ("content", "variables"))
_SIZE = sa.func.length(templates.c.content).label("size")
_SUMMARY_COLUMNS = (*_DECLARED_COLUMNS, _SIZE)
#: The variables as their stored JSON text, to be passed on as they are (`orjson.Fragment`)
#: or read off the event loop when large (`stored_variables`, `read_variables`).
_VARIABLES_TEXT = sa.cast(templates.c.variables, sa.Text).label("variables_text")
#: What a download or an assembly reads (`get_document`).
_DOCUMENT_COLUMNS = tuple(
    templates.c[name] for name in ("id", "site_id", "file_name", "sha256", "content")
)


def to_api(row: Any, warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    """The template as the API shows it; `warnings` only on the upload's own response.

    `row` holds its variables decoded (`variables`), as their stored JSON text
    (`variables_text`: written out as they are, an `orjson.Fragment`), or neither (a list's
    lighter form: without them); `size`, or the document itself (`content`)."""
    fields = row._mapping if isinstance(row, sa.Row) else vars(row)
    size = fields["size"] if "size" in fields else len(fields["content"])
    body: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "fileName": row.file_name,
        "size": size,
        "sha256": row.sha256,
    }
    if "variables_text" in fields:
        body["variables"] = orjson.Fragment(fields["variables_text"])
    elif "variables" in fields:
        body["variables"] = list(row.variables)
    count = fields.get("variable_count")
    body["variableCount"] = len(row.variables) if "variables" in fields else count
    body["eventElements"] = list(row.event_elements)
    body["createdDate"] = row.created_at
    body["createdBy"] = row.created_by
    body["warnings"] = list(warnings)
    return body


async def create(
    ctx: PlatformContext,
    principal: Principal,
    *,
    file_name: str,
    content: bytes,
    definition: TemplateDefinition,
) -> dict[str, Any]:
    """Check the document against its declarations and store both.

    A document that is not a DOCX, whose placeholders do not parse, or that uses a
    placeholder no variable declares, is refused with the reason; declared variables the
    document does not use are allowed, with a warning in the response. The document is
    inspected in the render pool, within its limits, before any transaction is opened. A
    template that would take the site past its storage quota is refused
    (`StorageQuotaExceeded`).
    """
    require_site_admin(principal, "uploading a template")
    file_name = PurePath(file_name.replace("\\", "/")).name.strip() or "template.docx"
    info = await ctx.render_pool.inspect(content, site_id=principal.site_id, field="file")
    check = check_declarations(info, definition.variables, definition.event_elements)
    if not check.ok:
        raise ValidationFailed.of([FieldError("definition", error) for error in check.errors])
    name = definition.name or PurePath(file_name).stem or file_name
    if len(name) > 200 or len(file_name) > 255:
        raise ValidationFailed.of([FieldError("name", "must be at most 200 characters")])
    row_id = str(uuid.uuid4())
    values = {
        "id": row_id,
        "site_id": principal.site_id,
        "name": name,
        "file_name": file_name,
        "content": content,
        "sha256": hashlib.sha256(content).hexdigest(),
        "variables": [variable_to_json(v) for v in definition.variables],
        "variable_count": len(definition.variables),
        "event_elements": list(definition.event_elements),
        "created_at": ctx.now(),
        "created_by": principal.user_id,
    }
    async with ctx.db.transaction() as conn:
        await storage.admit(
            conn,
            storage.StorageQuota.from_settings(ctx.settings),
            principal.site_id,
            more_bytes=len(content),
            more_files=1,
            what=f"template {file_name!r}",
        )
        await insert_named(conn, templates, values, "template")
    # What was stored, without reading it back (a megabyte of variables, decoded again).
    return to_api(SimpleNamespace(**values, size=len(content)), check.warnings)


async def get_id(conn: AsyncConnection, principal: Principal, template_id: str) -> str:
    """The template's id, if it is in the caller's site (404 otherwise): all a filter by
    template needs, read without the rest of the row."""
    template_id = parse_id(template_id, "template")
    found = await conn.scalar(
        sa.select(templates.c.id).where(
            templates.c.id == template_id, templates.c.site_id == principal.site_id
        )
    )
    if found is None:
        raise NotFound(f"template {template_id} does not exist")
    return str(found)


async def get_document(
    conn: AsyncConnection, principal: Principal, template_id: str
) -> sa.Row[Any]:
    """The template's document (`content`) with what names and identifies it (`id`,
    `site_id`, `file_name`, `sha256`), if it is in the caller's site: what a download or an
    assembly reads, without the variables (`stored_variables` reads those)."""
    template_id = parse_id(template_id, "template")
    row = (
        await conn.execute(
            sa.select(*_DOCUMENT_COLUMNS).where(
                templates.c.id == template_id, templates.c.site_id == principal.site_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"template {template_id} does not exist")
    return row


async def get_stored(
    conn: AsyncConnection, principal: Principal, template_id: str
) -> dict[str, Any]:
    """The template as the API shows it, its variables passed on as stored (`to_api`): a
    large template's are neither decoded nor encoded again to be shown."""
    template_id = parse_id(template_id, "template")
    row = (
        await conn.execute(
            sa.select(*_SUMMARY_COLUMNS, _VARIABLES_TEXT).where(
                templates.c.id == template_id, templates.c.site_id == principal.site_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"template {template_id} does not exist")
    return to_api(row)


async def get_summary(
    conn: AsyncConnection, principal: Principal, template_id: str, *, size: bool = False
) -> sa.Row[Any]:
    """The template without its document or its variables (`get_document` and
    `stored_variables` read those): what a page about it, an interview or a completion needs
    of it; with `size`, the document's."""
    template_id = parse_id(template_id, "template")
    row = (
        await conn.execute(
            sa.select(*(_SUMMARY_COLUMNS if size else _DECLARED_COLUMNS)).where(
                templates.c.id == template_id, templates.c.site_id == principal.site_id
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"template {template_id} does not exist")
    return row


async def stored_variables(conn: AsyncConnection, row: Any) -> Mapping[str, VariableDef] | str:
    """What `read_variables` takes for the template `row` (any of its columns but
    `variables`): the variables kept for it (`answers.load_template_variables`), else their
    stored JSON text, undecoded. Read it in the transaction, and let the connection go
    before `read_variables`, which may wait for the site's turn in the parsing threads: a
    site's large templates then hold no connection other sites' requests need."""
    found = cached_template_variables(row.id, row.sha256)
    if found is not None:
        return found
    text = await conn.scalar(sa.select(_VARIABLES_TEXT).where(templates.c.id == row.id))
    if text is None:
        # Deleted since `row` was read (a template no work item uses may be).
        raise NotFound(f"template {row.id} does not exist")
    return str(text)


async def read_variables(
    ctx: PlatformContext, row: Any, stored: Mapping[str, VariableDef] | str
) -> Mapping[str, VariableDef]:
    """The template's declared variables by name (read-only), from what `stored_variables`
    read: read once per template and kept, in the parsing threads under one of the site's
    slots when the definitions are large (`answers.load_template_variables`)."""
    if isinstance(stored, str):
        return await load_template_variables(
            row.id, row.sha256, stored, ctx.settings.answer_parse_threads, site=row.site_id
        )
    return stored


async def list_page(
    conn: AsyncConnection,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
    variables: bool = False,
) -> pagination.Page[dict[str, Any]]:
    """The site's templates, newest first, each as the API shows it (`to_api`) with its
    count of variables but without the variables themselves unless `variables` (then as
    stored, passed on undecoded). Never the documents."""
    columns = (*_SUMMARY_COLUMNS, _VARIABLES_TEXT) if variables else _SUMMARY_COLUMNS
    query = pagination.apply(
        sa.select(*columns).where(templates.c.site_id == principal.site_id),
        templates.c.created_at,
        templates.c.id,
        limit=limit,
        cursor=cursor,
    )
    rows = list((await conn.execute(query)).all())
    return pagination.page_of(rows, limit, to_api)
