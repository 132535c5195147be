"""The seam where webhook calls leave the process: one request in, one recorded outcome out.

:class:`Transport` is the interface the delivery worker and the interview engine call.
:class:`HttpTransport` is the real one (over :mod:`docuhooks.delivery.http`);
:class:`MockTransport` answers from a function, for tests that need a receiver without a
socket.

A transport never raises for anything the receiver or the network does: every outcome,
refusals by the address policy included, comes back as a :class:`TransportResult` with one
of the attempt log's error classes. What a status *means* (410 deactivates, 429 waits, 204 is
"no answers") is the caller's business; the transport only says whether it was 2xx.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from yarl import URL

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import connect, http
from docuhooks.delivery.address_policy import AddressPolicy, BlockedAddress, parse_ip_host
from docuhooks.delivery.proxy import Proxy, ProxyRoutes

__all__ = [
    "ErrorClass",
    "HttpTransport",
    "MockTransport",
    "PolicyResolver",
    "Resolver",
    "SentRequest",
    "Transport",
    "TransportResult",
]

#: How much of a response body is kept when the caller does not say (the attempt log's 16 KiB).
DEFAULT_MAX_BODY = 16 * 1024
#: How long one address may take to accept a connection unless the caller says.
DEFAULT_CONNECT_TIMEOUT = 5.0


class ErrorClass(StrEnum):
    """Why an attempt failed, as the attempt log records it."""

    TIMEOUT = "timeout"
    CONNECT = "connect"
    DNS = "dns"
    TLS = "tls"
    BLOCKED = "blocked"
    HTTP_STATUS = "http_status"
    INVALID_RESPONSE = "invalid_response"


@dataclass(frozen=True, slots=True)
class TransportResult:
    """What happened to one request. ``status`` is None when no response arrived."""

    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    body_truncated: bool = False
    duration_ms: float = 0.0
    error_class: ErrorClass | None = None
    error: str | None = None
    remote_ip: str | None = None
    #: False when no request went out (it could not be built: a secret that cannot be
    #: decrypted, say): the attempt says nothing of its destination.
    sent: bool = True

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @classmethod
    def response(
        cls,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        duration_ms: float = 0.0,
        remote_ip: str | None = None,
    ) -> TransportResult:
        """A result for a response that arrived; non-2xx statuses are ``http_status``."""
        headers = dict(headers or {})
        error_class, error = _status_error(status, headers)
        return cls(
            status=status,
            headers=headers,
            body=body,
            duration_ms=duration_ms,
            error_class=error_class,
            error=error,
            remote_ip=remote_ip,
        )

    @classmethod
    def failure(
        cls, error_class: ErrorClass, error: str, *, duration_ms: float = 0.0, sent: bool = True
    ) -> TransportResult:
        """A result for a request that got no response (`sent=False`: that never went out)."""
        return cls(
            status=None, duration_ms=duration_ms, error_class=error_class, error=error, sent=sent
        )


def _status_error(status: int, headers: dict[str, str]) -> tuple[ErrorClass | None, str | None]:
    if 200 <= status < 300:
        return None, None
    if 300 <= status < 400:
        location = _header(headers, "location")
        target = f" to {location}" if location else " without a Location"
        return ErrorClass.HTTP_STATUS, f"HTTP {status}: redirect{target}, not followed"
    if status < 200:
        return ErrorClass.INVALID_RESPONSE, f"HTTP {status}: unexpected informational status"
    return ErrorClass.HTTP_STATUS, f"HTTP {status}"


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


class Transport(ABC):
    """Sends one webhook request; implementations must not raise for network outcomes."""

    @abstractmethod
    async def send(
        self,
        request: OutboundRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - per webhook (timeoutSeconds), part of the contract
        verify_tls: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> TransportResult:
        """Send ``request`` and wait at most ``timeout`` seconds for the whole exchange.

        ``verify_tls=False`` is the webhook's ``acceptUntrustedSsl``. At most ``max_body``
        bytes of the response body are read; the rest is discarded, and the result says so.
        """

    async def close(self) -> None:  # noqa: B027 - a transport without resources needs nothing
        """Release pooled connections; the transport is unusable afterwards."""

    async def __aenter__(self) -> Transport:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Resolver(Protocol):
    """Looks a host name up: its addresses, as text, in the order to try them."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The system's resolver (``getaddrinfo``, on the loop's thread pool)."""

    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class PolicyResolver:
    """Resolves a host and returns only the addresses the policy allows.

    This is what pins the address: the transport connects to exactly the addresses this
    returns (and caches exactly those), so a name cannot be checked against one answer and
    then connected to another (DNS rebinding).
    """

    def __init__(self, policy: AddressPolicy, inner: Resolver | None = None) -> None:
        self._policy = policy
        self._inner: Resolver = inner or SystemResolver()

    async def resolve(self, host: str, port: int) -> list[str]:
        literal = parse_ip_host(host)
        if literal is not None:
            # An odd IPv4 spelling such as 0x7f.1 is an address to libc: it is judged as
            # one, and connected to as the address it means, never looked up.
            self._policy.check(literal)
            return [str(literal)]
        answers = await self._inner.resolve(host, port)
        allowed: list[str] = []
        refusals: list[str] = []
        for answer in answers:
            reason = self._policy.blocked_reason(answer)
            if reason is None:
                allowed.append(answer)
            else:
                refusals.append(reason)
        if not allowed:
            detail = "; ".join(dict.fromkeys(refusals)) or "no addresses"
            raise BlockedAddress(host, f"{host} resolves to {detail}")
        return allowed


