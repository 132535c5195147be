"""Fixtures the platform's tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.platform.post_processing_support import Receiver, running_receiver

from docuhooks.context import AppContext


@pytest.fixture
async def receiver(ctx: AppContext) -> AsyncIterator[Receiver]:
    """A post-processing and notification receiver on a port of its own, for one test."""
    async with running_receiver() as running:
        yield running
    await ctx.close_transports()  # the calls' connection pools
