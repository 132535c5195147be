"""When to try a notification again, when to give up, and when to suspend.

Everything here is pure: the time comes in as arguments, read from the injected
`core.clock.Clock`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = [
    "DEFAULT_DELAYS",
    "MAX_RETRY_AFTER",
    "RetrySchedule",
    "parse_retry_after",
    "should_suspend",
]

#: Seconds to wait before each attempt: the first at once, then after each failure.
DEFAULT_DELAYS: tuple[float, ...] = (0, 10, 60, 300, 1800, 7200, 21600, 43200, 86400)
#: The longest a receiver's ``Retry-After`` may hold a delivery back.
MAX_RETRY_AFTER: float = 24 * 3600.0

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """The gaps between attempts; ``delays[n]`` is the wait before attempt ``n + 1``."""

    delays: tuple[float, ...] = DEFAULT_DELAYS
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not self.delays:
            raise ValueError("a retry schedule needs at least one attempt")
        if any(d < 0 for d in self.delays):
            raise ValueError("retry delays cannot be negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be a fraction in [0, 1)")

    @classmethod
    def from_setting(cls, text: str, *, jitter: float = 0.2) -> RetrySchedule:
        """Parse ``"0,10s,1m,5m,30m,2h,6h,12h,24h"``; a bare number is seconds."""
        delays: list[float] = []
        for position, raw in enumerate(text.split(","), start=1):
            entry = raw.strip().lower()
            match = _DURATION.fullmatch(entry)
            if match is None:
                raise ValueError(
                    f"retry schedule entry {position} ({raw.strip()!r}): expected a number "
                    "with an optional unit s, m, h or d, e.g. '10s' or '2h'"
                )
            delays.append(float(match[1]) * _UNITS[match[2]])
        return cls(delays=tuple(delays), jitter=jitter)

    @property
    def max_attempts(self) -> int:
        return len(self.delays)

    def next_delay(
        self, attempts_made: int, rng: random.Random, *, retry_after: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when the delivery has failed.

        A receiver's ``Retry-After`` replaces the scheduled delay: it knows its own
        capacity better than our schedule does. It still uses up an attempt, so a receiver
        that keeps answering 429 cannot hold a delivery forever.
        """
        if attempts_made < 0:
            raise ValueError("attempts_made cannot be negative")
        if attempts_made >= self.max_attempts:
            return None
        if retry_after is not None:
            return min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        base = self.delays[attempts_made]
        # Jitter spreads the retries of a receiver's outage so they do not arrive as one wave.
        return base * rng.uniform(1 - self.jitter, 1 + self.jitter)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a ``Retry-After`` header asks for (RFC 9110 §10.2.3), capped at 24 h.

    Delta-seconds must be digits only, as the RFC says; anything unreadable is None, so
    the caller falls back to its schedule. A date in the past means "now" (0).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # Past nine digits (31 years) it is over the cap whatever it says; so long a
        # number is not parsed at all (Python refuses over 4,300 digits, and a receiver
        # may send 60,000).
        digits = text.lstrip("0")
        return min(float(digits or 0) if len(digits) <= 9 else MAX_RETRY_AFTER, MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        # The asctime form carries no zone; HTTP dates are always GMT.
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def should_suspend(
    consecutive_failures: int,
    first_failure_at: datetime,
    now: datetime,
    *,
    threshold: int = 20,
    span: timedelta = timedelta(hours=24),
) -> bool:
    """Whether a webhook has failed long and often enough to be suspended.

    Both conditions are needed: many failures in a short burst is a blip, and one failure
    a day for a month is a flaky receiver, neither a dead one.
    """
    return consecutive_failures >= threshold and now - first_failure_at >= span
