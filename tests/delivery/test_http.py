"""The HTTP/1.1 client under the transport, against servers that send exactly the bytes a
test chooses: keep-alive and its races, body framings, interim responses, content codings,
the pool's limits and idle timeout, and the same exchange under uvloop. The behavioural
tests run on the aiohttp reference transport too (see test_transport.py)."""

from __future__ import annotations

import asyncio
import gc
import gzip
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import uvloop
from tests.delivery import transport_support
from tests.delivery.transport_support import MakeTransport, ours_only

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.address_policy import AddressPolicy
from docuhooks.delivery.http import encode_request
from docuhooks.delivery.transport import ErrorClass, HttpTransport, Transport

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# The exchanges run on our transport and on the aiohttp reference; tests of our pool's
# internals, and of rules only ours has, say so with `ours_only`.
transport_kind = transport_support.transport_kind
make_transport = transport_support.make_transport

#: Reads one request (head and a Content-Length body) from a connection; None at EOF.
ReadRequest = Callable[[], Awaitable[bytes | None]]


def open_connections(transport: Transport) -> int:
    """Our pool's count of open connections (the tests that read it run on ours only)."""
    assert isinstance(transport, HttpTransport)
    return transport._pool.open_connections


@dataclass
class Server:
    port: int
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?x=1"


Script = Callable[[Server, ReadRequest, asyncio.StreamWriter, int], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[Server]]]:
    """Starts a server that runs `script(server, read, writer, nth_connection)` per
    connection; the script writes raw bytes."""
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> Server:
        state = Server(port=0)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            state.open_now += 1
            state.most_open = max(state.most_open, state.open_now)

            async def read() -> bytes | None:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return None
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                state.requests.append(request)
                return request

            try:
                await script(state, read, writer, state.connections)
            finally:
                state.open_now -= 1
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()


def post(url: str, body: bytes = b"payload") -> OutboundRequest:
    return OutboundRequest(method="POST", url=url, headers={"X-Test": "1"}, body=body)


def answering(raw: bytes = OK, *, delay: float = 0.0) -> Script:
    """A script answering every request on a connection with `raw`, after `delay` seconds."""

    async def script(server: Server, read: ReadRequest, writer: asyncio.StreamWriter, _: int):
        while await read() is not None:
            if delay:
                await asyncio.sleep(delay)
            writer.write(raw)
            await writer.drain()

    return script


def answering_once(raw: bytes, *, hold_open: bool = True) -> Script:
    """A script answering a connection's first request with `raw`; then, with `hold_open`,
    it reads the next one without answering it, and otherwise closes the connection."""

    async def script(server: Server, read: ReadRequest, writer: asyncio.StreamWriter, _: int):
        await read()
        writer.write(raw)
        await writer.drain()
        if hold_open:
            await read()

    return script


answer_all = answering()


# --- the request's bytes ------------------------------------------------------------------


def test_request_bytes_set_host_and_length_and_drop_the_callers_copies() -> None:
    data = encode_request(
        "POST",
        "/in?a=1",
        "hooks.example:8443",
        {"host": "evil.example", "Content-Length": "999", "X-Sig": "abc"},
        b"body",
    )
    assert data == (
        b"POST /in?a=1 HTTP/1.1\r\nHost: hooks.example:8443\r\nX-Sig: abc\r\n"
        b"Accept-Encoding: identity\r\nContent-Length: 4\r\n\r\nbody"
    )


def test_a_get_without_body_has_no_length() -> None:
    assert encode_request("GET", "/", "h", {"Accept-Encoding": "gzip"}, None) == (
        b"GET / HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"X-A": "one\r\nX-Injected: yes"},
        {"X-A": "one\nsplit"},
        {"X-A": "nul\0"},
        {"Bad Name": "v"},
        {"X-A\r\nX-B": "v"},
        {"X-A": "not latin-1: \u2603"},
    ],
)
def test_a_header_that_could_split_the_request_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        encode_request("POST", "/", "h", headers, b"")


async def test_a_refused_header_is_a_failed_attempt_that_sends_nothing(
    make_transport: MakeTransport, transport_kind: str, serve
) -> None:
    server = await serve(answer_all)
    async with make_transport(LOOPBACK) as transport:
        request = OutboundRequest("POST", server.url, {"X-A": "a\r\nb"}, b"")
        result = await transport.send(request, timeout=5)
    assert result.error_class is ErrorClass.CONNECT
    assert result.error is not None and "header" in result.error
    assert server.requests == []
    if transport_kind == "ours":  # aiohttp connects first and refuses the header on writing
        assert server.connections == 0