class HttpTransport(Transport):
    """The real transport: pooled keep-alive connections (:mod:`docuhooks.delivery.http`),
    every address judged by the policy before anything connects to it.

    Each resolved address gets ``connect_timeout`` seconds to accept a connection (the
    call's own timeout still bounds everything), and the next one is tried alongside after
    ``happy_eyeballs_delay`` (see :mod:`docuhooks.delivery.connect`). With ``proxies``, calls
    go through a forward proxy, still only to the addresses the policy judged; the proxy's
    own name is looked up with ``proxy_resolver`` (the system's), and not judged.
    """

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        limit: int = 200,
        limit_per_host: int = 20,
        dns_cache_ttl: float = 10.0,
        keepalive_timeout: float = 30.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        happy_eyeballs_delay: float = connect.HAPPY_EYEBALLS_DELAY,
        proxies: ProxyRoutes | None = None,
        proxy_resolver: Resolver | None = None,
    ) -> None:
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")
        self.policy = policy
        self._resolver = PolicyResolver(policy, resolver)
        self._dns_cache_ttl = dns_cache_ttl
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._connect_timeout = connect_timeout
        self._delay = happy_eyeballs_delay
        self._proxies = proxies if proxies else None
        # The proxy decision per origin, made once: webhooks call the same few origins.
        self._routed = functools.lru_cache(maxsize=4096)(self._route)
        #: The proxies' own addresses: operator configuration, looked up but not judged.
        self._proxy_resolver: Resolver = proxy_resolver or SystemResolver()
        self._pool = http.ConnectionPool(
            limit=limit, limit_per_host=limit_per_host, keepalive_timeout=keepalive_timeout
        )
        #: Built on first use: loading the system's trust store takes tens of milliseconds.
        self._tls: dict[bool, ssl.SSLContext] = {}
        self._closed = False
        # The verdict on a literal host never changes for a frozen policy, and webhooks
        # call the same few hosts over and over: judge each one once.
        self._refuse_literal_host = functools.lru_cache(maxsize=4096)(self._judge_literal_host)

    async def send(
        self,
        request: OutboundRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - per webhook (timeoutSeconds), part of the contract
        verify_tls: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> TransportResult:
        if self._closed:
            raise RuntimeError("transport is closed")
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            target = _target(request.url, verify_tls)
            data = http.encode_request(
                request.method, target.path, target.host_header, request.headers, request.body
            )
        except (ValueError, TypeError) as exc:
            return TransportResult.failure(ErrorClass.CONNECT, f"invalid request: {exc}")
        refusal = self._refuse_literal_host(target.origin.host)
        if refusal is not None:
            return TransportResult.failure(ErrorClass.BLOCKED, refusal, duration_ms=elapsed())
        origin = target.origin if self._proxies is None else self._routed(target.origin)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            response = await self._exchange(origin, data, max_body, deadline)
        except Exception as exc:
            error_class, message = classify_exception(exc)
            return TransportResult.failure(error_class, message, duration_ms=elapsed())
        result = TransportResult.response(
            response.status,
            response.body,
            response.headers,
            duration_ms=elapsed(),
            remote_ip=response.remote_ip,
        )
        return replace(result, body_truncated=True) if response.truncated else result

    def _route(self, origin: http.Origin) -> http.Origin:
        if self._proxies is None:
            return origin
        proxy = self._proxies.for_destination(origin.scheme, origin.host, origin.port)
        return origin if proxy is None else replace(origin, proxy=proxy)

    async def _exchange(
        self, origin: http.Origin, data: bytes, max_body: int, deadline: float
    ) -> http.Response:
        """The exchange, all of it (waiting for a connection, resolving, connecting, the
        request and its response) done by ``deadline``."""
        retried = False
        absolute = origin.proxy is not None and origin.scheme == "http"
        while True:
            connection, reused = await self._pool.acquire(
                origin, lambda: self._connect(origin), deadline
            )
            payload = _absolute_form(data, origin, connection.remote_ip) if absolute else data
            try:
                response = await connection.exchange(payload, max_body, deadline)
            except http.Disconnected as exc:
                self._pool.discard(connection)
                if retried or not (reused and exc.before_response):
                    raise
                # The server closed this idle connection as the request went out: nothing
                # of it was answered, so it goes again, once.
                retried = True
                continue
            except BaseException:
                self._pool.discard(connection)  # mid-exchange: its state is unknown
                raise
            self._pool.release(connection)
            return response

    async def _connect(self, origin: http.Origin) -> http.Connection:
        """A new connection to one of the origin's judged addresses: the first to accept,
        directly or through the origin's proxy; then TLS to the webhook's host name."""
        addresses = connect.interleave(await self._resolve(origin.host, origin.port))
        sock, address = await self._open_socket(origin, addresses)
        tls = None
        if origin.scheme == "https":
            tls = self._tls.get(origin.verify_tls)
            if tls is None:
                tls = self._tls[origin.verify_tls] = http.tls_context(origin.verify_tls)
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: self._pool.connection(origin, address),
                sock=sock,
                ssl=tls,
                server_hostname=origin.host if tls is not None else None,
            )
        except BaseException:
            sock.close()
            raise
        return connection

    async def _open_socket(
        self, origin: http.Origin, addresses: list[str]
    ) -> tuple[socket.socket, str]:
        """A connected socket, and the judged address whose server is at its other end."""
        timeout, delay, proxy = self._connect_timeout, self._delay, origin.proxy
        if proxy is None:
            return await connect.first_connected(
                addresses, lambda a: connect.tcp_connect(a, origin.port, timeout), delay=delay
            )
        proxy_addresses = await self._proxy_addresses(proxy)
        if origin.scheme == "https":
            # A tunnel per attempt: the proxy tries the destination's addresses for us,
            # each in its own CONNECT, and the first tunnel open wins.
            return await connect.first_connected(
                addresses,
                lambda a: connect.tunnel(proxy, proxy_addresses, a, origin.port, timeout),
                delay=delay,
            )
        # Plain http: each request names the judged address in its request line.
        sock, _ = await connect.first_connected(
            proxy_addresses, lambda a: connect.tcp_connect(a, proxy.port, timeout), delay=delay
        )
        return sock, addresses[0]

    async def _proxy_addresses(self, proxy: Proxy) -> list[str]:
        literal = parse_ip_host(proxy.host)
        if literal is not None:
            return [str(literal)]
        try:
            found = await self._proxy_resolver.resolve(proxy.host, proxy.port)
        except OSError as exc:
            # Not the webhook's name that failed (`dns`): the proxy could not be reached.
            raise ConnectionError(f"could not resolve the proxy {proxy.address}: {exc}") from None
        return connect.interleave(found)

    async def _resolve(self, host: str, port: int) -> list[str]:
        key = (host, port)
        now = time.monotonic()
        cached = self._addresses.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        addresses = await self._resolver.resolve(host, port)
        if self._dns_cache_ttl > 0:
            if len(self._addresses) >= _MAX_CACHED_HOSTS:
                self._addresses.clear()
            self._addresses[key] = (now + self._dns_cache_ttl, addresses)
        return addresses

    def _judge_literal_host(self, raw_host: str) -> str | None:
        # Judged before any lookup, so that an address in an odd spelling is refused
        # without a connection and without asking DNS about it.
        literal = parse_ip_host(raw_host)
        if literal is not None:
            return self.policy.blocked_reason(literal)
        if ":" in raw_host or raw_host.replace(".", "").isdigit():
            # Looks like an address but is not one we can read: fail closed.
            return f"{raw_host} is not a valid IP address"
        return None

    async def close(self) -> None:
        self._closed = True
        await self._pool.close()


