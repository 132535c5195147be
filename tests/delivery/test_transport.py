"""The real transport against real HTTP servers on 127.0.0.1, and the mock transport.

The real transport's tests run twice: on ours (:class:`HttpTransport`) and on a reference
built on aiohttp (`tests/delivery/aiohttp_transport.py`), so that our client is held to a
maintained library's behaviour. Tests of what only ours does say why with `ours_only`.

Every test here runs under `connect_guard`: the event loop's connect is wrapped so that a
connection attempt to anything but loopback fails the test instead of leaving the machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.delivery import transport_support
from tests.delivery.transport_support import MakeTransport

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.address_policy import AddressPolicy
from docuhooks.delivery.transport import (
    ErrorClass,
    MockTransport,
    Transport,
    TransportResult,
)

LOOPBACK_ALLOWED = AddressPolicy.from_setting("127.0.0.0/8, ::1/128")
DEFAULT_POLICY = AddressPolicy()

# Every test here runs with the loopback guard, and on both transports where it takes one.
connect_guard = transport_support.connect_guard
transport_kind = transport_support.transport_kind
make_transport = transport_support.make_transport

# --- servers ------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    port: int
    hits: list[web.Request] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(
    routes: dict[str, Handler], ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, Receiver]:
    app = web.Application()
    scheme = "https" if ssl_context else "http"
    receiver = Receiver(url="", port=0)

    def counted(handler: Handler) -> Handler:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            receiver.hits.append(request)
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if peer is not None:
                receiver.peers.append(peer)
            return await handler(request)

        return wrapper

    for path, handler in routes.items():
        app.router.add_route("*", path, counted(handler))
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    receiver.port = server.sockets[0].getsockname()[1]
    receiver.url = f"{scheme}://127.0.0.1:{receiver.port}"
    return runner, receiver


@pytest.fixture
async def other() -> AsyncIterator[Receiver]:
    """A second listener: the target of redirects that must never be followed."""

    async def anything(request: web.Request) -> web.Response:
        return web.Response(text="you followed a redirect")

    runner, receiver = await _serve({"/{tail:.*}": anything})
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def receiver(other: Receiver) -> AsyncIterator[Receiver]:
    release = asyncio.Event()

    async def ok(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            status=200,
            body=b"got " + body,
            headers={
                "X-Seen-Method": request.method,
                "X-Seen-Test": request.headers.get("X-Test", ""),
            },
        )

    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def server_error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=410, text="gone")

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.0.0.1/")

    async def to_other(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"{other.url}/landing")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), timeout=5)
        return web.Response(text="late")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (1024 * 1024))

    async def closing(request: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"})

    runner, server = await _serve(
        {
            "/ok": ok,
            "/no-content": no_content,
            "/error": server_error,
            "/gone": gone,
            "/to-private": to_private,
            "/to-other": to_other,
            "/slow": slow,
            "/big": big,
            "/closing": closing,
        }
    )
    yield server
    release.set()
    await runner.cleanup()


@pytest.fixture
async def transport(make_transport: MakeTransport) -> AsyncIterator[Transport]:
    # The connect guard only sees connections made by the standard selector loop.
    assert isinstance(asyncio.get_running_loop(), asyncio.selector_events.BaseSelectorEventLoop)
    t = make_transport(LOOPBACK_ALLOWED)
    yield t
    await t.close()


def post(url: str, body: bytes = b"payload", **headers: str) -> OutboundRequest:
    return OutboundRequest(method="POST", url=url, headers=headers, body=body)


def get(url: str) -> OutboundRequest:
    return OutboundRequest(method="GET", url=url, headers={}, body=None)


# --- ordinary responses -------------------------------------------------------------------


async def test_200_carries_status_headers_body_and_peer(
    transport: Transport, receiver: Receiver
) -> None:
    result = await transport.send(post(f"{receiver.url}/ok", X_Test="yes"), timeout=5)
    assert result.ok
    assert result.status == 200
    assert result.error_class is None and result.error is None
    assert result.body == b"got payload"
    assert not result.body_truncated
    assert result.headers["X-Seen-Method"] == "POST"
    assert result.remote_ip == "127.0.0.1"
    assert result.duration_ms > 0
    assert receiver.hits[0].headers["X_Test"] == "yes"


async def test_get_without_body(transport: Transport, receiver: Receiver) -> None:
    result = await transport.send(get(f"{receiver.url}/ok?token=abc"), timeout=5)
    assert result.status == 200
    assert result.headers["X-Seen-Method"] == "GET"
    assert receiver.hits[0].query["token"] == "abc"


async def test_204_is_success(transport: Transport, receiver: Receiver) -> None:
    result = await transport.send(post(f"{receiver.url}/no-content"), timeout=5)
    assert result.ok and result.status == 204 and result.body == b""
    assert result.error_class is None


@pytest.mark.parametrize(("path", "status"), [("/error", 500), ("/gone", 410)])
async def test_non_2xx_is_http_status(
    transport: Transport, receiver: Receiver, path: str, status: int
) -> None:
    result = await transport.send(post(f"{receiver.url}{path}"), timeout=5)
    assert not result.ok
    assert result.status == status
    assert result.error_class is ErrorClass.HTTP_STATUS
    assert result.error == f"HTTP {status}"
    assert result.body  # the receiver's explanation is kept for the attempt log


async def test_connections_are_reused(transport: Transport, receiver: Receiver) -> None:
    for _ in range(3):
        assert (await transport.send(post(f"{receiver.url}/ok"), timeout=5)).ok
    assert len(set(receiver.peers)) == 1, receiver.peers


# --- redirects ------------------------------------------------------------------------------


async def test_redirect_to_private_address_is_a_failed_attempt_never_followed(
    transport: Transport, receiver: Receiver, connect_guard: list[str]
) -> None:
    result = await transport.send(post(f"{receiver.url}/to-private"), timeout=5)
    assert result.status == 302
    assert not result.ok
    assert result.error_class is ErrorClass.HTTP_STATUS
    assert result.headers["Location"] == "http://10.0.0.1/"
    assert result.error is not None and "http://10.0.0.1/" in result.error
    assert "10.0.0.1" not in connect_guard
    assert set(connect_guard) == {"127.0.0.1"}


async def test_redirect_to_a_reachable_listener_is_not_followed(
    transport: Transport, receiver: Receiver, other: Receiver
) -> None:
    result = await transport.send(post(f"{receiver.url}/to-other"), timeout=5)
    assert result.status == 301
    assert result.error_class is ErrorClass.HTTP_STATUS
    assert other.hits == []


# --- failures -------------------------------------------------------------------------------


async def test_timeout(transport: Transport, receiver: Receiver) -> None:
    result = await transport.send(post(f"{receiver.url}/slow"), timeout=0.2)
    assert result.status is None
    assert result.error_class is ErrorClass.TIMEOUT
    assert 150 < result.duration_ms < 2000


async def test_connection_refused(transport: Transport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await transport.send(post(f"http://127.0.0.1:{port}/"), timeout=5)
    assert result.status is None
    assert result.error_class is ErrorClass.CONNECT
    assert result.error


async def test_garbage_response_is_invalid_response(transport: Transport) -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        result = await transport.send(get(f"http://127.0.0.1:{port}/"), timeout=5)
    assert result.error_class is ErrorClass.INVALID_RESPONSE
    assert result.status is None


async def test_oversized_body_is_capped_and_connection_stays_usable(
    transport: Transport, receiver: Receiver
) -> None:
    result = await transport.send(get(f"{receiver.url}/big"), timeout=5, max_body=1000)
    assert result.ok
    assert result.body == b"x" * 1000
    assert result.body_truncated
    exact = await transport.send(get(f"{receiver.url}/big"), timeout=5, max_body=1024 * 1024)
    assert len(exact.body) == 1024 * 1024 and not exact.body_truncated
    assert (await transport.send(post(f"{receiver.url}/ok"), timeout=5)).body == b"got payload"


async def test_unsupported_scheme_is_refused(transport: Transport) -> None:
    result = await transport.send(get("ftp://127.0.0.1/file"), timeout=5)
    assert result.error_class is ErrorClass.CONNECT
    assert result.status is None


# --- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docuhooks test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.fixture
async def tls_receiver(self_signed: ssl.SSLContext) -> AsyncIterator[Receiver]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="secure")

    runner, receiver = await _serve({"/": ok}, ssl_context=self_signed)
    yield receiver
    await runner.cleanup()


async def test_self_signed_certificate_fails_with_tls_by_default(
    transport: Transport, tls_receiver: Receiver
) -> None:
    result = await transport.send(get(f"{tls_receiver.url}/"), timeout=5)
    assert result.error_class is ErrorClass.TLS
    assert result.status is None
    assert tls_receiver.hits == []


async def test_accept_untrusted_ssl_only_when_asked(
    transport: Transport, tls_receiver: Receiver
) -> None:
    trusting = await transport.send(get(f"{tls_receiver.url}/"), timeout=5, verify_tls=False)
    assert trusting.ok and trusting.body == b"secure"
    # An untrusting call after a trusting one must not ride the unverified connection.
    strict = await transport.send(get(f"{tls_receiver.url}/"), timeout=5)
    assert strict.error_class is ErrorClass.TLS


# --- the address policy inside the transport ----------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "2130706433",
        "[::ffff:127.0.0.1]",
        "localhost",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f000001",
        "127.1",
        "127.0.0.1.",
        "[::1]",
        "[0:0:0:0:0:ffff:7f00:1]",
        "[::127.0.0.1]",
        "0",
        "[::]",
    ],
)
async def test_loopback_in_any_spelling_is_blocked_and_never_reached(
    make_transport: MakeTransport, receiver: Receiver, connect_guard: list[str], host: str
) -> None:
    async with make_transport(DEFAULT_POLICY) as transport:
        result = await transport.send(post(f"http://{host}:{receiver.port}/ok"), timeout=5)
    assert result.error_class is ErrorClass.BLOCKED, result.error
    assert result.status is None
    assert result.error
    assert receiver.hits == []
    assert connect_guard == []


class FakeResolver:
    """A DNS double: answers every name with fixed addresses, one list per lookup."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers = list(answers)
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]