# --- keep-alive ---------------------------------------------------------------------------


async def test_one_connection_carries_many_requests(make_transport: MakeTransport, serve) -> None:
    server = await serve(answer_all)
    async with make_transport(LOOPBACK) as transport:
        for _ in range(5):
            assert (await transport.send(post(server.url), timeout=5)).ok
    assert server.connections == 1
    assert len(server.requests) == 5
    assert server.requests[0].startswith(b"POST /hook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")


@ours_only(
    "the one resend of a request a server dropped unanswered on an idle connection is our "
    "rule; aiohttp reports the disconnect"
)
async def test_a_request_on_a_connection_the_server_dropped_idle_goes_again_once(
    make_transport: MakeTransport, serve
) -> None:
    # The server answers a connection's first request, then closes it without answering the
    # next: what a client sees when a server's idle timeout and a new request cross.
    server = await serve(answering_once(OK))
    async with make_transport(LOOPBACK) as transport:
        first = await transport.send(post(server.url), timeout=5)
        second = await transport.send(post(server.url), timeout=5)
    assert first.ok and second.ok
    assert server.connections == 2
    assert len(server.requests) == 3  # the dropped one, then again on a new connection


async def test_a_new_connection_closed_without_an_answer_is_not_sent_again(
    make_transport: MakeTransport, transport_kind: str, serve
) -> None:
    async def hang_up(server: Server, read: ReadRequest, writer, _: int) -> None:
        await read()

    server = await serve(hang_up)
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=5)
    assert result.error_class is ErrorClass.INVALID_RESPONSE
    if transport_kind == "ours":  # the wording is ours; aiohttp says "Server disconnected"
        assert result.error is not None and "without a response" in result.error
    assert len(server.requests) == 1


async def test_connection_close_is_honoured(make_transport: MakeTransport, serve) -> None:
    server = await serve(
        answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    )
    async with make_transport(LOOPBACK) as transport:
        for _ in range(3):
            assert (await transport.send(post(server.url), timeout=5)).ok
    assert server.connections == 3


# --- what a response can look like --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx", b"x"),
        (b"HTTP/1.0 200 OK\r\n\r\nuntil the close", b"until the close"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
            % len(gzip.compress(b"zipped"))
            + gzip.compress(b"zipped"),
            b"zipped",
        ),
    ],
    ids=["chunked", "interim-100", "until-close", "gzip"],
)
async def test_response_framings(
    make_transport: MakeTransport, serve, raw: bytes, body: bytes
) -> None:
    server = await serve(answering_once(raw, hold_open=b"HTTP/1.0" not in raw))
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=5)
    assert result.ok, result.error
    assert result.body == body


async def test_a_compressed_body_is_capped_after_expanding(
    make_transport: MakeTransport, serve
) -> None:
    bomb = gzip.compress(b"0" * 5_000_000)

    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    server = await serve(answering_once(head + bomb, hold_open=False))
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=5, max_body=1000)
    assert result.ok
    assert result.body == b"0" * 1000
    assert result.body_truncated


@ours_only("our cap on a compressed body; aiohttp's decoder is its own")
async def test_bytes_after_the_end_of_a_compressed_body_are_capped_too(
    make_transport: MakeTransport, serve
) -> None:
    # A gzip stream that ends after two bytes, then an endless body: zlib keeps what follows
    # the stream's end (`unused_data`) without a limit, and none of it counts as decoded, so
    # unless those bytes count against the cap the worker holds all of them until the
    # call's timeout.
    junk = b"\0" * 65536
    chunk = b"%x\r\n%s\r\n" % (len(junk), junk)
    sent_all = False

    async def script(server: Server, read: ReadRequest, writer: asyncio.StreamWriter, _: int):
        nonlocal sent_all
        await read()
        member = gzip.compress(b"ok")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n" % (len(member), member)
        )
        try:
            for _ in range(1024):  # 64 MiB: more than any socket buffer holds
                writer.write(chunk)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            sent_all = True
        except ConnectionError:
            pass

    server = await serve(script)
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=10, max_body=1000)
    assert not sent_all, "the client read 64 MiB past the end of a 2-byte gzip body"
    # Cut at the cap, as a body that long would be; what the stream decoded to is kept.
    assert (result.status, result.body, result.body_truncated) == (200, b"ok", True)


