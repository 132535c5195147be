"""Keeping the garbage collector's pauses short in long-running processes.

CPython's full (oldest-generation) collection walks every tracked object, holding the
interpreter lock: every thread stops, the event loop too. A server holds a few hundred
thousand of them from start-up on (modules, classes, the app's routes and compiled
statements, SQLAlchemy's caches), none of which will ever be garbage, and each full
collection walked them all again: while the largest interview pages rendered, pauses of
0.4 s, in which no site's request was answered and nothing was sent. `gc.freeze()` moves
everything alive at that moment to a permanent generation the collector no longer walks, so
a full collection covers only what was created since. It is called once, when start-up is
over, by `serve`, `worker` and `demo`. What the process keeps that it makes later is bounded
for the same reason (`answers.validate`'s template variables). The collector's thresholds
stay CPython's: raising them lowered no lag (`bench/gc_pauses.py` measures all three, see
docs/performance.md).
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from typing import Any


def freeze_long_lived() -> None:
    """Collect what start-up left behind, then keep the collector off everything alive now."""
    gc.collect()
    gc.freeze()


async def start_frozen(_ctx: Any) -> Callable[[], Awaitable[None]]:
    """The app component that runs last at start-up: freeze what start-up built."""
    freeze_long_lived()

    async def stop() -> None:
        return None

    return stop
