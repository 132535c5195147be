"""Stopping a background task: it ends, and a cancellation of whoever stops it goes through."""

from __future__ import annotations

import asyncio

import pytest

from docuhooks.core.tasks import stop_task


async def test_a_stopped_task_has_ended_and_the_caller_goes_on() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await stop_task(task)
    assert task.cancelled()


async def test_a_task_that_had_failed_raises_its_error() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await stop_task(task)


async def test_a_cancellation_of_the_caller_is_not_swallowed() -> None:
    """The caller is cancelled while the task is still cleaning up: the caller ends
    cancelled (a `suppress(CancelledError)` around `await task` let it run on)."""
    cleaning = asyncio.Event()
    release = asyncio.Event()
    after_stop: list[str] = []

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await release.wait()

    task = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)

    async def stopper() -> None:
        await stop_task(task)
        after_stop.append("ran on")

    caller = asyncio.create_task(stopper())
    await cleaning.wait()
    caller.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert after_stop == []
    assert task.done()