@ours_only("our pool's idle connections")
async def test_an_idle_connection_does_not_keep_the_last_responses_body(
    make_transport: MakeTransport, serve
) -> None:
    # A post-processing reply may be 160 MiB, and 50 of one site's calls run at once: a
    # connection parked idle (up to 30 s) must not keep a copy of the body it read.
    size = 16 * 1024 * 1024
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size
    server = await serve(answering(raw))
    async with make_transport(LOOPBACK) as transport:
        tracemalloc.start()
        try:
            got = len((await transport.send(post(server.url), timeout=10, max_body=size)).body)
            gc.collect()
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        idle = open_connections(transport)
    assert (got, idle) == (size, 1)  # read whole, and the connection kept for the next call
    # One copy of the body (the result's, still referenced somewhere in the exchange's
    # futures at this point) may remain; the connection's own list of its chunks may not.
    assert held < size * 3 // 2, f"{held} bytes still held after the call"


@pytest.mark.parametrize(
    "raw",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"],
    ids=["not-http", "bad-length"],
)
async def test_garbage_is_an_invalid_response(
    make_transport: MakeTransport, serve, raw: bytes
) -> None:
    server = await serve(answering_once(raw))
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=5)
    assert result.error_class is ErrorClass.INVALID_RESPONSE


@pytest.mark.parametrize(
    "headers",
    [
        b"".join(b"X-Pad-%d: v\r\n" % i for i in range(101)),  # too many fields
        b"X-Pad: " + b"v" * (64 * 1024) + b"\r\n",  # too many bytes in one
        b"".join(b"X-Pad: " + b"v" * 1000 + b"\r\n" for _ in range(70)),  # too many in all
    ],
    ids=["count", "one-large", "repeated"],
)
@ours_only("our header limits: aiohttp's are its own (8190 bytes a line)")
async def test_a_response_with_too_many_header_bytes_is_refused(
    make_transport: MakeTransport, serve, headers: bytes
) -> None:
    """Megabytes of headers would hold the process's memory and, joined, its event loop."""
    raw = b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\nok"
    server = await serve(answering_once(raw))
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=5)
    assert result.error_class is ErrorClass.INVALID_RESPONSE
    assert "headers exceed" in (result.error or "")


def streaming_head(start: bytes, total: int = 16 * 1024 * 1024) -> Script:
    """A script answering with `start` and then a header line that never ends: `total`
    bytes of it, or fewer if the client closes first; then it holds the connection."""

    async def script(server: Server, read: ReadRequest, writer: asyncio.StreamWriter, _: int):
        await read()
        writer.write(start)
        chunk = b"v" * 65536
        try:
            for _ in range(total // len(chunk)):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            return
        await read()

    return script


@pytest.mark.parametrize(
    "start",
    [
        b"HTTP/1.1 200 OK\r\nX-Pad: ",
        b"HTTP/1.1 200 OK\r\nX-Pad",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: ",
    ],
    ids=["value", "name", "trailer"],
)
@ours_only("our header limits: aiohttp's are its own (8190 bytes a line)")
async def test_a_header_line_that_never_ends_is_refused_before_the_timeout(
    make_transport: MakeTransport, serve, start: bytes
) -> None:
    """The parser keeps an unfinished line whole, copying it at every read, and never hands
    it over as a header: counted as it arrives, it is refused at the limit on headers (the
    call ends as an invalid response, not as the timeout the whole stream would reach), and
    the event loop never copies megabytes."""
    server = await serve(streaming_head(start))
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=60)
    assert result.error_class is ErrorClass.INVALID_RESPONSE, result.error
    assert "headers exceed" in (result.error or "")


@ours_only("the count of header bytes must not take a chunk's data for a trailer")
async def test_chunks_whose_data_comes_reads_after_their_size_line_are_body(
    make_transport: MakeTransport, serve
) -> None:
    """A chunk's size line ends one write and its data comes in later ones: body, not a
    trailer line, however much of it there is."""
    chunk = b"v" * (256 * 1024)

    async def script(server: Server, read: ReadRequest, writer: asyncio.StreamWriter, _: int):
        await read()
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(4):
            writer.write(b"%x\r\n" % len(chunk))
            await writer.drain()
            await asyncio.sleep(0.01)
            for start in range(0, len(chunk), 16384):
                writer.write(chunk[start : start + 16384])
                await writer.drain()
            writer.write(b"\r\n")
        writer.write(b"0\r\nX-Trailer: fine\r\n\r\n")
        await writer.drain()
        await read()

    server = await serve(script)
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=30, max_body=4 * len(chunk))
    assert result.status == 200, result.error
    assert len(result.body) == 4 * len(chunk)


