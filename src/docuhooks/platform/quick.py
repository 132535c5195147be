"""Quick documents: assemble a template from an answer set without a work item.

Nothing is stored and no event is written: quick documents never fire webhooks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from docuhooks.answers import AnswerLimits, off_loop, parse_answer_payload
from docuhooks.identity.models import Principal
from docuhooks.platform import catalog
from docuhooks.platform.interfaces import PlatformContext

#: The most warnings the `X-Docuhooks-Warnings` header names, and its largest size: an answer
#: set may leave out thousands of answers, and a header of megabytes is refused by proxies
#: (and costs every hop memory). The rest are counted in a last entry.
MAX_HEADER_WARNINGS = 20
MAX_HEADER_BYTES = 8 * 1024
#: One warning is cut to this many characters (a variable name can be long).
_MAX_WARNING_CHARS = 300


@dataclass(frozen=True, slots=True)
class QuickDocument:
    content: bytes
    file_name: str
    #: Answers left out because they do not fit the template, each naming its variable.
    warnings: tuple[str, ...]


async def assemble_quick_document(
    ctx: PlatformContext,
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
        template = await catalog.get_document(conn, principal, template_id)
        stored = await catalog.stored_variables(conn, template)
    by_name = await catalog.read_variables(ctx, template, stored)
    variables = tuple(by_name.values())
    parsed = await off_loop(
        len(body),
        ctx.settings.answer_parse_threads,
        parse_answer_payload,
        body,
        content_type,
        by_name,
        AnswerLimits.from_settings(ctx.settings),
        site=principal.site_id,
    )
    content = await ctx.render_pool.assemble(
        template.content, parsed.answers, variables, site_id=principal.site_id
    )
    return QuickDocument(content, catalog.docx_file_name(template.file_name), parsed.warnings)


def warnings_header(warnings: Sequence[str]) -> str:
    """`warnings` as the `X-Docuhooks-Warnings` header: a JSON list (ASCII) of at most
    `MAX_HEADER_WARNINGS` warnings and `MAX_HEADER_BYTES` bytes, whose last entry says how
    many more were left out, if any."""
    kept: list[str] = []
    # Room for the closing entry ("... N more warnings left out"), whatever N is.
    room = MAX_HEADER_BYTES - 80
    for warning in warnings[:MAX_HEADER_WARNINGS]:
        entry = (
            warning if len(warning) <= _MAX_WARNING_CHARS else warning[:_MAX_WARNING_CHARS] + "..."
        )
        if len(json.dumps([*kept, entry])) > room:
            break
        kept.append(entry)
    left_out = len(warnings) - len(kept)
    if left_out:
        kept.append(f"... and {left_out} more warnings left out")
    return json.dumps(kept)
