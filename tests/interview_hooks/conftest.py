"""Close the context's pooled transport after each test, as the app's shutdown does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from docuhooks.context import AppContext


@pytest.fixture(autouse=True)
async def close_transport(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    yield
    if "ctx" not in request.fixturenames:
        return
    ctx: AppContext = request.getfixturevalue("ctx")
    if ctx.transport_override is not None:
        await ctx.transport_override.close()
        ctx.transport_override = None
