"""The transport against raw aiohttp, posting the same body to a loopback receiver.

    .venv/bin/python bench/transport.py [--requests 5000] [--concurrency 50] [--rounds 3]

The receiver runs in its own process so it does not share the client's event loop. Both
clients pool their connections and run at the same concurrency, on uvloop as `docuhooks
serve` does; each round runs both, and the best round of each is reported, to keep
scheduler noise out of the ratio. Besides requests per second (which the receiver may
bound) it reports the client process's CPU time per request, which is what a webhook
sender pays for each call.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import time
from collections.abc import Awaitable, Callable

import aiohttp
import uvloop
from aiohttp import web

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.address_policy import AddressPolicy
from docuhooks.delivery.transport import HttpTransport

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


async def _run(
    send: Callable[[], Awaitable[bool]], requests: int, concurrency: int
) -> tuple[float, float]:
    """(requests per second, CPU µs per request)."""
    remaining = requests
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            if not await send():
                failures += 1

    cpu = os.times()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    used = os.times()
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    seconds = used.user - cpu.user + used.system - cpu.system
    return requests / elapsed, seconds / requests * 1e6


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
        transport = HttpTransport(
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
        best_raw = best_transport = (0.0, float("inf"))
        for _ in range(rounds):
            rate, cpu = await _run(send_raw, requests, concurrency)
            best_raw = (max(best_raw[0], rate), min(best_raw[1], cpu))
            rate, cpu = await _run(send_transport, requests, concurrency)
            best_transport = (max(best_transport[0], rate), min(best_transport[1], cpu))
        await raw.close()
        await transport.close()
    finally:
        server.terminate()
        server.join()

    print(f"{requests} POSTs of {len(BODY)} bytes, concurrency {concurrency}, best of {rounds}")
    print(f"{'client':<20}{'requests/s':>12}{'CPU µs/request':>16}")
    print(f"{'raw aiohttp':<20}{best_raw[0]:>12.0f}{best_raw[1]:>16.0f}")
    print(f"{'HttpTransport':<20}{best_transport[0]:>12.0f}{best_transport[1]:>16.0f}")
    ratio = best_transport[0] / best_raw[0]
    print(f"{'transport / raw':<20}{ratio:>12.2f}{best_transport[1] / best_raw[1]:>16.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    uvloop.run(main(options.requests, options.concurrency, options.rounds))
