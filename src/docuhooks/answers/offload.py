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

One site may not take all of that for itself: heavy answer work (reading, overlaying,
measuring and encoding a large answer set) is also held to `answer_parse_threads` operations
per site at a time (`heavy`, and `off_loop(..., site=)`). A tenant's further requests wait in
their own site's queue, in order, before they touch the loop or the pool: eight clients of
one site looping on its largest interview queue behind each other, while another site's
requests, large or small, go on being served. A request that holds its site's slot
(`heavy`) does all its steps under it, so it never waits for a slot twice, nor for one it
holds.

The same threads, under the same slots, do the other CPU work a large template brings, each
bounded by the template limits (`platform.catalog`: 5,000 variables, 1,000 options each):
reading its variable definitions, as uploaded (`platform.catalog.read_definition`) or as
stored (`load_template_variables`), and rendering its interview page
(`ui.rendering.render_sized`). Pool and slots are shared on purpose: the loop competes with
at most `answer_parse_threads` threads whatever the work, and one site's large template
queues in its own line as its large answer sets do. Each step stays inline below
`INLINE_BYTES` (of a definition, or of the page it makes), where it costs a few
milliseconds: about ten times what the hop to a thread and back costs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, TypeVar

import orjson

from docuhooks.answers.model import AnswerSet, VariableDef
from docuhooks.answers.validate import (
    cached_template_variables,
    keep_template_variables,
    read_template_variables,
)

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


class SiteLimiter:
    """At most `size` heavy operations of one site at a time; the others wait, first come
    first served, in that site's own queue. A site's entry exists only while it has
    operations running or waiting, so idle sites cost nothing."""

    def __init__(self) -> None:
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._running: dict[str, int] = {}
        self._waiting: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, site: str, size: int) -> AsyncIterator[None]:
        semaphore = self._slots.get(site)
        if semaphore is None:
            semaphore = self._slots[site] = asyncio.Semaphore(max(1, size))
        self._waiting[site] = self._waiting.get(site, 0) + 1
        acquired = False
        try:
            await semaphore.acquire()
            acquired = True
            self._waiting[site] -= 1
            self._running[site] = self._running.get(site, 0) + 1
            yield
        finally:
            if acquired:
                self._running[site] -= 1
                semaphore.release()
            else:
                self._waiting[site] -= 1
            if not self._running.get(site) and not self._waiting[site]:
                del self._slots[site], self._waiting[site]
                self._running.pop(site, None)

    def running(self, site: str) -> int:
        """How many of `site`'s operations hold a slot now."""
        return self._running.get(site, 0)

    def waiting(self, site: str) -> int:
        """How many of `site`'s operations wait for a slot now."""
        return self._waiting.get(site, 0)

    def sites(self) -> int:
        """How many sites have operations running or waiting (the others cost nothing)."""
        return len(self._slots)


#: The process's limiter: every heavy answer operation of every site goes through it.
LIMITER = SiteLimiter()

#: The site whose slot the current task holds (`heavy`), so its steps do not wait again.
_held: ContextVar[str | None] = ContextVar("answer_site_slot", default=None)


@asynccontextmanager
async def heavy(site: str, threads: int) -> AsyncIterator[None]:
    """Hold one of `site`'s `threads` slots for heavy answer work: every step inside, on the
    loop or in the pool, runs under it (`off_loop(..., site=site)` does not wait again)."""
    if _held.get() == site:
        yield
        return
    async with LIMITER.slot(site, threads):
        token = _held.set(site)
        try:
            yield
        finally:
            _held.reset(token)


#: Bytes `answers_size` counts for each value.
_VALUE_BYTES = 100


def answers_size(answers: AnswerSet) -> int:
    """About how many bytes `answers` take as JSON (`values_size` of their values)."""
    return values_size(answer.value for answer in answers.answers)


def values_size(values: Iterable[object]) -> int:
    """About how many bytes answers of these `values` take: 100 a value, counting every
    repeat iteration (a list or tuple inside), which is generous enough to send a large
    answer set to the parsing threads. Counting stops once they are large, so what this
    costs the loop is bounded. Values, not answers: a few variables repeated deep hold tens
    of thousands of values."""
    enough = INLINE_BYTES // _VALUE_BYTES + 1
    count = 0
    for top in values:
        count += 1
        stack = [top]
        while stack and count <= enough:
            value = stack.pop()
            if isinstance(value, list | tuple):
                count += max(0, len(value) - 1)
                stack.extend(value)
        if count > enough:
            break
    return _VALUE_BYTES * count


#: Bytes `definitions_size` counts for each variable, besides its name and options.
_VARIABLE_BYTES = 60


def definitions_size(raw: Iterable[Mapping[str, Any]] | None) -> int:
    """About how many bytes stored variable definitions take as JSON: 60 a variable, with
    its name and its options. Counting stops once they are large, so what this costs the
    loop is bounded."""
    size = 0
    for item in raw or ():
        size += _VARIABLE_BYTES
        if isinstance(item, Mapping):
            name, options = item.get("name"), item.get("options")
            size += len(name) if isinstance(name, str) else 0
            if isinstance(options, list | tuple):
                size += sum(len(o) + 3 if isinstance(o, str) else 8 for o in options)
        if size > INLINE_BYTES:
            break
    return size


async def load_template_variables(
    template_id: str,
    sha256: str,
    raw: Iterable[Mapping[str, Any]] | str | bytes | None,
    threads: int,
    *,
    site: str,
) -> Mapping[str, VariableDef]:
    """`validate.template_variables`, with large definitions read in the parsing threads,
    under one of `site`'s slots: the largest take tens of milliseconds to read, the first
    time a template is used after a start (or after it left the cache). `raw` is the
    stored definitions, decoded or as their JSON text (then decoded with them, off the loop
    when large: the driver would decode them on it). Raises as it does; a failure is not
    kept."""
    found = cached_template_variables(template_id, sha256)
    if found is not None:
        return found
    if isinstance(raw, str | bytes):
        variables = await off_loop(len(raw), threads, _read_stored_text, raw, site=site)
    else:
        variables = await off_loop(
            definitions_size(raw), threads, read_template_variables, raw, site=site
        )
    return keep_template_variables(template_id, sha256, variables)


def _read_stored_text(text: str | bytes) -> Mapping[str, VariableDef]:
    return read_template_variables(orjson.loads(text))


async def off_loop(
    size: int, threads: int, work: Callable[..., T], *args: object, site: str | None = None
) -> T:
    """`work(*args)`, in the answer-parsing pool when `size` (bytes of input) is above
    `INLINE_BYTES`, else right here. With `site`, large work also holds one of that site's
    slots (`heavy`) while it waits for a thread and runs."""
    if size <= INLINE_BYTES:
        return work(*args)
    if site is None:
        return await _in_pool(threads, work, *args)
    async with heavy(site, threads):
        return await _in_pool(threads, work, *args)


async def _in_pool(threads: int, work: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(threads), partial(work, *args))