@ours_only("our pool's count of open connections")
async def test_a_receiver_that_never_reads_does_not_keep_a_connection_after_its_call(
    make_transport: MakeTransport, serve
) -> None:
    """The request is larger than the sockets' buffers and the receiver reads none of it:
    the call times out, and its connection (its place in the pool) goes with it rather than
    waiting to send the rest."""
    accepted = asyncio.Event()

    async def never_reads(
        server: Server, read: ReadRequest, writer: asyncio.StreamWriter, _: int
    ) -> None:
        accepted.set()
        await asyncio.Event().wait()

    server = await serve(never_reads)
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url, b"x" * (32 * 1024 * 1024)), timeout=1)
        assert accepted.is_set()
        assert result.error_class is ErrorClass.TIMEOUT
        pool = transport._pool  # type: ignore[attr-defined]
        for _ in range(100):
            if not pool._all:
                break
            await asyncio.sleep(0.01)
        assert not pool._all, "the connection stayed open to send what nobody reads"


@pytest.mark.parametrize(("interim", "ok"), [(10, True), (11, False)])
@ours_only("our limit on interim responses")
async def test_interim_responses_are_read_up_to_a_limit(
    make_transport: MakeTransport, serve, interim: int, ok: bool
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
    server = await serve(answering_once(early * interim + OK))
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=5)
    if ok:
        assert result.status == 200
    else:
        assert result.error_class is ErrorClass.INVALID_RESPONSE
        assert "interim responses" in (result.error or "")


async def test_repeated_headers_are_joined_and_nul_is_never_passed_on(
    make_transport: MakeTransport, serve
) -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Tag: a\r\nX-Tag: b\r\nX-Odd: 1\x002\r\nContent-Length: 2\r\n\r\nok"
    server = await serve(answering_once(raw))
    async with make_transport(LOOPBACK) as transport:
        result = await transport.send(post(server.url), timeout=5)
    if result.status is None:
        # A parser that refuses a NUL in a header value outright is as good.
        assert result.error_class is ErrorClass.INVALID_RESPONSE
        return
    headers = {name.lower(): value for name, value in result.headers.items()}
    assert headers["x-tag"] == "a, b"
    assert "\x00" not in "".join(result.headers.values())


# --- the pool -----------------------------------------------------------------------------


async def test_at_most_limit_per_host_connections_and_the_rest_wait(
    make_transport: MakeTransport, serve
) -> None:
    server = await serve(answering(delay=0.05))
    async with make_transport(LOOPBACK, limit_per_host=2) as transport:
        results = await asyncio.gather(
            *(transport.send(post(server.url), timeout=5) for _ in range(7))
        )
    assert all(r.ok for r in results)
    assert server.most_open == 2


@ours_only("asserts on our pool's count of open connections")
async def test_idle_connections_close_after_the_keepalive_timeout(
    make_transport: MakeTransport, serve
) -> None:
    server = await serve(answer_all)
    async with make_transport(LOOPBACK, keepalive_timeout=0.1) as transport:
        await asyncio.gather(*(transport.send(post(server.url), timeout=5) for _ in range(3)))
        assert open_connections(transport) == 3
        for _ in range(50):
            await asyncio.sleep(0.05)
            if open_connections(transport) == 0 and server.open_now == 0:
                break
        assert open_connections(transport) == 0
        assert server.open_now == 0


@ours_only("asserts on our pool's count of open connections")
async def test_a_timed_out_exchange_closes_its_connection_and_the_next_one_works(
    make_transport: MakeTransport, serve
) -> None:
    async def first_slow(server: Server, read: ReadRequest, writer, nth: int) -> None:
        while await read() is not None:
            if nth == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart")
                await writer.drain()
                await asyncio.sleep(5)
            writer.write(OK)
            await writer.drain()

    server = await serve(first_slow)
    async with make_transport(LOOPBACK) as transport:
        late = await transport.send(post(server.url), timeout=0.2)
        after = await transport.send(post(server.url), timeout=5)
        assert open_connections(transport) == 1
    assert late.error_class is ErrorClass.TIMEOUT
    assert after.ok
    assert server.connections == 2


