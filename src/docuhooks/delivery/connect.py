"""Opening the socket a webhook call runs over: to one of the judged addresses, directly or
through a proxy's CONNECT tunnel.

A name often resolves to several addresses, and one of them may be unreachable in the worst
way: dropping packets, so that a connection attempt waits out its whole timeout. So each
address gets its own connect timeout, and the next address is tried after a short delay
without abandoning the first (RFC 8305, "happy eyeballs"): whichever connects first is used
and the others are closed. IPv6 and IPv4 addresses take turns, so that a broken family costs
one delay, not a timeout per address.

Nothing here judges an address: the caller passes only addresses the policy allowed.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from docuhooks.delivery.proxy import Proxy

__all__ = [
    "HAPPY_EYEBALLS_DELAY",
    "ConnectTimedOut",
    "ProxyRefused",
    "first_connected",
    "interleave",
    "tcp_connect",
    "tunnel",
]

#: How long an attempt has before the next address is tried alongside it (RFC 8305's
#: recommended "Connection Attempt Delay").
HAPPY_EYEBALLS_DELAY = 0.25

#: A CONNECT answer longer than this is not a proxy talking.
_MAX_PROXY_HEAD = 64 * 1024
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: ([^\r\n]*))?\r\n")


class ConnectTimedOut(ConnectionError):
    """One address did not accept a connection within the connect timeout."""


class ProxyRefused(ConnectionError):
    """The proxy did not open a tunnel: it answered CONNECT with a non-2xx status, or with
    something that is not HTTP."""


def interleave(addresses: Sequence[str]) -> list[str]:
    """The addresses in the order to try them: the resolver's order within each family, the
    families alternating, starting with the family of the resolver's first answer."""
    if len(addresses) < 2:
        return list(addresses)
    first_v6 = ":" in addresses[0]
    same = [a for a in addresses if (":" in a) == first_v6]
    other = [a for a in addresses if (":" in a) != first_v6]
    ordered: list[str] = []
    for index in range(max(len(same), len(other))):
        ordered.extend(family[index] for family in (same, other) if index < len(family))
    return ordered


async def first_connected(
    candidates: Sequence[str],
    attempt: Callable[[str], Coroutine[Any, Any, socket.socket]],
    *,
    delay: float = HAPPY_EYEBALLS_DELAY,
) -> tuple[socket.socket, str]:
    """Run ``attempt`` on each candidate in turn, starting the next one when the last has
    neither connected nor failed after ``delay`` seconds (or at once when it failed). The
    first socket to connect wins, with the candidate it came from; every other attempt is
    cancelled, and a socket one of them opens regardless is closed. When all fail, the
    failure says why for each distinct reason."""
    if not candidates:
        raise ConnectionError("no address to connect to")
    loop = asyncio.get_running_loop()
    waiting = list(candidates)
    running: dict[asyncio.Task[socket.socket], str] = {}
    errors: list[BaseException] = []
    try:
        while waiting or running:
            if waiting:
                candidate = waiting.pop(0)
                running[loop.create_task(attempt(candidate))] = candidate
            done, _ = await asyncio.wait(
                running,
                timeout=delay if waiting else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            connected: list[tuple[socket.socket, str]] = []
            for task in sorted(done, key=lambda t: candidates.index(running[t])):
                candidate = running.pop(task)
                error = task.exception()
                if error is None:
                    connected.append((task.result(), candidate))
                else:
                    errors.append(error)
            if connected:
                for extra, _ in connected[1:]:
                    extra.close()
                return connected[0]
    finally:
        for task in running:
            task.cancel()
            task.add_done_callback(_close_if_connected)
    raise _failure(errors)


def _close_if_connected(task: asyncio.Task[socket.socket]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


def _failure(errors: list[BaseException]) -> BaseException:
    messages = list(dict.fromkeys(str(error) or type(error).__name__ for error in errors))
    if len(messages) == 1:
        return errors[0]
    return ConnectionError("; ".join(messages))


def _where(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


async def tcp_connect(address: str, port: int, limit: float) -> socket.socket:
    """A TCP socket connected to ``address`` (an IP address, never a name), or
    :class:`ConnectTimedOut` after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(limit):
            await loop.sock_connect(sock, (address, port))
    except TimeoutError:
        sock.close()
        raise ConnectTimedOut(
            f"connecting to {_where(address, port)} timed out after {limit:g} s"
        ) from None
    except BaseException:
        sock.close()
        raise
    return sock


async def tunnel(
    proxy: Proxy,
    proxy_addresses: Sequence[str],
    address: str,
    port: int,
    limit: float,
    *,
    delay: float = HAPPY_EYEBALLS_DELAY,
) -> socket.socket:
    """A socket to the proxy on which ``CONNECT address:port`` was answered 2xx: what is
    written to it next reaches ``address``. ``limit`` (seconds) covers reaching the proxy and its
    answer (the proxy's own connection to the destination happens in between)."""
    destination = _where(address, port)
    request = f"CONNECT {destination} HTTP/1.1\r\nHost: {destination}\r\n"
    if proxy.authorization is not None:
        request += f"Proxy-Authorization: {proxy.authorization}\r\n"
    loop = asyncio.get_running_loop()
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(limit):
            sock, _ = await first_connected(
                proxy_addresses, lambda a: tcp_connect(a, proxy.port, limit), delay=delay
            )
            await loop.sock_sendall(sock, (request + "\r\n").encode("latin-1"))
            head, rest = await _read_head(loop, sock, proxy)
        problem = _refusal(head, rest)
        if problem is not None:
            raise ProxyRefused(
                f"proxy {proxy.address} answered CONNECT {destination} with {problem}"
            )
    except TimeoutError:
        if sock is not None:
            sock.close()
        raise ConnectTimedOut(
            f"proxy {proxy.address} did not open a tunnel to {destination} within {limit:g} s"
        ) from None
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    return sock


def _refusal(head: bytes, rest: bytes) -> str | None:
    """What is wrong with the proxy's answer to CONNECT, or None for a tunnel."""
    status = _STATUS_LINE.match(head)
    if status is None:
        return "something that is not HTTP"
    if not 200 <= int(status[1]) < 300:
        return f"{int(status[1])} {(status[2] or b'').decode('latin-1').strip()}".strip()
    if rest:
        return "bytes after its 2xx, before the tunnel was used"
    return None


async def _read_head(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, proxy: Proxy
) -> tuple[bytes, bytes]:
    """The proxy's answer up to its blank line, and whatever came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_PROXY_HEAD:
            raise ProxyRefused(f"proxy {proxy.address} answered CONNECT with an endless head")
        chunk = await loop.sock_recv(sock, 4096)
        if not chunk:
            raise ProxyRefused(f"proxy {proxy.address} closed the connection instead of a tunnel")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head + b"\r\n", rest
