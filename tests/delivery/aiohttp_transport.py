"""A reference :class:`Transport` on aiohttp, the maintained client our own HTTP/1.1 client
(:mod:`docuhooks.delivery.http`) replaced for its CPU cost per call.

The transport tests run against both, so that what ours does is held to what a maintained
library does with the same servers. It honours the same contract (never raises for network
outcomes, classifies failures the same way, caps the body, follows no redirect) and the same
address policy: aiohttp asks a custom resolver for every name, so the policy's
:class:`PolicyResolver` is that resolver, and literal hosts (which aiohttp does not resolve)
are judged before the call, as ours judges them.

It lives with the tests: the product ships one transport, and this one exists to check it.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import http
from docuhooks.delivery.address_policy import AddressPolicy, parse_ip_host
from docuhooks.delivery.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BODY,
    ErrorClass,
    PolicyResolver,
    Resolver,
    Transport,
    TransportResult,
    classify_exception,
)


class _PolicyResolver(AbstractResolver):
    """aiohttp's resolver interface over the policy's: only judged addresses come back."""

    def __init__(self, resolver: PolicyResolver) -> None:
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await self._resolver.resolve(host, port)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


class AiohttpTransport(Transport):
    """The reference transport: one aiohttp session, its connector pooling like ours."""

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
    ) -> None:
        self.policy = policy
        self._resolver = _PolicyResolver(PolicyResolver(policy, resolver))
        self._options: dict[str, Any] = {
            "limit": limit,
            "limit_per_host": limit_per_host,
            "use_dns_cache": dns_cache_ttl > 0,
            "ttl_dns_cache": dns_cache_ttl or None,
            "keepalive_timeout": keepalive_timeout,
        }
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a connector needs the running loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=self._resolver, **self._options)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        return self._session

    async def send(
        self,
        request: OutboundRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - the Transport contract
        verify_tls: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> TransportResult:
        if self._closed:
            raise RuntimeError("transport is closed")
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000.0

        try:
            url = URL(request.url)
            host = url.raw_host or ""
        except ValueError as exc:
            return TransportResult.failure(ErrorClass.CONNECT, f"invalid request: {exc}")
        refusal = self._judge_literal_host(host)
        if refusal is not None:
            return TransportResult.failure(ErrorClass.BLOCKED, refusal, duration_ms=elapsed())
        headers = dict(request.headers)
        if not any(name.lower() == "accept-encoding" for name in headers):
            headers["Accept-Encoding"] = "identity"  # as ours asks
        try:
            status, response_headers, body, truncated, remote_ip = await self._exchange(
                request, headers, timeout, verify_tls, max_body
            )
        except Exception as exc:
            error_class, message = _classify(exc)
            return TransportResult.failure(error_class, message, duration_ms=elapsed())
        result = TransportResult.response(
            status, body, response_headers, duration_ms=elapsed(), remote_ip=remote_ip
        )
        return replace(result, body_truncated=True) if truncated else result

    async def _exchange(
        self,
        request: OutboundRequest,
        headers: dict[str, str],
        timeout: float,  # noqa: ASYNC109 - the Transport contract
        verify_tls: bool,
        max_body: int,
    ) -> tuple[int, dict[str, str], bytes, bool, str | None]:
        limits = aiohttp.ClientTimeout(total=timeout, sock_connect=self._connect_timeout)
        async with self._client().request(
            request.method,
            request.url,
            data=request.body,
            headers=headers,
            allow_redirects=False,
            ssl=verify_tls,  # True: the default checks; False: none
            timeout=limits,
            skip_auto_headers=("User-Agent", "Accept"),
        ) as response:
            # The connection may already be back in the pool (a small body arrives with the
            # head); its protocol still knows the peer. Private, but this is a test helper.
            protocol = response._protocol
            peer = protocol.transport if protocol is not None else None
            peername = peer.get_extra_info("peername") if peer is not None else None
            chunks: list[bytes] = []
            size = 0
            while size <= max_body:
                chunk = await response.content.read(max_body + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            body = b"".join(chunks)
            joined: dict[str, str] = {}
            for raw_name, raw_value in response.raw_headers:
                name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
                joined[name] = f"{joined[name]}, {value}" if name in joined else value
            return (
                response.status,
                joined,
                body[:max_body],
                size > max_body,
                str(peername[0]) if peername else None,
            )

    def _judge_literal_host(self, raw_host: str) -> str | None:
        literal = parse_ip_host(raw_host)
        if literal is not None:
            return self.policy.blocked_reason(literal)
        if ":" in raw_host or raw_host.replace(".", "").isdigit():
            return f"{raw_host} is not a valid IP address"
        return None

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None


def _classify(exc: BaseException) -> tuple[ErrorClass, str]:
    """aiohttp's exceptions onto the transport's error classes."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return classify_exception(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientSSLError):
        return ErrorClass.TLS, f"TLS handshake failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return classify_exception(exc.os_error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return classify_exception(exc.os_error)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # Its connect timeout (sock_connect), not the call's: a failure to connect, as ours
        # reports an address that did not accept within its connect timeout.
        return ErrorClass.CONNECT, f"could not connect: {exc}"
    if isinstance(exc, asyncio.TimeoutError):
        return ErrorClass.TIMEOUT, f"timed out: {exc}" if str(exc) else "timed out"
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
    ):
        return ErrorClass.INVALID_RESPONSE, f"invalid response: {exc}"
    if isinstance(exc, aiohttp.ClientOSError):
        return ErrorClass.CONNECT, f"could not connect: {exc}"
    if isinstance(exc, ValueError | aiohttp.InvalidUrlClientError):
        return ErrorClass.CONNECT, f"invalid request: {exc}"
    if isinstance(exc, http.HttpError):
        return ErrorClass.INVALID_RESPONSE, f"invalid response: {exc}"
    return classify_exception(exc)
