"""Sign-in throttling: after repeated wrong passwords for one login name, or from one client
address, further attempts are refused for a while, so a password cannot be guessed at the
speed of the server. Kept per process (each process throttles on its own)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from docuhooks.errors import TooManyRequests

T = TypeVar("T")

#: Wrong passwords tolerated per key within the window.
MAX_FAILURES = 10
WINDOW_SECONDS = 15 * 60
#: Keys remembered at most: the oldest are forgotten first, so memory stays bounded.
MAX_KEYS = 100_000


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, keys: Iterable[str]) -> float | None:
        """Seconds until any of `keys` may try again, or None when none is throttled."""
        now = self._clock()
        waits = []
        for key in keys:
            recent = self._recent(key, now)
            if recent is not None and len(recent) >= self.max_failures:
                waits.append(recent[0] + self.window - now)
        return max(waits) if waits else None

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            recent = self._recent(key, now)
            if recent is None:
                if len(self._failures) >= MAX_KEYS:
                    self._failures.pop(next(iter(self._failures)))
                recent = self._failures[key] = deque(maxlen=self.max_failures)
            recent.append(now)

    def succeeded(self, login_key: str) -> None:
        """A right password clears its account's count (not its address's: one good account
        must not reset the count of guesses at others from the same place)."""
        self._failures.pop(login_key, None)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        recent = self._failures.get(key)
        if recent is None:
            return None
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if not recent:
            del self._failures[key]
            return None
        return recent


def login_keys(login_name: str, client: str | None) -> list[str]:
    """Throttle by the account tried and by where the attempts come from."""
    keys = [f"login:{login_name.strip().lower()}"]
    if client:
        keys.append(f"client:{client}")
    return keys


async def guarded(
    throttle: LoginThrottle,
    login_name: str,
    client: str | None,
    attempt: Callable[[], Awaitable[T | None]],
) -> T | None:
    """Run a sign-in `attempt` unless its account or address is throttled (TooManyRequests),
    and count its outcome."""
    keys = login_keys(login_name, client)
    wait = throttle.retry_after(keys)
    if wait is not None:
        minutes = max(1, math.ceil(wait / 60))
        raise TooManyRequests(
            f"too many wrong passwords for this account or from this address; try again in "
            f"{minutes} minute(s)",
            retry_after=wait,
        )
    result = await attempt()
    if result is None:
        throttle.failed(keys)
    else:
        throttle.succeeded(keys[0])
    return result
