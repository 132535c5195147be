"""What the transport tests share: the guard that keeps every connection on loopback, and
the two transports the suite runs on (ours, and the aiohttp reference).

Import the fixtures into a test module to use them there (``connect_guard`` is autouse).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest
from tests.delivery.aiohttp_transport import AiohttpTransport

from docuhooks.delivery.transport import HttpTransport, Transport

#: The transports the suite runs on: ours, and the aiohttp reference.
TRANSPORTS: dict[str, Callable[..., Transport]] = {
    "ours": HttpTransport,
    "aiohttp": AiohttpTransport,
}
MakeTransport = Callable[..., Transport]


def ours_only(reason: str) -> pytest.MarkDecorator:
    """Run a test on our transport alone: ``reason`` says how the reference legitimately
    differs (kept in the source, where a reader of the test sees it)."""
    assert reason
    return pytest.mark.parametrize("transport_kind", ["ours"])


@pytest.fixture(params=list(TRANSPORTS))
def transport_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_transport(transport_kind: str) -> MakeTransport:
    """Builds the transport under test: ``make_transport(policy, resolver=..., ...)``."""
    return TRANSPORTS[transport_kind]


# --- guard: nothing leaves loopback -----------------------------------------------------


@pytest.fixture(autouse=True)
def connect_guard(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every address the event loop connects to; refuses non-loopback outright."""
    attempts: list[str] = []
    # loop.create_connection connects with loop.sock_connect.
    loop_class = asyncio.selector_events.BaseSelectorEventLoop
    original = loop_class.sock_connect

    async def guarded(
        self: asyncio.selector_events.BaseSelectorEventLoop, sock: socket.socket, address: Any
    ) -> None:
        host = str(address[0])
        attempts.append(host)
        if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            raise AssertionError(f"test tried to connect to {host}")
        await original(self, sock, address)

    monkeypatch.setattr(loop_class, "sock_connect", guarded)
    return attempts
