"""The worker's alarm: a ring wakes one wait, whether it comes before or during it."""

import asyncio
import threading

from docuhooks.delivery.wakeup import Alarm


async def test_a_ring_before_the_wait_ends_it_at_once_and_only_once() -> None:
    alarm = Alarm()
    alarm.ring()
    assert await alarm.wait(5.0) is True
    assert await alarm.wait(0.01) is False


async def test_take_reports_a_ring_and_quiets_the_alarm() -> None:
    alarm = Alarm()
    assert alarm.take() is False
    alarm.ring()
    alarm.ring()
    assert alarm.take() is True
    assert alarm.take() is False
    assert await alarm.wait(0.01) is False


async def test_a_ring_from_another_thread_wakes_the_wait() -> None:
    alarm = Alarm()
    waiting = asyncio.create_task(alarm.wait(5.0))
    await asyncio.sleep(0)
    threading.Thread(target=alarm.ring).start()
    assert await asyncio.wait_for(waiting, 2.0) is True
