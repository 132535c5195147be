"""The per-site limit on heavy answer work (`answers.offload`): at most `size` operations of
one site at a time, the others waiting in order in that site's queue; other sites never wait
for it; a request holding its site's slot does not wait for it again."""

from __future__ import annotations

import asyncio
import threading

import pytest

from docuhooks.answers.offload import INLINE_BYTES, LIMITER, SiteLimiter, heavy, off_loop

LARGE = INLINE_BYTES + 1


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_site_runs_at_most_size_operations_and_the_rest_wait_in_order() -> None:
    limiter = SiteLimiter()
    release = asyncio.Event()
    entered: list[int] = []

    async def operation(number: int) -> None:
        async with limiter.slot("a", 2):
            entered.append(number)
            await release.wait()

    tasks = [asyncio.create_task(operation(n)) for n in range(6)]
    await settle()
    assert entered == [0, 1]
    assert (limiter.running("a"), limiter.waiting("a")) == (2, 4)
    release.set()
    await asyncio.gather(*tasks)
    assert entered == [0, 1, 2, 3, 4, 5]
    # An idle site costs nothing.
    assert (limiter.sites(), limiter.running("a"), limiter.waiting("a")) == (0, 0, 0)


async def test_another_site_does_not_wait_for_a_busy_one() -> None:
    limiter = SiteLimiter()
    release = asyncio.Event()

    async def busy() -> None:
        async with limiter.slot("a", 1):
            await release.wait()

    tasks = [asyncio.create_task(busy()) for _ in range(3)]
    await settle()
    assert limiter.waiting("a") == 2
    async with limiter.slot("b", 1):
        assert limiter.running("b") == 1 and limiter.running("a") == 1
    release.set()
    await asyncio.gather(*tasks)
    assert limiter.sites() == 0


async def test_a_cancelled_waiter_leaves_the_queue_and_the_slot_count_intact() -> None:
    limiter = SiteLimiter()
    release = asyncio.Event()

    async def hold() -> None:
        async with limiter.slot("a", 1):
            await release.wait()

    holder = asyncio.create_task(hold())
    await settle()
    waiter = asyncio.create_task(hold())
    await settle()
    assert limiter.waiting("a") == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (limiter.running("a"), limiter.waiting("a")) == (1, 0)
    release.set()
    await holder
    assert limiter.sites() == 0
    # The site's slots work again afterwards.
    async with limiter.slot("a", 1):
        assert limiter.running("a") == 1


async def test_off_loop_holds_a_slot_of_its_site_only_for_large_work() -> None:
    seen: list[tuple[int, str]] = []

    def work(tag: str) -> str:
        seen.append((LIMITER.running("site"), threading.current_thread().name))
        return tag

    assert await off_loop(10, 2, work, "small", site="site") == "small"
    assert await off_loop(LARGE, 2, work, "large", site="site") == "large"
    assert seen[0] == (0, threading.current_thread().name)
    assert seen[1][0] == 1 and seen[1][1].startswith("answer-parse")
    assert LIMITER.sites() == 0


async def test_heavy_holds_one_slot_for_every_step_inside_it() -> None:
    """A request that holds its site's only slot runs its steps under it, instead of waiting
    for itself; another request of the site waits for the whole of it."""
    order: list[str] = []
    first_inside = asyncio.Event()
    go_on = asyncio.Event()

    async def request(tag: str) -> None:
        async with heavy("site", 1):
            order.append(f"{tag} in")
            first_inside.set()
            await go_on.wait()
            await off_loop(LARGE, 1, order.append, f"{tag} step", site="site")
            order.append(f"{tag} out")

    first = asyncio.create_task(request("first"))
    await first_inside.wait()
    second = asyncio.create_task(request("second"))
    await settle()
    assert LIMITER.waiting("site") == 1
    go_on.set()
    await asyncio.gather(first, second)
    assert order == [
        "first in",
        "first step",
        "first out",
        "second in",
        "second step",
        "second out",
    ]
    assert LIMITER.sites() == 0