class FailingResolver(FakeResolver):
    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize(
    "addresses", [["10.0.0.5"], ["169.254.169.254"], ["fd00::5", "192.168.0.9"], []]
)
async def test_name_resolving_to_private_address_is_blocked_before_connecting(
    make_transport: MakeTransport, connect_guard: list[str], addresses: list[str]
) -> None:
    resolver = FakeResolver(addresses)
    async with make_transport(LOOPBACK_ALLOWED, resolver=resolver) as transport:
        result = await transport.send(post("http://hooks.example.com/in"), timeout=5)
    assert result.error_class is ErrorClass.BLOCKED
    assert result.error is not None and "hooks.example.com resolves to" in result.error
    assert resolver.lookups == ["hooks.example.com"]
    assert connect_guard == []


async def test_public_looking_name_connects_only_to_the_allowed_address_it_resolved_to(
    make_transport: MakeTransport, receiver: Receiver, connect_guard: list[str]
) -> None:
    # A name answering with a private address and an allowed one: only the allowed one is
    # used, and the request still names the host it was sent to.
    resolver = FakeResolver(["10.0.0.5", "127.0.0.1"])
    async with make_transport(LOOPBACK_ALLOWED, resolver=resolver) as transport:
        result = await transport.send(
            post(f"http://hooks.example.com:{receiver.port}/ok"), timeout=5
        )
    assert result.ok
    assert connect_guard == ["127.0.0.1"]
    assert receiver.hits[0].host == f"hooks.example.com:{receiver.port}"


