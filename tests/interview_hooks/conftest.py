"""Close the context's pooled transport after each test, as the app's shutdown does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from docuhooks.context import AppContext


@pytest.fixture(autouse=True)
async def close_transport(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    # Asked for here, before the test, so the context outlives this fixture's teardown.
    ctx: AppContext | None = (
        request.getfixturevalue("ctx") if "ctx" in request.fixturenames else None
    )
    yield
    if ctx is not None and ctx.transport_override is not None:
        await ctx.transport_override.close()
        ctx.transport_override = None