_MAX_CACHED_HOSTS = 4096


@dataclass(frozen=True, slots=True)
class _Target:
    origin: http.Origin
    #: The request target: path and query, as sent.
    path: str
    host_header: str


def _absolute_form(data: bytes, origin: http.Origin, address: str) -> bytes:
    """The request as a proxy takes it: the request line names the judged address (so the
    proxy connects to it, not to whatever the name resolves to where it stands), and the
    proxy's credentials follow it. ``Host`` still names the webhook's host."""
    line, _, rest = data.partition(b"\r\n")
    method, _, path_and_version = line.partition(b" ")
    authority = f"[{address}]" if ":" in address else address
    head = b"%s http://%s:%d%s\r\n" % (
        method,
        authority.encode("ascii"),
        origin.port,
        path_and_version,
    )
    proxy = origin.proxy
    if proxy is not None and proxy.authorization is not None:
        head += f"Proxy-Authorization: {proxy.authorization}\r\n".encode("latin-1")
    return head + rest


# A worker sends to the same few URLs over and over; reading each URL once, not per
# request, is measurable at thousands a second.
@functools.lru_cache(maxsize=4096)
def _cached_target(url: str, verify_tls: bool) -> _Target:
    parsed = URL(url)
    scheme = parsed.scheme
    host = parsed.raw_host
    if scheme not in ("http", "https") or not host or parsed.port is None:
        raise ValueError(f"not an absolute http(s) URL: {url}")
    if parsed.user is not None or parsed.password is not None:
        raise ValueError("credentials in the URL are not sent")
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if parsed.is_default_port() else f"{bracketed}:{parsed.port}"
    path = parsed.raw_path_qs or "/"
    if any(c in path for c in " \r\n\0"):
        raise ValueError("the URL's path holds a space or a line break")
    return _Target(http.Origin(scheme, host, parsed.port, verify_tls), path, host_header)


