"""Webhook calls through an egress proxy: which calls take it (settings, the environment,
``NO_PROXY``), and real calls through a real forward proxy, Debian's ``tinyproxy``, started
by the test on loopback, for http (absolute-form requests) and https (CONNECT tunnels).

The proxy is asked for the address the policy judged, never for the name: the names used
here (``hooks.test``) resolve only through the test's fake resolver, so a proxy that were
given the name could not reach the receiver at all.

These run on our transport alone: aiohttp's proxy support sends ``CONNECT`` with the host
name, leaving the name to the proxy to resolve, which is what the policy must not allow.

Without tinyproxy these tests skip, or fail with ``DOCUHOOKS_REQUIRE_POSTGRES=1`` (CI,
which installs it).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.delivery import transport_support
from tests.support import debian_program

from docuhooks.core.destinations import Signal, host_answered, signal_of
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.address_policy import AddressPolicy
from docuhooks.delivery.proxy import Proxy, ProxyRoutes
from docuhooks.delivery.transport import ErrorClass, HttpTransport

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8, ::1/128")
#: The proxy listens on an address of its own, so the connect guard tells it from receivers.
PROXY_HOST = "127.0.0.4"

connect_guard = transport_support.connect_guard


# --- which calls take the proxy ------------------------------------------------------------


def test_the_environment_names_a_proxy_per_scheme_lower_case_first() -> None:
    routes = ProxyRoutes.configure(
        "",
        "",
        {
            "https_proxy": "http://lower:3128",
            "HTTPS_PROXY": "http://upper:3128",
            "HTTP_PROXY": "plain.example:8080",
            "NO_PROXY": "internal.example",
        },
    )
    assert routes.https == Proxy("lower", 3128)
    assert routes.http == Proxy("plain.example", 8080)
    assert routes.for_destination("https", "hooks.example", 443) == Proxy("lower", 3128)
    assert routes.for_destination("http", "hooks.example", 80) == Proxy("plain.example", 8080)
    assert routes.for_destination("https", "a.internal.example", 443) is None


def test_only_the_schemes_named_go_through_a_proxy() -> None:
    routes = ProxyRoutes.configure("", "", {"HTTPS_PROXY": "http://p:3128"})
    assert routes.for_destination("http", "hooks.example", 80) is None
    assert routes.for_destination("https", "hooks.example", 443) == Proxy("p", 3128)
    assert not ProxyRoutes.configure("", "", {})


def test_the_setting_overrides_the_environment_entirely() -> None:
    environ = {"HTTPS_PROXY": "http://env:3128", "NO_PROXY": "*"}
    routes = ProxyRoutes.configure("http://setting:8080", "skip.example", environ)
    assert routes.https == routes.http == Proxy("setting", 8080)
    assert routes.for_destination("https", "hooks.example", 443) == Proxy("setting", 8080)
    assert routes.for_destination("https", "skip.example", 443) is None


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "anything.example", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "hooks.example.com", 443, True),
        (".example.com", "hooks.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("Example.COM", "HOOKS.example.com.", 443, True),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("203.0.113.7", "203.0.113.7", 443, True),
        ("2001:db8::/32", "[2001:db8::5]", 443, True),
        ("[2001:db8::5]:443", "[2001:db8::5]", 443, True),
        ("a.example, b.example", "x.b.example", 443, True),
        ("", "hooks.example", 443, False),
    ],
)
def test_no_proxy_reads_as_curl_reads_it(
    no_proxy: str, host: str, port: int, bypassed: bool
) -> None:
    routes = ProxyRoutes.configure("http://proxy:3128", no_proxy, {})
    assert (routes.for_destination("https", host, port) is None) is bypassed


@pytest.mark.parametrize("host", ["localhost", "api.localhost", "127.0.0.1", "[::1]", "127.1"])
def test_loopback_destinations_never_take_the_proxy(host: str) -> None:
    # The proxy's loopback is not ours.
    routes = ProxyRoutes.configure("http://proxy:3128", "", {})
    assert routes.for_destination("http", host, 80) is None


def test_credentials_become_basic_authorization_and_are_never_shown() -> None:
    proxy = Proxy.from_url("http://ann%40corp:s3cr%3At@proxy.corp:3128", source="x")
    assert proxy.authorization == "Basic YW5uQGNvcnA6czNjcjp0"  # ann@corp:s3cr:t
    assert "s3cr" not in repr(proxy) and "czNjcjp0" not in repr(proxy)
    assert proxy.address == "proxy.corp:3128"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://user:hunter2@proxy:3128", "only http:// proxies"),
        ("socks5://user:hunter2@proxy:1080", "only http:// proxies"),
        ("http://user:hunter2@:3128", "not a proxy URL"),
        ("http://user:hunter2@proxy:3128/path", "no path"),
        ("http://user:hunter2@proxy:99999", "not a proxy URL"),
    ],
)
def test_an_unusable_proxy_url_is_refused_without_repeating_it(value: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        ProxyRoutes.configure("", "", {"HTTPS_PROXY": value})
    assert message in str(refused.value)
    assert "HTTPS_PROXY" in str(refused.value)
    assert "hunter2" not in str(refused.value)


async def test_the_process_transports_take_the_proxy_from_settings_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docuhooks.context import AppContext
    from docuhooks.identity.secrets import SecretBox
    from docuhooks.settings import Settings
    from docuhooks.store.database import Database

    async def routes(**settings: object) -> ProxyRoutes | None:
        values = Settings(data_dir=tmp_path, secret_key="k" * 32, **settings)  # type: ignore[arg-type]
        db = Database.from_url(values.resolved_database_url)
        ctx = AppContext(settings=values, db=db, box=SecretBox(values.secret_key))
        try:
            assert ctx.transport is not ctx.interactive_transport
            found: ProxyRoutes | None = ctx.transport._proxies  # type: ignore[attr-defined]
            assert ctx.interactive_transport._proxies == found  # type: ignore[attr-defined]
            return found
        finally:
            await ctx.close()

    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    from_env = await routes()
    assert from_env is not None and from_env.https == Proxy("env-proxy", 3128)
    assert from_env.http is None
    from_setting = await routes(outbound_proxy="http://set:8080", outbound_no_proxy="a.example")
    assert from_setting == ProxyRoutes(Proxy("set", 8080), Proxy("set", 8080), ("a.example",))
    monkeypatch.delenv("HTTPS_PROXY")
    assert await routes() is None


def test_an_unusable_outbound_setting_stops_the_process_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from docuhooks.context import AppContext
    from docuhooks.settings import Settings, SettingsError

    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)

    def start(**values: object) -> None:
        settings = Settings(data_dir=tmp_path, secret_key="k" * 32, **values)  # type: ignore[arg-type]
        AppContext.from_settings(settings)

    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:pw-in-env@proxy:1080")
    with pytest.raises(SettingsError, match="HTTPS_PROXY: only http:// proxies") as env:
        start()
    assert "pw-in-env" not in str(env.value)
    monkeypatch.delenv("HTTPS_PROXY")
    with pytest.raises(SettingsError, match="DOCUHOOKS_OUTBOUND_PROXY is not a proxy URL"):
        start(outbound_proxy="http://:3128")
    with pytest.raises(SettingsError, match="DOCUHOOKS_CONNECT_TIMEOUT_SECONDS: must be"):
        start(connect_timeout_seconds=0)


# --- through a real proxy ---------------------------------------------------------------


@dataclass
class Tinyproxy:
    port: int
    log: Path

    def proxy(self, credentials: str = "") -> Proxy:
        return Proxy.from_url(f"http://{credentials}{PROXY_HOST}:{self.port}", source="test")

    def requests(self) -> list[str]:
        """The request lines the proxy logged."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line.split("): ", 1)[1] for line in text.splitlines() if "Request (file" in line]


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def start_tinyproxy(tmp_path: Path) -> Iterator[Callable[..., Tinyproxy]]:
    """``start(connect_ports, basic_auth="user pass")``: a tinyproxy on PROXY_HOST that lets
    CONNECT through to the given ports only. Waits (blocking: it is set-up, and a probe
    through the event loop would show in the connect guard) until it listens."""
    binary = debian_program("tinyproxy")
    processes: list[subprocess.Popen[bytes]] = []

    def start(connect_ports: list[int], basic_auth: str | None = None) -> Tinyproxy:
        folder = tmp_path / f"tinyproxy-{len(processes)}"
        folder.mkdir()
        port = _free_port(PROXY_HOST)
        lines = [
            f"Port {port}",
            f"Listen {PROXY_HOST}",
            "Timeout 30",
            "MaxClients 50",
            "Allow 127.0.0.0/8",
            "LogLevel Info",
            f'LogFile "{folder / "tinyproxy.log"}"',
            *(f"ConnectPort {p}" for p in connect_ports),
        ]
        if basic_auth:
            lines.append(f"BasicAuth {basic_auth}")
        config = folder / "tinyproxy.conf"
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            [binary, "-d", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        processes.append(process)
        for _ in range(200):
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.fail(f"tinyproxy exited at start: {error}")
            try:
                socket.create_connection((PROXY_HOST, port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            break
        else:
            pytest.fail("tinyproxy did not start listening")
        return Tinyproxy(port, folder / "tinyproxy.log")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


StartProxy = Callable[..., Tinyproxy]


class FixedResolver:
    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return list(self.addresses)


SEEN = web.AppKey("seen", list[web.Request])


@dataclass
class Receiver:
    port: int
    seen: list[web.Request]


async def _echo(request: web.Request) -> web.Response:
    request.app[SEEN].append(request)
    body = await request.read()
    return web.Response(
        body=b"got " + body,
        headers={"X-Seen-Host": request.host, "X-Seen-Via": request.headers.get("Via", "")},
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    runners: list[web.AppRunner] = []

    async def start(context: ssl.SSLContext | None = None) -> Receiver:
        app = web.Application()
        seen: list[web.Request] = []
        app[SEEN] = seen
        app.router.add_route("*", "/{tail:.*}", _echo)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        port = _free_port("127.0.0.1")
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        runners.append(runner)
        return Receiver(port, seen)

    yield start
    for runner in runners:
        await runner.cleanup()


@dataclass(frozen=True)
class TrustedCA:
    cert_file: Path
    server_context: ssl.SSLContext


Serve = Callable[..., Awaitable[Receiver]]


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TrustedCA:
    """A CA of the test's own and a certificate it issued for ``hooks.test``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docuhooks test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("ca")
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "leaf.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    return TrustedCA(folder / "ca.pem", context)


def post(url: str, body: bytes = b"payload") -> OutboundRequest:
    return OutboundRequest(method="POST", url=url, headers={"X-Test": "1"}, body=body)


def transport(proxy: Proxy, *addresses: str, no_proxy: tuple[str, ...] = ()) -> HttpTransport:
    routes = ProxyRoutes(http=proxy, https=proxy, no_proxy=no_proxy)
    resolver = FixedResolver(list(addresses) or ["127.0.0.1"])
    return HttpTransport(LOOPBACK, resolver=resolver, proxies=routes)


async def test_an_http_webhook_goes_through_the_proxy_to_the_judged_address(
    start_tinyproxy: StartProxy, serve: Serve, connect_guard: list[str]
) -> None:
    receiver = await serve()
    tinyproxy = start_tinyproxy([])
    async with transport(tinyproxy.proxy()) as client:
        results = [
            await client.send(post(f"http://hooks.test:{receiver.port}/in?a=1"), timeout=10)
            for _ in range(3)
        ]
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[0].body == b"got payload"
    assert results[0].remote_ip == "127.0.0.1"  # the destination, not the proxy
    assert "tinyproxy" in results[0].headers["X-Seen-Via"]  # it passed through the proxy
    assert receiver.seen[0].path_qs == "/in?a=1"
    # We connected to the proxy alone (tinyproxy closes after each request), and named the
    # judged address to it, never the name.
    assert set(connect_guard) == {PROXY_HOST}
    line = f"POST http://127.0.0.1:{receiver.port}/in?a=1 HTTP/1.1"
    assert tinyproxy.requests() == [line] * 3


async def test_a_proxys_answer_for_a_host_it_cannot_reach_is_not_the_host_answering(
    start_tinyproxy: StartProxy,
) -> None:
    """Through an egress proxy, a host that is down still gets a status: the proxy's 5xx.
    That is not the host's own server answering (`host_answered`), so it keeps the host's
    probe turn: a dead host behind the proxy gets one probe per interval from the whole
    installation, not one from each site whose breaker of it is open."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: nothing listens there
    tinyproxy = start_tinyproxy([])
    async with transport(tinyproxy.proxy()) as client:
        result = await client.send(post(f"http://hooks.test:{port}/hook"), timeout=10)
    assert result.status is not None and result.status >= 500, (result.status, result.error)
    assert not host_answered(result.status)
    assert signal_of(result.status, None) is Signal.FAILURE  # and it counts for the breaker


async def test_an_https_webhook_tunnels_to_the_judged_address_and_checks_the_certificate(
    start_tinyproxy: StartProxy,
    serve: Serve,
    test_ca: TrustedCA,
    connect_guard: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The system trust store, plus the test's CA: the certificate is checked for real.
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.cert_file))
    receiver = await serve(test_ca.server_context)
    tinyproxy = start_tinyproxy([receiver.port])
    async with transport(tinyproxy.proxy()) as client:
        first = await client.send(post(f"https://hooks.test:{receiver.port}/in"), timeout=10)
        again = await client.send(post(f"https://hooks.test:{receiver.port}/in"), timeout=10)
        # The same receiver under a name its certificate does not carry: TLS runs end to
        # end through the tunnel, checked against the webhook's host name.
        other = await client.send(post(f"https://other.test:{receiver.port}/in"), timeout=10)
    assert first.ok, first.error
    assert first.body == b"got payload" and first.remote_ip == "127.0.0.1"
    assert first.headers["X-Seen-Host"] == f"hooks.test:{receiver.port}"
    assert first.headers["X-Seen-Via"] == ""  # a tunnel: the proxy did not see the request
    assert again.ok
    assert other.error_class is ErrorClass.TLS, other.error
    assert connect_guard == [PROXY_HOST, PROXY_HOST]  # one tunnel kept alive, one refused
    assert tinyproxy.requests() == [f"CONNECT 127.0.0.1:{receiver.port} HTTP/1.1"] * 2


async def test_an_untrusted_certificate_is_accepted_through_the_tunnel_only_when_asked(
    start_tinyproxy: StartProxy, serve: Serve, test_ca: TrustedCA
) -> None:
    receiver = await serve(test_ca.server_context)  # its CA is not trusted here
    tinyproxy = start_tinyproxy([receiver.port])
    url = f"https://hooks.test:{receiver.port}/in"
    async with transport(tinyproxy.proxy()) as client:
        strict = await client.send(post(url), timeout=10)
        trusting = await client.send(post(url), timeout=10, verify_tls=False)
    assert strict.error_class is ErrorClass.TLS
    assert trusting.ok, trusting.error


async def test_a_proxy_refusing_the_tunnel_is_a_connect_error_naming_its_status(
    start_tinyproxy: StartProxy, serve: Serve, test_ca: TrustedCA
) -> None:
    receiver = await serve(test_ca.server_context)
    tinyproxy = start_tinyproxy([receiver.port + 1])  # not the receiver's port
    async with transport(tinyproxy.proxy()) as client:
        result = await client.send(post(f"https://hooks.test:{receiver.port}/"), timeout=10)
    assert result.error_class is ErrorClass.CONNECT
    assert result.error is not None
    assert f"proxy {PROXY_HOST}:{tinyproxy.port} answered CONNECT" in result.error
    assert "403" in result.error
    assert receiver.seen == []


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_proxy_credentials_are_presented_and_never_shown(
    start_tinyproxy: StartProxy, serve: Serve, test_ca: TrustedCA, scheme: str
) -> None:
    receiver = await serve(test_ca.server_context if scheme == "https" else None)
    tinyproxy = start_tinyproxy([receiver.port], basic_auth="hookuser s3cret-pw")
    url = f"{scheme}://hooks.test:{receiver.port}/in"
    async with transport(tinyproxy.proxy("hookuser:s3cret-pw@")) as client:
        allowed = await client.send(post(url), timeout=10, verify_tls=False)
    async with transport(tinyproxy.proxy("hookuser:wrong-pw@")) as client:
        refused = await client.send(post(url), timeout=10, verify_tls=False)
    assert allowed.ok, allowed.error
    # tinyproxy answers wrong credentials with 401 (a proxy should say 407).
    if scheme == "http":
        assert refused.status in (401, 407)
    else:
        assert refused.error_class is ErrorClass.CONNECT and refused.status is None
        assert refused.error is not None
        assert re.search(r"answered CONNECT \S+ with 40[17] ", refused.error), refused.error
    for text in (allowed.error or "", refused.error or "", repr(tinyproxy.proxy("u:s3cret-pw@"))):
        assert "s3cret" not in text
    assert len(receiver.seen) == 1


async def test_a_blocked_destination_is_refused_before_the_proxy_is_asked(
    start_tinyproxy: StartProxy, connect_guard: list[str]
) -> None:
    tinyproxy = start_tinyproxy([443])
    for scheme in ("http", "https"):
        async with transport(tinyproxy.proxy(), "10.0.0.5") as client:
            result = await client.send(post(f"{scheme}://hooks.test/"), timeout=10)
        assert result.error_class is ErrorClass.BLOCKED, result.error
    assert connect_guard == []
    assert tinyproxy.requests() == []


async def test_a_no_proxy_host_is_called_directly(
    start_tinyproxy: StartProxy, serve: Serve, connect_guard: list[str]
) -> None:
    receiver = await serve()
    tinyproxy = start_tinyproxy([])
    async with transport(tinyproxy.proxy(), no_proxy=("hooks.test",)) as client:
        result = await client.send(post(f"http://hooks.test:{receiver.port}/"), timeout=10)
    assert result.ok, result.error
    assert result.headers["X-Seen-Via"] == ""
    assert connect_guard == ["127.0.0.1"]
    assert tinyproxy.requests() == []


async def test_a_proxy_that_is_down_is_a_connect_error(connect_guard: list[str]) -> None:
    port = _free_port(PROXY_HOST)  # nothing listens there
    proxy = Proxy(PROXY_HOST, port)
    for scheme in ("http", "https"):
        async with transport(proxy) as client:
            result = await client.send(post(f"{scheme}://hooks.test:8443/"), timeout=10)
        assert result.error_class is ErrorClass.CONNECT, result.error
    assert connect_guard == [PROXY_HOST, PROXY_HOST]


def test_a_v6_destination_is_bracketed_for_the_proxy() -> None:
    from docuhooks.delivery.http import Origin
    from docuhooks.delivery.transport import _absolute_form

    origin = Origin("http", "hooks.test", 8080, True, Proxy("p", 3128, "Basic abc"))
    data = b"POST /in?a=1 HTTP/1.1\r\nHost: hooks.test:8080\r\nContent-Length: 0\r\n\r\n"
    assert _absolute_form(data, origin, "2001:db8::7") == (
        b"POST http://[2001:db8::7]:8080/in?a=1 HTTP/1.1\r\nProxy-Authorization: Basic abc\r\n"
        b"Host: hooks.test:8080\r\nContent-Length: 0\r\n\r\n"
    )
    assert ipaddress.ip_address("2001:db8::7")  # the address form used above is valid


def test_through_the_proxy_under_uvloop(
    start_tinyproxy: StartProxy, test_ca: TrustedCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docuhooks serve` and `docuhooks worker` run on uvloop: its sockets, tunnels and TLS
    # over an opened socket must work the same.
    import uvloop

    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.cert_file))

    async def main() -> list[str | None]:
        runners: list[web.AppRunner] = []
        ports: list[int] = []
        for context in (None, test_ca.server_context):
            app = web.Application()
            app[SEEN] = []
            app.router.add_route("*", "/{tail:.*}", _echo)
            runner = web.AppRunner(app, shutdown_timeout=0.1)
            await runner.setup()
            ports.append(_free_port("127.0.0.1"))
            await web.TCPSite(runner, "127.0.0.1", ports[-1], ssl_context=context).start()
            runners.append(runner)
        tinyproxy = start_tinyproxy([ports[1]])
        try:
            async with transport(tinyproxy.proxy()) as client:
                plain = await client.send(post(f"http://hooks.test:{ports[0]}/"), timeout=10)
                secure = await client.send(post(f"https://hooks.test:{ports[1]}/"), timeout=10)
            assert "tinyproxy" in plain.headers.get("X-Seen-Via", "")
            return [None if r.ok else r.error for r in (plain, secure)]
        finally:
            for runner in runners:
                await runner.cleanup()

    assert uvloop.run(main()) == [None, None]


async def test_a_proxy_name_that_does_not_resolve_is_a_connect_error_naming_the_proxy(
    connect_guard: list[str],
) -> None:
    class NoSuchName:
        async def resolve(self, host: str, port: int) -> list[str]:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    routes = ProxyRoutes(https=Proxy("proxy.corp", 3128))
    async with HttpTransport(
        LOOPBACK, resolver=FixedResolver(["127.0.0.1"]), proxies=routes, proxy_resolver=NoSuchName()
    ) as client:
        result = await client.send(post("https://hooks.test:8443/"), timeout=10)
    assert result.error_class is ErrorClass.CONNECT, result.error
    assert result.error == (
        "could not connect: could not resolve the proxy proxy.corp:3128: "
        "[Errno -2] Name or service not known"
    )
    assert connect_guard == []