async def test_each_exchange_on_a_connection_keeps_its_own_deadline(
    make_transport: MakeTransport, serve
) -> None:
    """One timer per connection, not per exchange: an earlier exchange's shorter deadline
    does not cut a later one short, and a later exchange's shorter one still holds."""

    async def slow_second(server: Server, read: ReadRequest, writer, _: int) -> None:
        delays = iter([0.0, 0.4, 0.0, 2.0])
        while await read() is not None:
            await asyncio.sleep(next(delays, 0.0))
            writer.write(OK)
            await writer.drain()

    server = await serve(slow_second)
    async with make_transport(LOOPBACK) as transport:
        quick = await transport.send(post(server.url), timeout=0.2)
        patient = await transport.send(post(server.url), timeout=3)
        long_first = await transport.send(post(server.url), timeout=10)
        started = asyncio.get_running_loop().time()
        cut = await transport.send(post(server.url), timeout=0.3)
        took = asyncio.get_running_loop().time() - started
    assert quick.ok and patient.ok and long_first.ok
    assert server.connections == 1, "all three on one kept-alive connection"
    assert cut.error_class is ErrorClass.TIMEOUT
    assert 0.25 < took < 1.5, "the shorter deadline holds though a longer timer was set"


# --- under uvloop, as `docuhooks serve` and `docuhooks worker` run -------------------------


def test_the_exchange_under_uvloop(make_transport: MakeTransport) -> None:
    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                    await reader.readexactly(7)
                except asyncio.IncompleteReadError:
                    break
                writer.write(OK)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with make_transport(LOOPBACK) as transport:
            results = await asyncio.gather(
                *(transport.send(post(f"http://127.0.0.1:{port}/"), timeout=5) for _ in range(20))
            )
            again = await transport.send(post(f"http://127.0.0.1:{port}/"), timeout=5)
        server.close()
        assert all(r.ok and r.body == b"ok" for r in results)
        assert again.ok and again.remote_ip == "127.0.0.1"

    uvloop.run(main())


async def test_the_timeout_covers_waiting_for_a_connection(
    make_transport: MakeTransport, serve
) -> None:
    server = await serve(answering(delay=0.5))
    async with make_transport(LOOPBACK, limit_per_host=1) as transport:
        holder = asyncio.create_task(transport.send(post(server.url), timeout=5))
        await asyncio.sleep(0.05)
        waited = await transport.send(post(server.url), timeout=0.1)
        assert (await holder).ok
    assert waited.error_class is ErrorClass.TIMEOUT
    assert waited.duration_ms < 400
    assert len(server.requests) == 1


@ours_only(
    "aiohttp keeps using a connection on which the server spoke out of turn while it was "
    "idle; ours closes it, since nothing after such bytes can be trusted to frame a response"
)
async def test_bytes_after_a_response_make_the_connection_unusable(
    make_transport: MakeTransport, serve
) -> None:
    async def chatty(server: Server, read: ReadRequest, writer, _: int) -> None:
        while await read() is not None:
            writer.write(OK)
            await writer.drain()
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")  # unasked, and cut off

    server = await serve(chatty)
    async with make_transport(LOOPBACK) as transport:
        first = await transport.send(post(server.url), timeout=5)
        await asyncio.sleep(0.1)
        second = await transport.send(post(server.url), timeout=5)
    assert first.ok and second.ok
    assert server.connections == 2  # the first connection was not used again


async def test_bytes_that_came_with_a_response_are_not_read_into_the_next_one(
    make_transport: MakeTransport, serve
) -> None:
    # One write: the response and the start of another arrive together.
    server = await serve(answering(OK + b"HTTP/1.1 200 OK\r\nContent-Le"))
    async with make_transport(LOOPBACK) as transport:
        first = await transport.send(post(server.url), timeout=5)
        second = await transport.send(post(server.url), timeout=5)
    assert first.ok, first.error
    assert second.ok, second.error


@ours_only("our pool's first-come order of waiters and its count of open connections")
async def test_callers_waiting_for_a_connection_get_it_in_turn_and_a_cancelled_one_skips(
    make_transport: MakeTransport,
    serve,
) -> None:
    server = await serve(answering(delay=0.02))
    async with make_transport(LOOPBACK, limit_per_host=1) as transport:
        calls = []
        for n in range(5):
            calls.append(
                asyncio.create_task(transport.send(post(server.url, b"%d" % n), timeout=5))
            )
            await asyncio.sleep(0)  # queued in this order
        calls[2].cancel()
        done = await asyncio.gather(*calls, return_exceptions=True)
        assert open_connections(transport) == 1
    assert isinstance(done[2], asyncio.CancelledError)
    assert all(not isinstance(r, BaseException) and r.ok for i, r in enumerate(done) if i != 2)
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in server.requests] == [b"0", b"1", b"3", b"4"]
    assert server.connections == 1


