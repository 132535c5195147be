"""How much the transport costs over raw aiohttp, posting the same body to a loopback receiver.

    .venv/bin/python bench/transport.py [--requests 5000] [--concurrency 50] [--rounds 3]

The receiver runs in its own process so it does not share the client's event loop. Both
clients use one pooled session and the same concurrency; each round runs both, and the best
round of each is reported, to keep scheduler noise out of the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.address_policy import AddressPolicy
from docuhooks.delivery.transport import AiohttpTransport

BODY = b"token=" + b"x" * 1200  # about the size of a signed notification


def _receiver(port: int) -> None:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_until_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return
    raise RuntimeError("receiver did not start")


async def _run(send: Callable[[], Awaitable[bool]], requests: int, concurrency: int) -> float:
    remaining = requests
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            if not await send():
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return requests / elapsed


async def main(requests: int, concurrency: int, rounds: int) -> None:
    port = _free_port()
    server = multiprocessing.Process(target=_receiver, args=(port,), daemon=True)
    server.start()
    try:
        await _wait_until_listening(port)
        url = f"http://127.0.0.1:{port}/hook"
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        connector = aiohttp.TCPConnector(limit=200, limit_per_host=concurrency)
        raw = aiohttp.ClientSession(connector=connector)
        transport = AiohttpTransport(
            AddressPolicy.from_setting("127.0.0.0/8"), limit_per_host=concurrency
        )
        request = OutboundRequest(method="POST", url=url, headers=headers, body=BODY)

        async def send_raw() -> bool:
            async with raw.post(
                url,
                data=BODY,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=15),
            ) as response:
                await response.read()
                return response.status == 204

        async def send_transport() -> bool:
            result = await transport.send(request, timeout=15)
            return result.ok

        # Warm both pools so the first round does not pay for connection setup.
        await _run(send_raw, concurrency * 2, concurrency)
        await _run(send_transport, concurrency * 2, concurrency)
        best_raw = best_transport = 0.0
        for _ in range(rounds):
            best_raw = max(best_raw, await _run(send_raw, requests, concurrency))
            best_transport = max(best_transport, await _run(send_transport, requests, concurrency))
        await raw.close()
        await transport.close()
    finally:
        server.terminate()
        server.join()

    print(f"{requests} POSTs of {len(BODY)} bytes, concurrency {concurrency}, best of {rounds}")
    print(f"{'client':<20}{'requests/s':>12}")
    print(f"{'raw aiohttp':<20}{best_raw:>12.0f}")
    print(f"{'AiohttpTransport':<20}{best_transport:>12.0f}")
    print(f"{'ratio':<20}{best_transport / best_raw:>12.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.requests, options.concurrency, options.rounds))
