"""The render pool: template inspection and assembly run in worker processes, bounded.

A template is a program its uploader wrote: nested loops, a macro calling itself, or
`{{ Client_Name * Fee }}` with a long name can take minutes, gigabytes, or the process.
Rendered in the server's own process, one such template would stall every site. Here each
job runs in a separate process and is held to three limits (`render_*` settings):

- time: the job is given `render_time_limit_seconds` of wall-clock time; past it, its
  process is killed (SIGKILL) and replaced, and the caller gets `render_time_limit`;
- memory: each worker runs under `RLIMIT_AS` of `render_memory_limit_bytes`; an allocation
  past it fails in the worker (`render_memory_limit`), which is then replaced;
- output: what the template produces and the document saved are held to
  `render_output_limit_bytes` (`render_output_too_large`).

Every other failure of a user's template (Jinja's errors, `OverflowError`, `RecursionError`,
docxtpl's `ValueError`, lxml's errors, a `KeyError` inside the template…) is a 422 giving
the reason; a worker that dies outright (`render_crashed`) is replaced, and only its own
job fails: each worker has a pipe of its own, so killing one touches no other job. (That is
why this is not a `concurrent.futures.ProcessPoolExecutor`: killing one of its workers
breaks the whole executor, `BrokenProcessPool`, and fails every job in flight.)

Workers are forked from a `forkserver` (never from the server process itself, whose threads
and event loop a fork would copy in an unknown state) that has the rendering libraries
loaded once, so replacing a worker costs milliseconds. A worker dies with its parent (Linux
`PR_SET_PDEATHSIG`): a server killed outright leaves no render running behind it. The event
loop only waits: sending a job and reading its answer happen on threads of the pool's own.

The workers are shared by every site, fairly (`FairSlots`): one site holds at most
`render_workers_per_site` workers at once (by default all but one, so another site always
finds one free or about to be), and the jobs waiting are started round-robin across sites,
not first come first served. A site queueing looping templates therefore waits behind its
own jobs; another site's job waits at most for one worker to free.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import structlog

from docuhooks.answers.model import AnswerSet, VariableDef
from docuhooks.errors import FieldError, LimitExceeded, Unavailable, ValidationFailed
from docuhooks.platform.renderjobs import (
    Outcome,
    RenderLimits,
    assemble_job,
    inspect_job,
    serve,
    verify_docx_job,
)
from docuhooks.platform.templates import TemplateInfo
from docuhooks.settings import Settings

if TYPE_CHECKING:
    from docuhooks.platform.interfaces import PlatformContext

log = structlog.get_logger(__name__)

#: The modules the forkserver loads once, so that each worker forked from it starts warm.
PRELOAD = ["docuhooks.platform.renderjobs"]


# --- the pool: the server's side ----------------------------------------------------------


class _Worker:
    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.killed = False
        #: The exchange in flight on a pool thread, if any: the pipe is closed only after it.
        self.pending: Future[Outcome] | None = None

    def exchange(self, request: tuple[Callable[..., Any], tuple[Any, ...]]) -> Outcome:
        """Send one job and wait for its outcome (on a pool thread). A killed worker ends
        the wait with EOFError."""
        self.conn.send(request)
        try:
            outcome: Outcome = self.conn.recv()
        except EOFError:
            if not self.killed:  # it died by itself: wait, so that its exit code is known
                self.process.join(5)
            raise
        return outcome

    def kill(self) -> None:
        """SIGKILL the worker; a thread waiting on its pipe then sees EOF."""
        self.killed = True
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def reap(self) -> None:
        """Wait for the killed (or finished) process and close its pipe (on a pool thread)."""
        with contextlib.suppress(OSError, ValueError, AssertionError):
            self.process.join(5)
        self.conn.close()


class FairSlots:
    """`size` slots shared by sites: a site holds at most `per_site` at once, and waiting
    sites are served round-robin (each site's own jobs in the order they came).

    Used from the event loop only (no lock): `acquire` and `release` never await while they
    change the counts."""

    def __init__(self, size: int, per_site: int) -> None:
        self.size = size
        self.per_site = per_site
        self._free = size
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        #: Sites with jobs waiting, in the order they are served next.
        self._turns: deque[str] = deque()

    def running(self, site_id: str) -> int:
        return self._running.get(site_id, 0)

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._waiting.values())

    async def acquire(self, site_id: str) -> None:
        if self._free > 0 and self.running(site_id) < self.per_site:
            # Every waiter is at its site's cap (else `_dispatch` would have started it).
            self._take(site_id)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(site_id, deque())
        queue.append(waiter)
        if site_id not in self._turns:
            self._turns.append(site_id)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release(site_id)  # granted, then cancelled before it could start
            else:
                self._forget(site_id, waiter)
            raise

    def release(self, site_id: str) -> None:
        self._free += 1
        left = self._running[site_id] - 1
        if left:
            self._running[site_id] = left
        else:
            del self._running[site_id]
        self._dispatch()

    def _take(self, site_id: str) -> None:
        self._free -= 1
        self._running[site_id] = self.running(site_id) + 1

    def _dispatch(self) -> None:
        """Start waiters while slots are free: the first site in turn under its cap goes,
        then to the back of the turn."""
        while self._free > 0:
            site_id = next((s for s in self._turns if self.running(s) < self.per_site), None)
            if site_id is None:
                return
            self._turns.remove(site_id)
            queue = self._waiting[site_id]
            waiter = queue.popleft()
            if queue:
                self._turns.append(site_id)
            else:
                del self._waiting[site_id]
            self._take(site_id)
            waiter.set_result(None)

    def _forget(self, site_id: str, waiter: asyncio.Future[None]) -> None:
        queue = self._waiting.get(site_id)
        if queue is None or waiter not in queue:
            return
        queue.remove(waiter)
        if not queue:
            del self._waiting[site_id]
            self._turns.remove(site_id)


class RenderPool:
    """`size` worker processes, started on demand, each running one job at a time, shared
    fairly by sites (`FairSlots`, at most `per_site` jobs of one site at once; 0: all but
    one worker, at least one)."""

    #: The sites of the last jobs started, oldest first (for diagnostics and tests).
    STARTED_KEPT = 256

    def __init__(self, size: int, limits: RenderLimits, per_site: int = 0) -> None:
        if size < 1:
            raise ValueError("render_workers must be at least 1")
        if per_site < 0:
            raise ValueError("render_workers_per_site must be 0 (automatic) or more")
        self.size = size
        self.limits = limits
        self.per_site = min(size, per_site) if per_site else max(1, size - 1)
        self._context = multiprocessing.get_context("forkserver")
        self._slots = FairSlots(size, self.per_site)
        #: (site id, job name) of each job as it starts, the newest last.
        self.started: deque[tuple[str, str]] = deque(maxlen=self.STARTED_KEPT)
        # Two threads per worker: one waiting on its pipe, one starting or reaping a process.
        self._threads = ThreadPoolExecutor(max_workers=2 * size, thread_name_prefix="render")
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def busy(self) -> int:
        """How many jobs are running now."""
        return len(self._busy)

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderPool:
        return cls(
            settings.render_workers,
            RenderLimits.from_settings(settings),
            settings.render_workers_per_site,
        )

    async def start(self) -> None:
        """Start every worker now rather than on the first render (the first start also
        starts the forkserver and loads the rendering libraries into it)."""
        loop = asyncio.get_running_loop()
        started = await asyncio.gather(
            *(loop.run_in_executor(self._threads, self._start_worker) for _ in range(self.size))
        )
        with self._lock:
            self._idle.extend(started)

    async def inspect(self, content: bytes, *, site_id: str, field: str = "file") -> TemplateInfo:
        info: TemplateInfo = await self.run(inspect_job, content, site_id=site_id, field=field)
        return info

    async def assemble(
        self,
        content: bytes,
        answers: AnswerSet,
        variables: Sequence[VariableDef],
        *,
        site_id: str,
        field: str = "answers",
    ) -> bytes:
        document: bytes = await self.run(
            assemble_job, content, answers, tuple(variables), site_id=site_id, field=field
        )
        return document

    async def verify_docx(self, content: bytes, *, site_id: str, field: str = "content") -> None:
        await self.run(verify_docx_job, content, site_id=site_id, field=field)

    async def run(
        self, func: Callable[..., Any], *args: Any, site_id: str, field: str = "template"
    ) -> Any:
        """Run `func(limits, *args)` in a worker (`func` must be importable by name) for
        `site_id`, when its turn comes, and return its result; raise `LimitExceeded` or
        `ValidationFailed` (with `field` in the details) for what the job was refused for,
        `Unavailable` when the pool is closing."""
        self._check_open()
        await self._slots.acquire(site_id)
        try:
            worker = await self._take()
            job = getattr(func, "__name__", None) or type(func).__name__
            self.started.append((site_id, job))
            log.debug("render.job_started", site_id=site_id, job=job)
            outcome = await self._exchange(worker, (func, args))
        finally:
            self._slots.release(site_id)
        if outcome[0] == "ok":
            return outcome[1]
        kind, code, status, message = outcome
        details = [FieldError(field, message)]
        if kind == "limit":
            raise LimitExceeded(code, message, status=status, details=details)
        raise ValidationFailed.of(details)

    async def _take(self) -> _Worker:
        self._check_open()
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        if worker is None or not worker.process.is_alive():
            if worker is not None:
                self._retire(worker)
            loop = asyncio.get_running_loop()
            worker = await loop.run_in_executor(self._threads, self._start_worker)
        with self._lock:
            self._busy.add(worker)
        if self._closed:  # closed while the worker started
            self._retire(worker)
            self._check_open()
        return worker

    async def _exchange(
        self, worker: _Worker, request: tuple[Callable[..., Any], tuple[Any, ...]]
    ) -> Outcome:
        worker.pending = self._threads.submit(worker.exchange, request)
        try:
            async with asyncio.timeout(self.limits.time_seconds):
                outcome = await asyncio.wrap_future(worker.pending)
        except TimeoutError:
            self._retire(worker)
            log.warning("render.time_limit", pid=worker.process.pid)
            return (
                "limit",
                "render_time_limit",
                422,
                f"the template took more than {self.limits.time_seconds:g} seconds to render "
                "and was stopped; that is the limit (render_time_limit_seconds)",
            )
        except (EOFError, OSError):
            code = worker.process.exitcode
            self._retire(worker)
            self._check_open()
            log.warning("render.worker_died", pid=worker.process.pid, exitcode=code)
            return (
                "limit",
                "render_crashed",
                422,
                f"the process rendering the template ended unexpectedly (exit code {code}); "
                "the template cannot be rendered",
            )
        except BaseException:  # cancelled: nobody wants this job any more
            self._retire(worker)
            raise
        with self._lock:
            self._busy.discard(worker)
            if outcome[0] == "ok" and not self._closed:
                self._idle.append(worker)
                return outcome
        # A worker that hit a limit may hold memory it cannot give back: start afresh.
        self._retire(worker)
        return outcome

    def _start_worker(self) -> _Worker:
        """Fork a worker from the forkserver (blocking: run on a pool thread)."""
        if self._closed:
            raise Unavailable("the server is shutting down; try again")
        with contextlib.suppress(ValueError):  # already set, or the forkserver is running
            self._context.set_forkserver_preload(PRELOAD)
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=serve, args=(child, self.limits), name="docuhooks-render", daemon=True
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            with contextlib.suppress(ValueError):
                self._idle.remove(worker)
        worker.kill()
        pending = worker.pending
        if pending is not None and not pending.done():
            # The exchange thread sees EOF now that the worker is dead; reap after it.
            pending.add_done_callback(lambda _: worker.reap())
            return
        with contextlib.suppress(RuntimeError):  # the thread pool is shut down: reap inline
            self._threads.submit(worker.reap)
            return
        worker.reap()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the server is shutting down; try again")

    def abort(self) -> None:
        """Kill every worker now, busy or not (safe from a signal handler: it only sends
        signals). Jobs in flight answer 503; `close` still has to run."""
        self._closed = True
        for worker in [*self._busy, *self._idle]:
            worker.kill()

    async def close(self) -> None:
        """Stop for good: kill every worker and wait for the threads to let go."""
        self.abort()
        with self._lock:
            # A busy worker's pipe is closed by its own job once that sees the worker die.
            workers = list(self._idle)
            self._idle.clear()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._shutdown, workers)

    def _shutdown(self, workers: list[_Worker]) -> None:
        for worker in workers:
            worker.reap()
        self._threads.shutdown(wait=True)


async def start_render_pool(ctx: PlatformContext) -> Callable[[], Awaitable[None]]:
    """The app component: start the workers with the server, kill them when it stops."""
    pool = ctx.render_pool
    await pool.start()

    async def stop() -> None:
        await pool.close()

    return stop


def worker_pids(pool: RenderPool) -> list[int]:
    """The process ids of the pool's workers (for tests and diagnostics)."""
    with pool._lock:
        return [w.process.pid for w in [*pool._idle, *pool._busy] if w.process.pid is not None]
