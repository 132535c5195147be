"""Quick documents: assemble a template from an answer set without a work item.

Nothing is stored and no event is written: quick documents never fire webhooks.
"""

from __future__ import annotations

from dataclasses import dataclass

from docuhooks.answers import AnswerLimits, off_loop, parse_answer_payload, variable_map
from docuhooks.context import AppContext
from docuhooks.identity.models import Principal
from docuhooks.platform import catalog


@dataclass(frozen=True, slots=True)
class QuickDocument:
    content: bytes
    file_name: str
    #: Answers left out because they do not fit the template, each naming its variable.
    warnings: tuple[str, ...]


async def assemble_quick_document(
    ctx: AppContext,
    principal: Principal,
    template_id: str,
    *,
    body: bytes,
    content_type: str,
) -> QuickDocument:
    """The answer set is held to the answer-set limits (`AnswerLimitExceeded`: 413 or 422
    naming the limit) and read off the event loop when it is large; the render runs in the
    render pool, bounded by its limits. No transaction is held meanwhile."""
    async with ctx.db.read() as conn:
        template = await catalog.get_row(conn, principal, template_id)
    variables = catalog.variables_of(template)
    parsed = await off_loop(
        len(body),
        ctx.settings.answer_parse_threads,
        parse_answer_payload,
        body,
        content_type,
        variable_map(variables),
        AnswerLimits.from_settings(ctx.settings),
        site=principal.site_id,
    )
    content = await ctx.render_pool.assemble(template.content, parsed.answers, variables)
    return QuickDocument(content, catalog.docx_file_name(template.file_name), parsed.warnings)
