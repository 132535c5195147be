"""The interview budget counts from when the person started waiting."""

from __future__ import annotations

import contextvars
import time

from docuhooks.interview_hooks.budget import mark_waiting_since, remaining


def test_without_a_mark_the_calls_get_the_whole_budget() -> None:
    assert contextvars.Context().run(remaining, 8.0) == 8.0


def test_time_spent_before_the_calls_comes_out_of_the_budget() -> None:
    def in_request() -> tuple[float, float]:
        mark_waiting_since(time.perf_counter() - 1.5)
        return remaining(8.0), remaining(1.0)

    left, none_left = contextvars.Context().run(in_request)
    assert 6.4 < left <= 6.5
    assert none_left == 0.0
