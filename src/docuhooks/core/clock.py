"""The one clock seam: everything that reads the time asks a `Clock`.

The application's clock is `AppContext.clock` (a `SystemClock`); the worker, the login
throttle and the services below the context read it through their context or take one as
an argument, and a service that receives only a connection takes the time as a `now`
argument from its caller. Tests put a `FakeClock` there and move time without sleeping.

Nothing else under `docuhooks` reads the wall clock (`tests/core/test_clock_seam.py` checks
it). Monotonic timers that measure how long a real call took, or bound a wait on real I/O
(`time.perf_counter`, `loop.time()`), are the exception: a `FakeClock` cannot make a socket
answer sooner.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "utcnow"]


def utcnow() -> datetime:
    """Aware UTC wall-clock time: `SystemClock.now`, and for tests and scripts."""
    return datetime.now(UTC)


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC wall-clock time: for timestamps and scheduling."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for durations and deadlines."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_EPOCH_FOR_TESTS = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when told to; ``sleep`` moves it instead of waiting."""

    def __init__(self, start: datetime = _EPOCH_FOR_TESTS) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._monotonic = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, by: float | timedelta) -> None:
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        if seconds < 0:
            raise ValueError("time does not go back")
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self.advance(moment - self._now)

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        # Yield once so other tasks run, as a real sleep would let them.
        await asyncio.sleep(0)
