"""Real sockets for the isolation tests: a blackhole that accepts and never answers, and a
threaded HTTP receiver that logs every request in the order it came and counts the requests
it holds at once. Both keep their own records, so a test reads what the network saw rather
than what the worker says it did; times are `time.monotonic()` in the test's own process."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.delivery.delivery_support import version_event

from docuhooks.context import AppContext
from docuhooks.delivery import outbox


class Blackhole:
    """A listening socket that accepts every connection, reads what comes, and never answers.

    It records when each connection was accepted, how many are open at once (at most), and
    how many the client closed: a client closes a connection to a blackhole only when its
    call timed out or was abandoned."""

    def __init__(self) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(1024)
        self._server.setblocking(False)
        self.port: int = self._server.getsockname()[1]
        self.accepted: list[float] = []
        self.open = 0
        self.max_open = 0
        self.closed = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blackhole", daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._server, selectors.EVENT_READ, None)
        while not self._stopping.is_set():
            for key, _ in selector.select(0.05):
                if key.data is None:
                    self._accept(selector)
                else:
                    self._read(selector, key.fileobj)  # type: ignore[arg-type]
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()

    def _accept(self, selector: selectors.BaseSelector) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ, "client")
            with self._lock:
                self.accepted.append(time.monotonic())
                self.open += 1
                self.max_open = max(self.max_open, self.open)

    def _read(self, selector: selectors.BaseSelector, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # a request: swallowed, never answered
        selector.unregister(conn)
        conn.close()
        with self._lock:
            self.open -= 1
            self.closed += 1

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._server.close()


@dataclass(frozen=True, slots=True)
class Arrival:
    path: str
    event_id: str
    delivery_id: str
    at: float


class Receiver:
    """A threaded HTTP receiver on 127.0.0.1.

    Each request is logged on arrival (`arrivals`, in arrival order) and on answer
    (`answered`: event id and the status it got). It waits `delay` seconds (or
    `delays[path]`) and answers `status`; a test may change `status` while it runs. It
    counts the requests it holds at once, and stops counting one *before* it answers, so a
    client that sends its next call only after seeing an answer can never be counted twice.
    `on_arrival` is called (in the request's thread) with each arrival and the count so far.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        delays: dict[str, float] | None = None,
        status: int = 200,
        on_arrival: Callable[[Arrival, int], None] | None = None,
    ) -> None:
        self.delay = delay
        self.delays = delays or {}
        self.status = status
        self.on_arrival = on_arrival
        self.arrivals: list[Arrival] = []
        self.answered: list[tuple[str, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        request.rfile.read(length)
        path = request.path.split("?", 1)[0]
        arrival = Arrival(
            path,
            request.headers.get("X-Docuhooks-Event-Id", ""),
            request.headers.get("X-Docuhooks-Delivery-Id", ""),
            time.monotonic(),
        )
        with self._lock:
            self.arrivals.append(arrival)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            count = len(self.arrivals)
            if self.on_arrival is not None:
                self.on_arrival(arrival, count)
        time.sleep(self.delays.get(path, self.delay))
        with self._lock:
            self.in_flight -= 1
            status = self.status
            self.answered.append((arrival.event_id, status))
        request.send_response(status)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def arrived(self, path: str | None = None) -> list[Arrival]:
        with self._lock:
            return [a for a in self.arrivals if path is None or a.path == path]

    def succeeded(self) -> list[str]:
        """Event ids answered 2xx, once per answer."""
        with self._lock:
            return [event_id for event_id, status in self.answered if 200 <= status < 300]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def pile_up(
    ctx: AppContext,
    site_id: str,
    webhook_id: str,
    count: int,
    *,
    batch: int = 500,
    now: datetime | None = None,
) -> list[str]:
    """Queue `count` events for one webhook through the outbox, `batch` per transaction, as a
    backlog that built up before the test looks; returns the event ids."""
    queued: list[str] = []
    while len(queued) < count:
        events = [version_event(site_id) for _ in range(min(batch, count - len(queued)))]
        async with ctx.db.transaction() as conn:
            for event in events:
                await outbox.enqueue(
                    conn,
                    event,
                    work_group_id=None,
                    template_id=None,
                    webhook_ids=[webhook_id],
                    now=now or ctx.now(),
                )
        queued += [event.event_id for event in events]
    ctx.events_committed()
    return queued


async def eventually(check: Callable[[], Any], seconds: float, what: str) -> None:
    """Wait until `check()` is true; fail naming `what` after `seconds` (a bound on how long
    a broken engine may keep the test waiting, never the property under test)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.05)