async def test_an_unasked_protocol_switch_is_reported_and_the_connection_dropped(
    make_transport: MakeTransport, serve
) -> None:
    server = await serve(
        answering(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n\x81\x05hello"
        )
    )
    async with make_transport(LOOPBACK) as transport:
        first = await transport.send(post(server.url), timeout=5)
        second = await transport.send(post(server.url), timeout=5)
    assert first.error_class is ErrorClass.INVALID_RESPONSE
    assert first.status == 101
    assert second.status == 101
    assert server.connections == 2


@ours_only("asserts on our pool's count of open connections")
async def test_at_the_overall_limit_one_idle_connection_elsewhere_makes_room(
    make_transport: MakeTransport, serve
) -> None:
    first, second = await serve(answer_all), await serve(answer_all)
    async with make_transport(LOOPBACK, limit=2) as transport:
        await asyncio.gather(*(transport.send(post(first.url), timeout=5) for _ in range(2)))
        assert open_connections(transport) == 2  # both idle, to the first server
        other = await transport.send(post(second.url), timeout=5)
        assert other.ok
        await asyncio.sleep(0.05)
        assert open_connections(transport) == 2  # one of the first server's was closed
    assert first.connections == 2 and second.connections == 1


@ours_only("drives one of our pool's connections directly")
async def test_a_connection_closed_before_its_next_exchange_is_not_waited_on(
    make_transport: MakeTransport, serve
) -> None:
    from docuhooks.delivery.http import Disconnected

    server = await serve(answer_all)
    async with make_transport(LOOPBACK) as transport:
        assert (await transport.send(post(server.url), timeout=5)).ok
        assert isinstance(transport, HttpTransport)
        [connection] = transport._pool._all
        connection.close()  # closed after it was handed over, before its exchange
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Disconnected) as failed:
            await connection.exchange(b"GET / HTTP/1.1\r\n\r\n", 100, loop.time() + 5)
        assert failed.value.before_response  # so the transport sends it again
        assert loop.time() - started < 1  # at once, not at the deadline
        result = await transport.send(post(server.url), timeout=5)
    assert result.ok, result.error
    assert server.connections == 2


# --- guards that hold under python -O ------------------------------------------------------


@pytest.mark.parametrize("module", ["http", "transport", "connect", "proxy"])
def test_the_clients_guards_are_not_asserts(module: str) -> None:
    # `python -O` strips asserts: a guard written as one would silently vanish in production.
    import ast
    from pathlib import Path

    import docuhooks.delivery

    source = Path(docuhooks.delivery.__file__).parent / f"{module}.py"
    asserts = [
        node.lineno
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Assert)
    ]
    assert asserts == [], f"{source.name} guards with assert on lines {asserts}"


async def test_an_exchange_on_an_unready_connection_is_a_classified_error(serve) -> None:
    from docuhooks.delivery.http import Connection, ConnectionStateError, Origin
    from docuhooks.delivery.transport import classify_exception

    origin = Origin("http", "127.0.0.1", 80, True)
    loop = asyncio.get_running_loop()
    never_made = Connection(origin, "127.0.0.1", lambda _: None)
    with pytest.raises(ConnectionStateError) as unmade:
        await never_made.exchange(b"GET / HTTP/1.1\r\n\r\n", 100, loop.time() + 5)
    assert classify_exception(unmade.value) == (
        ErrorClass.CONNECT,
        "internal error: exchange on a connection that was never made",
    )

    server = await serve(answering_once(OK))
    busy = Connection(origin, "127.0.0.1", lambda _: None)
    await loop.create_connection(lambda: busy, "127.0.0.1", server.port)
    first = asyncio.create_task(busy.exchange(b"GET / HTTP/1.1\r\n\r\n", 100, loop.time() + 5))
    await asyncio.sleep(0)
    with pytest.raises(ConnectionStateError, match="already carrying one"):
        await busy.exchange(b"GET / HTTP/1.1\r\n\r\n", 100, loop.time() + 5)
    assert (await first).status == 200  # the exchange in flight is untouched
    busy.close()
