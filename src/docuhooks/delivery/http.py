"""A small HTTP/1.1 client for webhook calls: pooled keep-alive connections, one request each.

Webhook calls are all alike: one request with a complete body, one response read up to a
cap, no redirects, no cookies. A general client (aiohttp) pays for everything
else on every call: `bench/transport.py` measured more than twice the CPU per request for
aiohttp's client as for this one behind the transport (see docs/performance.md), and a
webhook sender pays that cost times its rate. So the exchange itself is this module: an
:class:`asyncio.Protocol` per connection, `httptools` (llhttp, the parser uvicorn uses)
reading the response, and a pool that hands connections back and forth.

What it does not do is just as deliberate: the caller (:mod:`docuhooks.delivery.transport`)
resolves names, judges addresses and opens the socket (directly or through a proxy, see
:mod:`docuhooks.delivery.connect`); the host name is only used for ``Host`` and for TLS
(SNI and the certificate check). Nothing here raises for what a server does except
:class:`HttpError` subclasses and TimeoutError at a caller's deadline (and
:class:`ConnectionStateError` for a caller's mistake), so the transport can classify every
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, cast

import httptools

if TYPE_CHECKING:
    from docuhooks.delivery.proxy import Proxy

__all__ = [
    "Connection",
    "ConnectionPool",
    "ConnectionStateError",
    "Disconnected",
    "HttpError",
    "InvalidResponse",
    "Origin",
    "Response",
    "encode_request",
]

#: A header name is an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A header value may hold neither a line break nor NUL: either would end the header early.
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\0]")
#: Set by the client itself, so the caller's copies (in any case) are dropped.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


#: A response's header fields at most, and their names and values together at most: a
#: webhook reply needs a handful (browsers' own limits are about this size).
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
#: What a response may send before its headers end (status line and line breaks
#: included): a line that never ends, which the parser keeps whole (copying it at every
#: read) and never hands over as a header, is cut here and not at the call's timeout.
MAX_HEAD_BYTES = MAX_HEADER_BYTES + 8 * 1024
#: Interim responses (100 Continue, 103 Early Hints) one exchange reads before its own.
MAX_INTERIM_RESPONSES = 10


class HttpError(Exception):
    """The server's side of the exchange went wrong (the transport's INVALID_RESPONSE)."""


class InvalidResponse(HttpError):
    """Bytes arrived that are not an HTTP/1.x response."""


class Disconnected(HttpError):
    """The connection ended before a complete response. ``before_response`` when not one
    byte of a response had arrived: on a reused connection, the server had closed it idle."""

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class ConnectionStateError(RuntimeError):
    """An exchange was asked of a connection not in a state to carry one (not connected, or
    busy with another): a bug in the caller, reported rather than asserted, so that it holds
    under ``python -O`` too."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a pooled connection goes: connections are shared only within one origin, so a
    connection through a proxy never carries a call meant to go direct, or the reverse."""

    scheme: str
    host: str
    port: int
    verify_tls: bool
    #: The forward proxy the connection goes through; None for a direct one.
    proxy: Proxy | None = None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    #: Repeated headers joined with ", ", names as the server spelled them.
    headers: dict[str, str]
    body: bytes
    #: The body was longer than the cap: ``body`` holds the first ``max_body`` bytes.
    truncated: bool
    remote_ip: str


# --- the request ----------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _checked_name(name: str) -> str:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    return name


def encode_request(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request's bytes: request line, headers (``Host`` and ``Content-Length`` set
    here, ``Accept-Encoding: identity`` unless the caller asks otherwise), body. Raises
    ValueError for a header that could split the request."""
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    coding_asked = False
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _OWN_HEADERS:
            continue
        coding_asked = coding_asked or lowered == "accept-encoding"
        if _FORBIDDEN_IN_VALUE.search(value) is not None:
            raise ValueError(f"the value of header {name!r} holds a line break or NUL")
        lines.append(f"{_checked_name(name)}: {value}\r\n")
    if not coding_asked:
        lines.append("Accept-Encoding: identity\r\n")
    if body is not None or method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    data = "".join(lines).encode("latin-1")
    return data + body if body else data


