"""Quick documents (SPEC §2): assemble a template from an answer set without a work item.

Nothing is stored and no event is written: quick documents never fire webhooks.
"""

from __future__ import annotations

from dataclasses import dataclass

from docuhooks.answers import parse_answer_payload, variable_map
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
    """Render in the render pool, bounded by its limits; no transaction is held meanwhile."""
    async with ctx.db.read() as conn:
        template = await catalog.get_row(conn, principal, template_id)
    variables = catalog.variables_of(template)
    parsed = parse_answer_payload(body, content_type, variable_map(variables))
    content = await ctx.render_pool.assemble(template.content, parsed.answers, variables)
    return QuickDocument(content, catalog.docx_file_name(template.file_name), parsed.warnings)
