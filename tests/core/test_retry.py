import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docuhooks.core.clock import FakeClock, SystemClock
from docuhooks.core.retry import (
    DEFAULT_DELAYS,
    MAX_RETRY_AFTER,
    RetrySchedule,
    parse_retry_after,
    should_suspend,
)

NOW = datetime(2026, 11, 29, 10, 15, tzinfo=UTC)


def test_default_schedule_is_the_documented_schedule() -> None:
    schedule = RetrySchedule()
    assert schedule.delays == (0, 10, 60, 300, 1800, 7200, 21600, 43200, 86400)
    assert schedule.max_attempts == 9
    # "about 45 h in all", as docs/design.md promises
    assert 44 * 3600 < sum(schedule.delays) < 46 * 3600


def test_first_attempt_is_immediate_and_last_failure_ends_the_delivery() -> None:
    schedule = RetrySchedule()
    rng = random.Random(1)
    assert schedule.next_delay(0, rng) == 0
    assert schedule.next_delay(8, rng) is not None
    assert schedule.next_delay(9, rng) is None
    assert schedule.next_delay(50, rng) is None


def test_without_jitter_delays_are_exact() -> None:
    schedule = RetrySchedule(jitter=0)
    rng = random.Random(7)
    assert [schedule.next_delay(n, rng) for n in range(10)] == [*DEFAULT_DELAYS, None]


@given(attempts=st.integers(min_value=0, max_value=8), seed=st.integers())
def test_jitter_stays_within_twenty_percent(attempts: int, seed: int) -> None:
    schedule = RetrySchedule()
    delay = schedule.next_delay(attempts, random.Random(seed))
    base = DEFAULT_DELAYS[attempts]
    assert delay is not None
    assert base * 0.8 <= delay <= base * 1.2


def test_jitter_actually_varies() -> None:
    schedule = RetrySchedule()
    rng = random.Random(3)
    delays = {schedule.next_delay(3, rng) for _ in range(20)}
    assert len(delays) > 10


def test_retry_after_replaces_the_scheduled_delay_and_is_capped() -> None:
    schedule = RetrySchedule()
    rng = random.Random(0)
    assert schedule.next_delay(1, rng, retry_after=120) == 120
    assert schedule.next_delay(1, rng, retry_after=10 * 86400) == MAX_RETRY_AFTER
    # It still uses up an attempt: the last one stays the last one.
    assert schedule.next_delay(9, rng, retry_after=5) is None


def test_schedule_from_setting() -> None:
    schedule = RetrySchedule.from_setting("0,10s,1m,5m,30m,2h,6h,12h,24h")
    assert schedule.delays == DEFAULT_DELAYS
    fast = RetrySchedule.from_setting(" 0, 0.05s , 0.1 ,1d")
    assert fast.delays == (0, 0.05, 0.1, 86400)


@pytest.mark.parametrize("text", ["", "10x", "1m,,2m", "-5", "ten", "1 m s"])
def test_schedule_setting_errors_name_the_entry(text: str) -> None:
    with pytest.raises(ValueError, match=r"retry schedule entry \d+"):
        RetrySchedule.from_setting(text)


def test_schedule_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetrySchedule(delays=())
    with pytest.raises(ValueError):
        RetrySchedule(delays=(0, -1))
    with pytest.raises(ValueError):
        RetrySchedule(jitter=1.5)
    with pytest.raises(ValueError):
        RetrySchedule().next_delay(-1, random.Random())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("  0 ", 0.0),
        ("86400", 86400.0),
        ("999999999", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),  # past Python's 4,300 digits for int()
        ("0" * 5000 + "120", 120.0),
        ("0000", 0.0),
        ("Sun, 29 Nov 2026 10:17:00 GMT", 120.0),  # IMF-fixdate
        ("Sunday, 29-Nov-26 10:17:00 GMT", 120.0),  # RFC 850
        ("Sun Nov 29 10:17:00 2026", 120.0),  # asctime
        ("Sat, 28 Nov 2026 10:17:00 GMT", 0.0),  # in the past: now
        ("Tue, 29 Dec 2026 10:17:00 GMT", MAX_RETRY_AFTER),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("12abc", None),
        ("\u0661\u0662", None),  # Arabic-Indic digits are not delta-seconds
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


@given(st.text() | st.text(alphabet="0123456789", min_size=1, max_size=6000))
def test_parse_retry_after_never_raises_and_stays_in_bounds(value: str) -> None:
    seconds = parse_retry_after(value, NOW)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("failures", "span", "expected"),
    [
        (20, timedelta(hours=24), True),
        (25, timedelta(days=3), True),
        (19, timedelta(days=3), False),  # long but not often enough
        (100, timedelta(hours=23, minutes=59), False),  # often but not long enough
        (0, timedelta(0), False),
    ],
)
def test_should_suspend(failures: int, span: timedelta, expected: bool) -> None:
    assert should_suspend(failures, NOW - span, NOW) is expected


def test_should_suspend_thresholds_are_configurable() -> None:
    assert should_suspend(3, NOW - timedelta(seconds=5), NOW, threshold=3, span=timedelta(0))


async def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(NOW)
    assert clock.now() == NOW
    start = clock.monotonic()
    clock.advance(10)
    await clock.sleep(50)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == NOW + timedelta(seconds=120)
    assert clock.monotonic() - start == 120
    clock.set(NOW + timedelta(hours=1))
    assert clock.now() == NOW + timedelta(hours=1)
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 1, 1))


def test_system_clock_is_aware_utc() -> None:
    clock = SystemClock()
    assert clock.now().tzinfo is UTC
    assert clock.monotonic() <= clock.monotonic()
