"""Read answer sets off the event loop, in a small pool of threads.

An answer set large enough to take noticeable time to read (more than `INLINE_BYTES`) is
parsed, checked and fitted in a worker thread, so the event loop keeps answering every other
request meanwhile. Threads, not processes, because:

- the work is bounded: `AnswerLimits` caps the document (5 MiB by default), so the slowest
  answer set costs a bounded, measured time (see `docs/operations.md`), and a thread never
  has to be killed for running too long;
- the parsers hold the interpreter lock while they run in C (expat does not release it, nor
  does `json.loads`), but only for one call at a time: XML is fed to expat in 64 KiB pieces
  (`hotdocs._FEED_BYTES`), and building the answers is Python code, which gives the lock up
  every few milliseconds, so the loop thread gets its turns; the longest single hold is
  `json.loads` of the largest document allowed, a few tens of milliseconds;
- the result is an `AnswerSet` of many small objects: sending it back from a process would
  cost about as much as reading it again.

The pool is bounded (`answer_parse_threads`, 2 by default): a burst of large answer sets
queues for a thread instead of all competing for the interpreter at once, so memory is
bounded by threads × one answer set, and the loop always competes with at most that many.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")

#: Documents up to this size are read inline: a thread hop would cost more than the parse.
INLINE_BYTES = 32 * 1024

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    # One pool per size per process; a process normally has one size (its setting).
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="answer-parse")
            _pools[threads] = pool
        return pool


async def off_loop(size: int, threads: int, work: Callable[..., T], *args: object) -> T:
    """`work(*args)`, in the answer-parsing pool when `size` (bytes of input) is above
    `INLINE_BYTES`, else right here."""
    if size <= INLINE_BYTES:
        return work(*args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(threads), partial(work, *args))
