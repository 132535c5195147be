"""Batches sized by time: bounded, growing slowly, shrinking at once, fixed when asked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from docuhooks.core.pacing import Pacer


def test_a_slow_batch_shrinks_the_next_one_to_the_aim_at_once() -> None:
    pacer = Pacer.aiming(0.010, start=200)
    pacer.took(200, 0.050)  # 0.25 ms a row: 40 rows make 10 ms
    assert pacer.size == 40


def test_a_quick_batch_grows_the_next_one_at_most_twofold() -> None:
    pacer = Pacer.aiming(0.010, start=50)
    pacer.took(50, 0.0001)
    assert pacer.size == 100
    pacer.took(100, 0.0001)
    assert pacer.size == 200


def test_an_empty_batch_says_nothing_about_the_next() -> None:
    pacer = Pacer.aiming(0.010, start=50)
    pacer.took(0, 1.0)
    assert pacer.size == 50


def test_a_fixed_pacer_keeps_its_size() -> None:
    pacer = Pacer.fixed(200)
    pacer.took(200, 10.0)
    assert pacer.size == 200


@given(
    start=st.integers(10, 5000),
    steps=st.lists(st.tuples(st.integers(1, 5000), st.floats(0, 5, allow_nan=False)), max_size=20),
)
def test_the_size_stays_within_its_bounds_and_never_more_than_doubles(
    start: int, steps: list[tuple[int, float]]
) -> None:
    pacer = Pacer.aiming(0.010, start=start)
    for rows, seconds in steps:
        before = pacer.size
        pacer.took(rows, seconds)
        assert pacer.smallest <= pacer.size <= pacer.largest
        assert pacer.size <= max(pacer.smallest, 2 * before)
