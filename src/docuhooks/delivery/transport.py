"""The seam where webhook calls leave the process: one request in, one recorded outcome out.

:class:`Transport` is the interface the delivery worker and the interview engine call.
:class:`AiohttpTransport` is the real one; :class:`MockTransport` answers from a function,
for tests that need a receiver without a socket.

A transport never raises for anything the receiver or the network does: every outcome,
refusals by the address policy included, comes back as a :class:`TransportResult` with one
of the error classes of SPEC §7.3. What a status *means* (410 deactivates, 429 waits, 204 is
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
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.address_policy import AddressPolicy, BlockedAddress, parse_ip_host

__all__ = [
    "AiohttpTransport",
    "ErrorClass",
    "MockTransport",
    "PolicyResolver",
    "SentRequest",
    "Transport",
    "TransportResult",
]

#: How much of a response body is kept when the caller does not say (SPEC §7.3: 16 KiB).
DEFAULT_MAX_BODY = 16 * 1024
_READ_CHUNK = 64 * 1024


class ErrorClass(StrEnum):
    """Why an attempt failed, as the attempt log records it (SPEC §7.3)."""

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
        cls, error_class: ErrorClass, error: str, *, duration_ms: float = 0.0
    ) -> TransportResult:
        """A result for a request that got no response."""
        return cls(status=None, duration_ms=duration_ms, error_class=error_class, error=error)


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


class PolicyResolver(AbstractResolver):
    """Resolves a host and returns only the addresses the policy allows.

    This is what pins the address: aiohttp's connector connects to exactly the addresses a
    resolver returns (and caches exactly those for ``ttl_dns_cache``), so a name cannot be
    checked against one answer and then connected to another (DNS rebinding).
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner: AbstractResolver = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        literal = parse_ip_host(host)
        if literal is not None:
            # An odd IPv4 spelling such as 0x7f.1 reaches here as a "name"; libc would
            # read it as an address, so it is judged as one and never looked up.
            self._policy.check(literal)
            return [_resolve_result(host, str(literal), port)]
        answers = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for answer in answers:
            reason = self._policy.blocked_reason(answer["host"])
            if reason is None:
                allowed.append(answer)
            else:
                refusals.append(reason)
        if not allowed:
            detail = "; ".join(dict.fromkeys(refusals)) or "no addresses"
            raise BlockedAddress(host, f"{host} resolves to {detail}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _resolve_result(hostname: str, ip: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return {
        "hostname": hostname,
        "host": ip,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": socket.AI_NUMERICHOST,
    }


