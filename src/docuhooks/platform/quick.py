"""Quick documents (SPEC §2): assemble a template from an answer set without a work item.

Nothing is stored and no event is written: quick documents never fire webhooks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.answers import AnswerLimits, off_loop, parse_answer_payload, variable_map
from docuhooks.errors import FieldError, ValidationFailed
from docuhooks.identity.models import Principal
from docuhooks.platform import catalog
from docuhooks.platform.assembly import AssemblyError, assemble
from docuhooks.settings import Settings


@dataclass(frozen=True, slots=True)
class QuickDocument:
    content: bytes
    file_name: str
    #: Answers left out because they do not fit the template, each naming its variable.
    warnings: tuple[str, ...]


async def assemble_quick_document(
    conn: AsyncConnection,
    principal: Principal,
    template_id: str,
    *,
    body: bytes,
    content_type: str,
    settings: Settings,
) -> QuickDocument:
    """The answer set is held to the answer-set limits (`AnswerLimitExceeded`: 413 or 422
    naming the limit) and read off the event loop when it is large."""
    template = await catalog.get_row(conn, principal, template_id)
    variables = catalog.variables_of(template)
    parsed = await off_loop(
        len(body),
        settings.answer_parse_threads,
        parse_answer_payload,
        body,
        content_type,
        variable_map(variables),
        AnswerLimits.from_settings(settings),
    )
    try:
        content = await asyncio.to_thread(assemble, template.content, parsed.answers, variables)
    except AssemblyError as exc:
        raise ValidationFailed.of([FieldError("answers", str(exc))]) from None
    return QuickDocument(content, catalog.docx_file_name(template.file_name), parsed.warnings)
