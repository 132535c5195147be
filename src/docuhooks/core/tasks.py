"""Stopping a background task: the one way every component's `stop()` does it.

`task.cancel()` then `await task` inside `suppress(CancelledError)` has two holes. It
swallows a cancellation aimed at the caller (a shutdown with a deadline, say, that cancels
the code calling `stop()`), so the caller runs on as if nothing happened; and it cannot tell
the task's own end from the caller's. `stop_task` waits for the task to end and lets a
cancellation of the caller through.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended; a cancellation of the caller is raised,
    and so is an exception the task had already ended with."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