class AiohttpTransport(Transport):
    """The real transport: one pooled aiohttp session, the address policy in its resolver."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: AbstractResolver | None = None,
        limit: int = 200,
        limit_per_host: int = 20,
        dns_cache_ttl: int = 10,
        keepalive_timeout: float = 30.0,
    ) -> None:
        self.policy = policy
        self._resolver = PolicyResolver(policy, resolver)
        self._connector_options: dict[str, Any] = {
            "limit": limit,
            "limit_per_host": limit_per_host,
            "ttl_dns_cache": dns_cache_ttl,
            "keepalive_timeout": keepalive_timeout,
        }
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        # The verdict on a literal host never changes for a frozen policy, and webhooks
        # call the same few hosts over and over: judge each one once.
        self._refuse_literal_host = functools.lru_cache(maxsize=4096)(self._judge_literal_host)

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=self._resolver, **self._connector_options)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # Proxy settings from the environment would connect somewhere the policy
                # never saw, and cookies set by one receiver must not reach another.
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self._session

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
            url = _parse_url(request.url)
        except (ValueError, TypeError) as exc:
            return TransportResult.failure(ErrorClass.CONNECT, f"invalid URL: {exc}")
        if url.scheme not in ("http", "https") or not url.raw_host:
            return TransportResult.failure(
                ErrorClass.CONNECT, f"not an absolute http(s) URL: {request.url}"
            )
        refusal = self._refuse_literal_host(url.raw_host)
        if refusal is not None:
            return TransportResult.failure(ErrorClass.BLOCKED, refusal, duration_ms=elapsed())

        try:
            async with self._get_session().request(
                request.method,
                url,
                headers=request.headers,
                data=request.body,
                allow_redirects=False,
                timeout=_timeout(timeout),
                ssl=verify_tls,
            ) as response:
                remote_ip = _peer_ip(response)
                body, truncated = await _read_capped(response, max_body)
                headers = _flatten(response.headers)
                status = response.status
                if truncated:
                    # Unread bytes are still on the wire; the connection cannot be reused.
                    response.close()
        except BlockedAddress as exc:
            return TransportResult.failure(ErrorClass.BLOCKED, exc.reason, duration_ms=elapsed())
        except Exception as exc:
            error_class, message = classify_exception(exc)
            return TransportResult.failure(error_class, message, duration_ms=elapsed())

        result = TransportResult.response(
            status, body, headers, duration_ms=elapsed(), remote_ip=remote_ip
        )
        return replace(result, body_truncated=truncated) if truncated else result

    def _judge_literal_host(self, raw_host: str) -> str | None:
        # aiohttp hands IP literals straight to the socket without asking the resolver, so
        # they are judged here, before any connection exists. Names go to PolicyResolver.
        literal = parse_ip_host(raw_host)
        if literal is not None:
            return self.policy.blocked_reason(literal)
        if ":" in raw_host or raw_host.replace(".", "").isdigit():
            # Looks like an address to aiohttp but is not one we can read: fail closed.
            return f"{raw_host} is not a valid IP address"
        return None

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


# A worker sends to the same few URLs with the same few timeouts over and over; parsing the
# URL and building the timeout once each, not per request, is measurable at thousands a second.
@functools.lru_cache(maxsize=4096)
def _parse_url(url: str) -> URL:
    return URL(url)


@functools.lru_cache(maxsize=64)
def _timeout(total: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=total)


async def _read_capped(response: aiohttp.ClientResponse, max_body: int) -> tuple[bytes, bool]:
    """Read at most ``max_body`` bytes; report whether the body was longer."""
    chunks: list[bytes] = []
    size = 0
    # One byte past the cap is enough to know the body was cut.
    while size <= max_body:
        chunk = await response.content.read(min(_READ_CHUNK, max_body + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    return body[:max_body], size > max_body


def _peer_ip(response: aiohttp.ClientResponse) -> str | None:
    # A small body arrives with the headers and aiohttp hands the connection back to the
    # pool before we see the response, so `response.connection` is often None already; the
    # protocol (private, hence getattr) still holds the socket. Informational only.
    protocol = getattr(response, "_protocol", None)
    transport = getattr(protocol, "transport", None)
    if transport is None and response.connection is not None:
        transport = response.connection.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


def _flatten(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in headers.items():
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


def classify_exception(exc: BaseException) -> tuple[ErrorClass, str]:
    """Map an aiohttp/asyncio failure onto a §7.3 error class and a readable message."""
    # Order matters: several aiohttp errors inherit from more than one of these.
    if isinstance(exc, BlockedAddress):
        return ErrorClass.BLOCKED, exc.reason
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return ErrorClass.TIMEOUT, "timed out" + (f": {exc}" if str(exc) else "")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return ErrorClass.TLS, f"TLS certificate not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return ErrorClass.TLS, f"TLS handshake failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorClass.DNS, f"could not resolve host: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorClass.CONNECT, f"could not connect: {exc.os_error}"
    if isinstance(exc, aiohttp.InvalidURL):
        return ErrorClass.CONNECT, f"invalid URL: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return ErrorClass.INVALID_RESPONSE, f"invalid response: {exc}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorClass.INVALID_RESPONSE, "server closed the connection without a response"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ErrorClass.CONNECT, f"connection failed: {exc}"
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
