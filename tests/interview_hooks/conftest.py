"""The context of these tests also closes its pooled transport, as the app's shutdown does."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from docuhooks.context import AppContext


@pytest.fixture
async def ctx(ctx: AppContext) -> AsyncIterator[AppContext]:
    yield ctx
    await ctx.close_transports()  # the calls' connection pools