async def test_every_new_resolution_is_checked_again(
    make_transport: MakeTransport, receiver: Receiver, connect_guard: list[str]
) -> None:
    # DNS rebinding: first answer allowed, the next one private. The DNS cache is off and
    # the receiver closes each connection, so the second call must resolve again.
    resolver = FakeResolver(["127.0.0.1"], ["10.0.0.5"])
    policy = AddressPolicy.from_setting("127.0.0.1/32")
    async with make_transport(policy, resolver=resolver, dns_cache_ttl=0) as transport:
        first = await transport.send(
            get(f"http://rebind.example:{receiver.port}/closing"), timeout=5
        )
        await asyncio.sleep(0.05)
        second = await transport.send(
            get(f"http://rebind.example:{receiver.port}/closing"), timeout=5
        )
    assert first.ok
    assert second.error_class is ErrorClass.BLOCKED
    assert len(resolver.lookups) == 2
    assert connect_guard == ["127.0.0.1"]
    assert len(receiver.hits) == 1


async def test_dns_failure_is_dns(make_transport: MakeTransport, connect_guard: list[str]) -> None:
    resolver = FailingResolver()
    async with make_transport(DEFAULT_POLICY, resolver=resolver) as transport:
        result = await transport.send(post("http://no-such-host.example/"), timeout=5)
    assert result.error_class is ErrorClass.DNS
    assert connect_guard == []