# --- one connection ---------------------------------------------------------------------------

#: A timer may fire this much before its time (the loop's clock resolution); it then counts.
_TIMER_SLACK = 0.001


class Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, origin: Origin, remote_ip: str, on_lost: Callable[[Connection], None]):
        self.origin = origin
        self.remote_ip = remote_ip
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        #: Whether the last response allows another request on this connection.
        self.keep_alive = False
        self._on_lost = on_lost
        #: Made afresh by each exchange, the only time bytes are parsed.
        self._parser: httptools.HttpResponseParser
        self._waiter: asyncio.Future[Response] | None = None
        self._max_body = 0
        #: The exchange in flight's deadline, and the connection's one timer (see `_arm`).
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._interim = 0
        self._reset()

    def _reset(self) -> None:
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._head_bytes = 0
        #: A chunk's header has been read and its data not finished (`on_chunk_*`), and how
        #: much of its data came: the last chunk has none, and what follows it is trailers.
        self._chunk_open = False
        self._chunk_body = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._received = False
        self._headers_done = False
        self._decoder: _Decoder | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self._waiter is None or self._waiter.done():
            # Bytes while no request is out, or after its response: a server talking out of
            # turn. Nothing it says on this connection can be trusted to frame a response.
            self.close()
            return
        # Trailers (after the last chunk) are headers too: a line of them that never ends
        # is kept whole by the parser just as a header's is.
        in_trailers = self._chunk_open and self._chunk_body == 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(InvalidResponse(f"not an HTTP response: {exc}"))
            self.close()
            return
        if not self._headers_done or (in_trailers and self._chunk_open and not self._chunk_body):
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(
                    InvalidResponse(
                        f"the response's headers exceed {MAX_HEADER_BYTES // 1024} KiB "
                        "(a header line that does not end)"
                    )
                )
                self.close()

    def eof_received(self) -> bool | None:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._headers_done and self._until_close():
                # No length and not chunked: the body is everything until the close.
                self._complete(keep_alive=False)
            else:
                detail = f": {exc}" if exc else ""
                self._fail(
                    Disconnected(
                        "server closed the connection without a response" + detail
                        if not self._received
                        else "server closed the connection mid-response" + detail,
                        before_response=not self._received,
                    )
                )
        self._on_lost(self)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            return  # refused already: the parser is only finishing the buffer it was fed
        self._header_bytes += len(name) + len(value)
        if len(self._headers) >= MAX_HEADERS or self._header_bytes > MAX_HEADER_BYTES:
            # A receiver that sends megabytes of headers would hold this process's memory
            # and, joined into a dict, its event loop.
            self._fail(
                InvalidResponse(
                    f"the response's headers exceed {MAX_HEADERS} fields or "
                    f"{MAX_HEADER_BYTES // 1024} KiB"
                )
            )
            self.close()
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        for name, value in self._headers:
            if name.lower() == b"content-encoding":
                self._decoder = _Decoder.for_coding(value.decode("latin-1"))

    def on_chunk_header(self) -> None:
        self._chunk_open, self._chunk_body = True, 0

    def on_chunk_complete(self) -> None:
        self._chunk_open = False

    def on_body(self, body: bytes) -> None:
        self._chunk_body += len(body)
        room = self._max_body + 1 - self._size  # one byte past the cap tells it was cut
        if self._decoder is not None:
            # The cap is on what the body expands to (a small gzip can hold gigabytes).
            trailing = self._decoder.trailing
            try:
                body = self._decoder.decompress(body, room)
            except zlib.error as exc:
                self._fail(InvalidResponse(f"invalid {self._decoder.coding} body: {exc}"))
                self.close()
                return
            # What follows the compressed stream is discarded, but counts against the cap
            # as the body would: past it the response is cut and the connection closed.
            self._size += self._decoder.trailing - trailing
        if room > 0:
            self._chunks.append(body[:room] if len(body) > room else body)
        self._size += len(body)
        if self._size > self._max_body:
            # The rest is not wanted; it would have to be read to reuse the connection.
            self._complete(keep_alive=False)
            self.close()

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim response (100 Continue, 103 Early Hints): the real one follows.
            self._interim += 1
            if self._interim > MAX_INTERIM_RESPONSES:
                self._fail(InvalidResponse(f"more than {MAX_INTERIM_RESPONSES} interim responses"))
                self.close()
                return
            self._reset()
            self._received = True
            return
        if status == 101:
            # Switching protocols, unasked: what follows is not HTTP. Reported, not reused.
            self._complete(keep_alive=False)
            self.close()
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # the exchange

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _complete(self, *, keep_alive: bool) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        self.keep_alive = keep_alive
        truncated = self._size > self._max_body
        body = b"".join(self._chunks)[: self._max_body]
        # Not kept: a connection parked idle would otherwise hold a copy of the body (a
        # post-processing reply may be 160 MiB) until its next exchange or its close.
        self._chunks = []
        headers: dict[str, str] = {}
        for raw_name, raw_value in self._headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if "\x00" in value:
                # NUL is no character a database's text column takes (PostgreSQL refuses it).
                value = value.replace("\x00", "\ufffd")
            # A repeated field's values joined in order, as one field with a list would be.
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        waiter.set_result(
            Response(
                status=self._parser.get_status_code(),
                headers=headers,
                body=body,
                truncated=truncated,
                remote_ip=self.remote_ip,
            )
        )

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Time the exchange out at `deadline`, keeping one timer per connection rather than
        one per exchange (arming and cancelling a loop timer for every request was a few per
        cent of the worker's time). A timer set for an earlier exchange stays: when it fires
        it finds the exchange done, or a later deadline to wait for."""
        self._deadline = deadline
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._on_timer)
        self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        if self._waiter is None or self._waiter.done():
            return  # no exchange in flight: the next one arms a timer again
        loop = asyncio.get_running_loop()
        if loop.time() + _TIMER_SLACK < self._deadline:
            self._arm(loop, self._deadline)  # this timer was an earlier exchange's
            return
        self._fail(TimeoutError())
        self.close()  # the response may still be coming: the connection cannot be reused

    async def exchange(self, data: bytes, max_body: int, deadline: float) -> Response:
        """Send one request; the response, its body cut at ``max_body`` bytes. Raises
        TimeoutError at ``deadline`` (the loop's clock)."""
        if self.transport is None:
            raise ConnectionStateError("exchange on a connection that was never made")
        if self._waiter is not None:
            raise ConnectionStateError("exchange on a connection already carrying one")
        if self.closed or self.transport.is_closing():
            # Closed by the server between its last exchange and this one.
            raise Disconnected("server had closed the connection", before_response=True)
        self._reset()
        self._interim = 0
        # A parser per exchange: whatever the last response left unparsed is not read as
        # the start of this one.
        self._parser = httptools.HttpResponseParser(self)
        self._max_body = max_body
        self.keep_alive = False
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        self._waiter = waiter
        self._arm(loop, deadline)
        try:
            self.transport.write(data)
            return await waiter
        finally:
            self._waiter = None

    @property
    def reusable(self) -> bool:
        return not self.closed and self.keep_alive and not self.transport_is_closing()

    def transport_is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        """Close now, dropping what is not sent yet: `transport.close()` would wait for it,
        so a receiver that never reads a request would keep the connection, and its place
        in the pool, however long after its call had ended. Nothing is ever closed that
        still has something worth sending (a response is complete only after the request
        was sent)."""
        if self.transport is not None:
            self.transport.abort()


class _Decoder:
    """Undoes a ``gzip`` or ``deflate`` content coding as the body arrives. Servers may use
    one unasked; the request says ``Accept-Encoding: identity``, but robustly is cheap."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        #: Bytes that came after the end of the compressed stream (see `decompress`).
        self.trailing = 0
        self._inflate: zlib._Decompress | None = (
            zlib.decompressobj(16 + zlib.MAX_WBITS) if coding != "deflate" else None
        )

    @classmethod
    def for_coding(cls, value: str) -> _Decoder | None:
        coding = value.strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            return cls(coding)
        return None  # identity, or a coding kept as sent (the caller sees the header)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        """Up to ``max_length`` bytes of what ``data`` expands to. Bytes after the end of the
        compressed stream are not decoded and not kept, only counted in ``trailing``: zlib
        would append them all to its ``unused_data`` (copying it at every call), so a
        receiver sending an endless body after a two-byte gzip body would hold the process's
        memory and event loop, and none of it would count against the cap."""
        if self._inflate is not None and self._inflate.eof:
            self.trailing += len(data)
            return b""
        if self._inflate is None:
            # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
            wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        if max_length <= 0:
            return b""
        out = self._inflate.decompress(data, max_length)
        if self._inflate.eof:
            self.trailing += len(self._inflate.unused_data)
        return out


# --- the pool -------------------------------------------------------------------------------


class ConnectionPool:
    """Keep-alive connections per :class:`Origin`, at most ``limit`` open in all and
    ``limit_per_host`` to one origin; a caller over a limit waits for a connection.

    Idle connections are reused newest first, so that the ones not needed age out, and are
    closed after ``keepalive_timeout`` seconds idle (servers close theirs too: uvicorn after
    5 s; one that closes first is noticed when its close arrives, or, in a race with a new
    request, by the caller seeing :class:`Disconnected` ``before_response``).
    """

    def __init__(self, *, limit: int, limit_per_host: int, keepalive_timeout: float) -> None:
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.keepalive_timeout = keepalive_timeout
        self._idle: dict[Origin, list[Connection]] = {}
        self._open: dict[Origin, int] = {}
        self._total = 0
        self._waiters: dict[Origin, deque[asyncio.Future[Connection | None]]] = {}
        self._all: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._total

    def idle(self, origin: Origin) -> Connection | None:
        """An idle connection to ``origin`` still fit to use, or None."""
        stack = self._idle.get(origin)
        while stack:
            connection = stack.pop()
            if connection.closed or connection.transport_is_closing():
                continue  # its connection_lost has already let go of its slot
            return connection
        return None

    async def acquire(
        self, origin: Origin, connect: Callable[[], Awaitable[Connection]], deadline: float
    ) -> tuple[Connection, bool]:
        """A connection to ``origin`` and whether it was reused; opens one with ``connect``
        (which builds it with :meth:`connection`) when none is idle and the limits allow.
        Raises TimeoutError at ``deadline`` (the loop's clock)."""
        if self._closed:
            raise RuntimeError("connection pool is closed")
        loop = asyncio.get_running_loop()
        while True:
            connection = self.idle(origin)
            if connection is not None:
                return connection, True
            if self._open.get(origin, 0) < self.limit_per_host and self._total < self.limit:
                self._open[origin] = self._open.get(origin, 0) + 1
                self._total += 1
                try:
                    async with asyncio.timeout_at(deadline):
                        connection = await connect()
                except BaseException:
                    self._release_slot(origin)
                    raise
                self._all.add(connection)
                return connection, False
            if self._total >= self.limit:
                # At the overall limit with connections idle to other origins: close the
                # longest idle one. Its slot comes free when the close completes, and then
                # wakes a waiter (this one, unless one waits on the closed one's origin).
                self._close_an_idle_connection()
            # Callers outnumbering connections wait here all the time under load (the
            # worker's senders, say): a timer on the turn, not a timeout context each.
            waiter: asyncio.Future[Connection | None] = loop.create_future()
            queue = self._waiters.setdefault(origin, deque())
            queue.append(waiter)
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # Handed a connection (or a turn) as the cancel came: pass it on.
                    given = waiter.result()
                    if given is not None:
                        self.release(given)
                    else:
                        self._wake_any(origin)
                else:
                    with contextlib.suppress(ValueError):
                        queue.remove(waiter)
                raise
            except TimeoutError:
                with contextlib.suppress(ValueError):
                    queue.remove(waiter)
                raise
            finally:
                timer.cancel()
            if handed is not None and not (handed.closed or handed.transport_is_closing()):
                return handed, True
            # None: a slot came free (or the connection handed over closed meanwhile, which
            # frees its slot too); go round.

    def connection(self, origin: Origin, remote_ip: str) -> Connection:
        return Connection(origin, remote_ip, self._lost)

    def release(self, connection: Connection) -> None:
        """Hand back a connection after its exchange: kept if reusable, else closed."""
        if not connection.reusable or self._closed:
            connection.close()  # its connection_lost gives back the slot
            return
        # Straight to the longest waiting caller, if any: were it parked as idle, the
        # releasing task's next request would take it first and the woken waiter would
        # queue again, a wasted wake-up per request while callers outnumber connections.
        queue = self._waiters.get(connection.origin)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        loop = asyncio.get_running_loop()
        connection.idle_since = loop.time()
        self._idle.setdefault(connection.origin, []).append(connection)
        if self._sweep is None:
            self._sweep = loop.call_later(self.keepalive_timeout / 2, self._sweep_idle)

    def discard(self, connection: Connection) -> None:
        """Close a connection whose exchange did not finish (timeout, cancellation)."""
        connection.closed = True
        connection.close()

    def _lost(self, connection: Connection) -> None:
        if connection in self._all:
            self._all.discard(connection)
            self._release_slot(connection.origin)

    def _release_slot(self, origin: Origin) -> None:
        left = self._open.get(origin, 1) - 1
        if left:
            self._open[origin] = left
        else:
            self._open.pop(origin, None)
        self._total -= 1
        self._wake_any(origin)

    def _wake_any(self, origin: Origin) -> None:
        """A slot is free: the next waiter for ``origin`` opens a connection in it, or,
        when none waits there, any origin's waiter may (the overall limit freed a place)."""
        if not self._wake(origin):
            for other in list(self._waiters):
                if self._wake(other):
                    break

    def _wake(self, origin: Origin) -> bool:
        queue = self._waiters.get(origin)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        self._waiters.pop(origin, None)
        return False

    def _close_an_idle_connection(self) -> None:
        for stack in self._idle.values():
            while stack:
                connection = stack.pop(0)  # the longest idle
                if not connection.closed:
                    connection.close()
                    return

    def _sweep_idle(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        oldest_allowed = loop.time() - self.keepalive_timeout
        remaining = False
        for origin, stack in list(self._idle.items()):
            fresh = [c for c in stack if not c.closed]
            for connection in fresh:
                if connection.idle_since <= oldest_allowed:
                    connection.close()
            stack[:] = [c for c in fresh if c.idle_since > oldest_allowed]
            if stack:
                remaining = True
            else:
                del self._idle[origin]
        if remaining and not self._closed:
            self._sweep = loop.call_later(self.keepalive_timeout / 2, self._sweep_idle)

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for connection in list(self._all):
            connection.close()
        self._idle.clear()
        for queue in self._waiters.values():
            for waiter in queue:
                if not waiter.done():
                    waiter.set_exception(RuntimeError("connection pool is closed"))
        self._waiters.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run


def _expire(waiter: asyncio.Future[Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def tls_context(verify: bool) -> ssl.SSLContext:
    """The client TLS context: the system's trust store, or none at all for a webhook with
    ``acceptUntrustedSsl``."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