def _target(url: str, verify_tls: bool = True) -> _Target:
    """Where `url` goes. A GET webhook's URL carries its token in the query, a URL of its own
    for every request, so the URL is read, and kept, without its query, which is appended
    as it is when it is plain ASCII with nothing that could split the request line."""
    base, mark, query = url.partition("?")
    query = query.partition("#")[0]
    if not mark or "#" in base or not query.isascii() or any(c in query for c in " \r\n\0"):
        return _cached_target(url, verify_tls)  # read whole: yarl quotes what needs it
    target = _cached_target(base, verify_tls)
    if "?" in target.path:
        return _cached_target(url, verify_tls)
    return _Target(target.origin, f"{target.path}?{query}", target.host_header)


def classify_exception(exc: BaseException) -> tuple[ErrorClass, str]:
    """Map a failure of the exchange onto an attempt log error class and a readable message."""
    # Order matters: the ssl errors are OSErrors too.
    if isinstance(exc, BlockedAddress):
        return ErrorClass.BLOCKED, exc.reason
    if isinstance(exc, TimeoutError):
        return ErrorClass.TIMEOUT, "timed out" + (f": {exc}" if str(exc) else "")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ErrorClass.TLS, f"TLS certificate not trusted: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return ErrorClass.TLS, f"TLS handshake failed: {exc}"
    if isinstance(exc, socket.gaierror):
        return ErrorClass.DNS, f"could not resolve host: {exc}"
    if isinstance(exc, http.HttpError):
        return ErrorClass.INVALID_RESPONSE, f"invalid response: {exc}"
    if isinstance(exc, http.ConnectionStateError):
        return ErrorClass.CONNECT, f"internal error: {exc}"
    if isinstance(exc, ConnectionError | OSError):
        return ErrorClass.CONNECT, f"could not connect: {exc}"
    return ErrorClass.CONNECT, f"unexpected {type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One call a :class:`MockTransport` received, with the options it was given."""

    request: OutboundRequest
    timeout: float
    verify_tls: bool
    max_body: int


Handler = Callable[[OutboundRequest], TransportResult | Awaitable[TransportResult]]


class MockTransport(Transport):
    """Answers every request with ``handler(request)``, and remembers what it was sent.

    The handler returns a :class:`TransportResult` (``TransportResult.response(...)`` or
    ``TransportResult.failure(...)``), synchronously or as a coroutine. The body cap is
    applied as the real transport applies it.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.sent: list[SentRequest] = []
        self.closed = False

    async def send(
        self,
        request: OutboundRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - per webhook (timeoutSeconds), part of the contract
        verify_tls: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> TransportResult:
        if self.closed:
            raise RuntimeError("transport is closed")
        self.sent.append(SentRequest(request, timeout, verify_tls, max_body))
        outcome = self._handler(request)
        result = await outcome if inspect.isawaitable(outcome) else outcome
        if len(result.body) > max_body:
            result = replace(result, body=result.body[:max_body], body_truncated=True)
        return result

    async def close(self) -> None:
        self.closed = True
