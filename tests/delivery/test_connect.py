"""Connecting to a name's addresses: a connect timeout per address, and the next address
tried alongside a slow one (happy eyeballs), on our transport and the aiohttp reference.

An address that drops connection attempts is made on loopback, never elsewhere: a listening
socket whose accept queue is full (backlog 0, one connection queued and never accepted)
makes the kernel drop every further SYN, which is what a firewall that drops packets looks
like to a client. Different loopback addresses (127.0.0.2, 127.0.0.3) stand for a name's
several addresses, handed out by a fake resolver.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager

import pytest
from tests.delivery import transport_support
from tests.delivery.transport_support import MakeTransport

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import connect
from docuhooks.delivery.address_policy import AddressPolicy
from docuhooks.delivery.transport import ErrorClass

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8, ::1/128")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

connect_guard = transport_support.connect_guard
transport_kind = transport_support.transport_kind
make_transport = transport_support.make_transport


class FixedResolver:
    """Answers every name with the same addresses, in the order given."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int) -> list[str]:
        return list(self.addresses)


@contextmanager
def blackhole(host: str, port: int = 0) -> Iterator[socket.socket]:
    """A listener on ``host`` whose accept queue is full: connection attempts to it get no
    answer at all. The listener is yielded (serving from it opens the hole)."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    filler: socket.socket | None = None
    try:
        listener.bind((host, port))
        listener.listen(0)
        filler = socket.create_connection(listener.getsockname()[:2], timeout=5)
        probe = socket.socket(listener.family)
        probe.setblocking(False)
        try:
            probe.connect_ex(listener.getsockname())
            # Not connected at once, as a queued one would be: the SYN was dropped.
            assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            with pytest.raises(OSError):
                probe.getpeername()
        finally:
            probe.close()
        yield listener
    finally:
        if filler is not None:
            filler.close()
        listener.close()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Awaitable[asyncio.Server]]]:
    """Starts HTTP servers that answer 200 "ok": ``await start(host, port=0, sock=None)``."""
    started: list[asyncio.Server] = []

    async def start(
        host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None
    ) -> asyncio.Server:
        if sock is not None:
            server = await asyncio.start_server(_answer, sock=sock)
        else:
            server = await asyncio.start_server(_answer, host, port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


StartServer = Callable[..., Awaitable[asyncio.Server]]


def post(url: str) -> OutboundRequest:
    return OutboundRequest(method="POST", url=url, headers={}, body=b"payload")


@pytest.mark.parametrize("dropping", ["127.0.0.2", "::1"], ids=["ipv4", "ipv6-then-ipv4"])
async def test_a_blackholed_first_address_does_not_hold_up_the_next(
    make_transport: MakeTransport, connect_guard: list[str], servers: StartServer, dropping: str
) -> None:
    with blackhole(dropping) as hole:
        port = hole.getsockname()[1]
        await servers("127.0.0.3", port)
        resolver = FixedResolver([dropping, "127.0.0.3"])
        # The connect timeout and the call's timeout are long: what gets the call through
        # is the second address starting while the first still waits.
        async with make_transport(LOOPBACK, resolver=resolver, connect_timeout=60) as transport:
            result = await transport.send(post(f"http://hooks.test:{port}/"), timeout=60)
    assert result.ok, result.error
    assert result.remote_ip == "127.0.0.3"
    assert connect_guard == [dropping, "127.0.0.3"]


async def test_the_first_address_is_not_abandoned_when_the_next_one_starts(
    make_transport: MakeTransport, connect_guard: list[str], servers: StartServer
) -> None:
    # Both addresses drop SYNs; once the second attempt has started, the first address
    # opens. The first attempt, still running, connects (its SYN is sent again) and wins.
    with blackhole("127.0.0.2") as first, blackhole("127.0.0.3", first.getsockname()[1]):
        port = first.getsockname()[1]

        async def open_first_once_the_second_is_tried() -> asyncio.Server:
            # The guard's list is the only sign the second attempt started: polled.
            while "127.0.0.3" not in connect_guard:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            return await servers(sock=first)  # listens again, with room in its queue

        opener = asyncio.create_task(open_first_once_the_second_is_tried())
        resolver = FixedResolver(["127.0.0.2", "127.0.0.3"])
        async with make_transport(LOOPBACK, resolver=resolver, connect_timeout=60) as transport:
            result = await transport.send(post(f"http://hooks.test:{port}/"), timeout=60)
        (await opener).close()  # before its socket is closed under it
    assert result.ok, result.error
    assert result.remote_ip == "127.0.0.2"
    assert connect_guard[:2] == ["127.0.0.2", "127.0.0.3"]


async def test_an_address_gets_no_more_than_its_connect_timeout(
    make_transport: MakeTransport,
) -> None:
    with blackhole("127.0.0.2") as hole:
        port = hole.getsockname()[1]
        resolver = FixedResolver(["127.0.0.2"])
        async with make_transport(LOOPBACK, resolver=resolver, connect_timeout=0.3) as transport:
            result = await transport.send(post(f"http://hooks.test:{port}/"), timeout=60)
    # A failure to connect, reported long before the call's own timeout.
    assert result.error_class is ErrorClass.CONNECT, result.error
    assert result.duration_ms < 30_000


async def test_the_calls_timeout_still_bounds_a_longer_connect_timeout(
    make_transport: MakeTransport,
) -> None:
    with blackhole("127.0.0.2") as hole:
        port = hole.getsockname()[1]
        resolver = FixedResolver(["127.0.0.2"])
        async with make_transport(LOOPBACK, resolver=resolver, connect_timeout=60) as transport:
            result = await transport.send(post(f"http://hooks.test:{port}/"), timeout=0.3)
    assert result.error_class is ErrorClass.TIMEOUT, result.error


async def test_when_every_address_fails_each_was_tried(
    make_transport: MakeTransport, transport_kind: str, connect_guard: list[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]  # nothing listens there, nor on 127.0.0.3
    resolver = FixedResolver(["127.0.0.2", "127.0.0.3"])
    async with make_transport(LOOPBACK, resolver=resolver) as transport:
        result = await transport.send(post(f"http://hooks.test:{port}/"), timeout=10)
    assert result.error_class is ErrorClass.CONNECT
    assert result.error is not None
    assert set(connect_guard) == {"127.0.0.2", "127.0.0.3"}
    if transport_kind == "ours":
        # aiohttp reports the last failure alone, after trying the last address again.
        assert "127.0.0.2" in result.error and "127.0.0.3" in result.error
        assert connect_guard == ["127.0.0.2", "127.0.0.3"]


async def test_our_blackholed_address_is_named_with_its_connect_timeout() -> None:
    from docuhooks.delivery.transport import HttpTransport

    with blackhole("127.0.0.2") as hole:
        port = hole.getsockname()[1]
        resolver = FixedResolver(["127.0.0.2"])
        async with HttpTransport(LOOPBACK, resolver=resolver, connect_timeout=0.3) as transport:
            result = await transport.send(post(f"http://hooks.test:{port}/"), timeout=60)
    assert (
        result.error == f"could not connect: connecting to 127.0.0.2:{port} timed out after 0.3 s"
    )


# --- the pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolved", "tried"),
    [
        ([], []),
        (["1.1.1.1"], ["1.1.1.1"]),
        (["2001:db8::1", "2001:db8::2", "1.1.1.1"], ["2001:db8::1", "1.1.1.1", "2001:db8::2"]),
        (["1.1.1.1", "1.1.1.2", "2001:db8::1"], ["1.1.1.1", "2001:db8::1", "1.1.1.2"]),
        (["1.1.1.1", "1.1.1.2"], ["1.1.1.1", "1.1.1.2"]),
        (
            ["2001:db8::1", "2001:db8::2", "1.1.1.1", "1.1.1.2", "2001:db8::3"],
            ["2001:db8::1", "1.1.1.1", "2001:db8::2", "1.1.1.2", "2001:db8::3"],
        ),
    ],
)
def test_the_families_take_turns_starting_with_the_resolvers_first(
    resolved: list[str], tried: list[str]
) -> None:
    assert connect.interleave(resolved) == tried


async def test_a_failed_attempt_starts_the_next_at_once() -> None:
    started: list[str] = []
    left, right = socket.socketpair()

    async def attempt(address: str) -> socket.socket:
        started.append(address)
        if address == "bad":
            raise ConnectionRefusedError("refused")
        return left

    try:
        async with asyncio.timeout(30):  # a safety net: the delay below is an hour
            sock, winner = await connect.first_connected(["bad", "good"], attempt, delay=3600)
        assert (sock, winner) == (left, "good")
        assert started == ["bad", "good"]
    finally:
        left.close()
        right.close()


async def test_a_socket_that_connects_after_the_race_was_won_is_closed() -> None:
    # Both attempts finish in the same turn of the loop: one wins, the other's socket is
    # closed rather than leaked.
    pairs = [socket.socketpair(), socket.socketpair()]
    ready = asyncio.Event()

    async def attempt(address: str) -> socket.socket:
        await ready.wait()
        return pairs[int(address)][0]

    async def release() -> None:
        await asyncio.sleep(0.05)
        ready.set()

    releaser = asyncio.create_task(release())
    try:
        sock, winner = await connect.first_connected(["0", "1"], attempt, delay=0)
        await releaser
        assert (sock, winner) == (pairs[0][0], "0")
        assert pairs[1][0].fileno() == -1  # closed
        assert pairs[0][0].fileno() != -1
    finally:
        for pair in pairs:
            for end in pair:
                end.close()
