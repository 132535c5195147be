"""The latency histogram: every duration lands in the bin that covers it, and a quantile read
from the bins is within the documented error of the exact one."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docuhooks.core import latency


def exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_every_duration_lands_in_the_bin_that_covers_it(duration: float) -> None:
    low, high = latency.bin_bounds(latency.bin_of(duration))
    assert low <= duration < high


def test_bin_edges_start_their_bins() -> None:
    for index in range(1, latency.LAST_FINITE + 1):
        low, _ = latency.bin_bounds(index)
        assert latency.bin_of(low) == index
    assert latency.bin_of(0.999) == 0
    assert latency.bin_of(-5) == 0
    assert latency.bin_of(float("nan")) == 0
    assert latency.bin_of(131_072.0) == latency.BINS - 1
    assert abs(latency.RELATIVE_ERROR - 0.1225) < 1e-4


@given(
    st.lists(st.floats(min_value=1.0, max_value=131_000.0), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.99, 1.0]),
)
def test_quantiles_are_within_the_documented_relative_error(values: list[float], q: float) -> None:
    counts = [0] * latency.BINS
    for value in values:
        counts[latency.bin_of(value)] += 1
    reported = latency.quantile(counts, q)
    true = exact_quantile(values, q)
    assert reported is not None
    bound = 1 + latency.RELATIVE_ERROR + 1e-9
    assert true / bound <= reported <= true * bound


@given(st.lists(st.floats(min_value=0.0, max_value=0.99), min_size=1, max_size=50))
def test_under_a_millisecond_is_at_most_half_a_millisecond_off(values: list[float]) -> None:
    counts = [0] * latency.BINS
    for value in values:
        counts[latency.bin_of(value)] += 1
    assert abs(latency.quantile(counts, 0.5) - exact_quantile(values, 0.5)) <= 0.5  # type: ignore[operator]


def test_no_samples_no_quantile_and_q_is_checked() -> None:
    assert latency.quantile([0] * latency.BINS, 0.5) is None
    with pytest.raises(ValueError, match="q must be"):
        latency.quantile([1], 0)
