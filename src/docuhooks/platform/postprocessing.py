"""The post-processing step of finishing an interview (SPEC §6.3).

Between assembly and completion, the site's PostProcessingEvent webhook may replace or add
documents. That is a later piece of work; until it lands, this step passes the assembled
documents through unchanged, so every caller already runs through the one place it will go.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.context import AppContext


async def post_process(
    ctx: AppContext,
    conn: AsyncConnection,
    *,
    version: sa.Row[Any],
    documents: list[sa.Row[Any]],
) -> list[sa.Row[Any]]:
    """The version's documents after post-processing (metadata rows, in assembled order).

    `conn` is the finishing transaction; `documents` are already stored on `version`.
    """
    return documents
