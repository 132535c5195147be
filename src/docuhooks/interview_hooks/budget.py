"""When the person started waiting. The budget of an interview step counts from
the moment their request arrived, not from when the calls go out, so whatever comes before
the calls (authentication, the database) is spent from the same budget and the interview
opens within the budget however busy the server is."""

from __future__ import annotations

import time
from contextvars import ContextVar

_waiting_since: ContextVar[float | None] = ContextVar("docuhooks_waiting_since", default=None)


def mark_waiting_since(moment: float | None = None) -> None:
    """Record (in this request's context) when the person started waiting (`perf_counter`)."""
    _waiting_since.set(time.perf_counter() if moment is None else moment)


def remaining(budget: float) -> float:
    """Seconds left of `budget` for the calls; the whole budget when nothing was marked."""
    since = _waiting_since.get()
    if since is None:
        return budget
    return max(0.0, budget - (time.perf_counter() - since))