async def test_closed_transport_refuses_to_send(make_transport: MakeTransport) -> None:
    transport = make_transport(DEFAULT_POLICY)
    await transport.close()
    with pytest.raises(RuntimeError):
        await transport.send(post("http://hooks.example.com/"), timeout=1)


# --- the mock ---------------------------------------------------------------------------


async def test_mock_transport_answers_from_its_handler_and_records_calls() -> None:
    def handler(request: OutboundRequest) -> TransportResult:
        if request.url.endswith("/down"):
            return TransportResult.failure(ErrorClass.CONNECT, "connection refused")
        return TransportResult.response(200, b"0123456789", {"Content-Type": "text/plain"})

    mock: Transport = MockTransport(handler)
    up = await mock.send(post("https://r.example/up"), timeout=3, max_body=4)
    down = await mock.send(post("https://r.example/down"), timeout=7, verify_tls=False)
    assert up.ok and up.body == b"0123" and up.body_truncated
    assert down.error_class is ErrorClass.CONNECT and down.status is None and not down.ok
    assert isinstance(mock, MockTransport)
    assert [(s.request.url, s.timeout, s.verify_tls) for s in mock.sent] == [
        ("https://r.example/up", 3, True),
        ("https://r.example/down", 7, False),
    ]


async def test_mock_transport_accepts_async_handlers() -> None:
    async def handler(request: OutboundRequest) -> TransportResult:
        await asyncio.sleep(0)
        return TransportResult.response(302, headers={"Location": "http://10.0.0.1/"})

    async with MockTransport(handler) as mock:
        result = await mock.send(get("https://r.example/"), timeout=1)
    assert result.error_class is ErrorClass.HTTP_STATUS
    assert result.error is not None and "http://10.0.0.1/" in result.error


def test_result_statuses() -> None:
    assert TransportResult.response(204).ok
    assert not TransportResult.response(299 + 1).ok
    assert TransportResult.response(429).error_class is ErrorClass.HTTP_STATUS
    assert not TransportResult.failure(ErrorClass.TIMEOUT, "slow").ok


@pytest.mark.parametrize(
    "url",
    [
        "http://h:8080/p?token=abc.def-_&x=1",
        "https://h/p",
        "http://h/p?a=b#frag",
        "http://h/p#f?x",
        "http://h/p?q=é",
        "http://h/p?q=a b",
        "http://h?x=1",
        "http://[::1]:9/x?y=2",
        "https://h/a%20b/?c=%2F",
    ],
)
def test_the_request_target_is_what_yarl_reads(url: str) -> None:
    from yarl import URL

    from docuhooks.delivery.transport import _target

    # The same path and the same decoded query (the query may keep an escape yarl undoes,
    # such as %2F, which means the same).
    sent = URL("http://x" + _target(url).path)
    assert sent.raw_path == URL(url).raw_path
    assert sent.query == URL(url).query
    assert _target(url).origin.host == URL(url).raw_host


def test_urls_that_differ_only_in_their_query_are_read_once() -> None:
    # A GET webhook's token makes every request's URL new; the cache must not fill with them.
    from docuhooks.delivery.transport import _cached_target, _target

    _cached_target.cache_clear()
    for n in range(200):
        assert _target(f"https://hooks.example/in?token=t{n}").path == f"/in?token=t{n}"
    assert _cached_target.cache_info().currsize == 1


async def test_the_process_transport_takes_its_per_host_limit_from_the_settings(
    tmp_path: Path,
) -> None:
    from docuhooks.context import AppContext
    from docuhooks.identity.secrets import SecretBox
    from docuhooks.settings import Settings
    from docuhooks.store.database import Database

    def context(per_host: int) -> AppContext:
        settings = Settings(data_dir=tmp_path, secret_key="k" * 32, connections_per_host=per_host)
        db = Database.from_url(settings.resolved_database_url)
        return AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))

    ctx = context(64)
    try:
        pool = ctx.transport._pool  # type: ignore[attr-defined]
        assert (pool.limit_per_host, pool.limit) == (64, 200)
    finally:
        await ctx.close()
    # No pool at all is refused with the settings, before anything is built.
    with pytest.raises(ValueError, match="DOCUHOOKS_CONNECTIONS_PER_HOST: must be at least 1"):
        context(0)
