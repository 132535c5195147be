"""A fixed, log-spaced latency histogram: what the delivery roll-up keeps of each call's
duration, so that quantiles of any number of calls come from a bounded number of counts
that add up (hours add into days, webhooks into a site) without keeping the calls.

Bin 0 holds durations under 1 ms; bins 1 to `LAST_FINITE` each cover a third of a doubling,
[2^((i-1)/3), 2^(i/3)) ms, up to 2^17 ms (131 s, past the longest webhook timeout of
120 s); the last bin holds anything longer. A quantile is the representative value of the
bin that holds the nearest-rank sample: the geometric middle of its bin, so the reported
value is within a factor of 2^(1/6) of the true sample, a relative error of at most
`RELATIVE_ERROR` (12.25 %) either way; under 1 ms it is 0.5 ms, at most 0.5 ms off; past
131 s it is 131,072 ms, a lower bound.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

__all__ = [
    "BINS",
    "LAST_FINITE",
    "RELATIVE_ERROR",
    "bin_bounds",
    "bin_of",
    "quantile",
    "representative",
]

#: Bins per doubling of the duration.
STEPS_PER_DOUBLING = 3
#: The top of the last finite bin is 2^17 ms.
_TOP_EXPONENT = 17
LAST_FINITE = _TOP_EXPONENT * STEPS_PER_DOUBLING
#: Every bin, the overflow bin included.
BINS = LAST_FINITE + 2
#: The most a reported quantile differs from the true one, relative to either, from 1 ms to
#: 131 s: 2^(1/6) - 1.
RELATIVE_ERROR = 2 ** (1 / (2 * STEPS_PER_DOUBLING)) - 1
_TOP_MS = 2.0**_TOP_EXPONENT


def bin_bounds(index: int) -> tuple[float, float]:
    """The durations bin `index` covers, [low, high) in ms (`inf` for the last)."""
    if index <= 0:
        return 0.0, 1.0
    if index > LAST_FINITE:
        return _TOP_MS, math.inf
    return 2 ** ((index - 1) / STEPS_PER_DOUBLING), 2 ** (index / STEPS_PER_DOUBLING)


#: The lower edge of bins 1 to the last (1 ms … 131,072 ms), exactly as `bin_bounds` says.
_LOWER_EDGES = tuple(bin_bounds(index)[0] for index in range(1, BINS))


def bin_of(duration_ms: float) -> int:
    """The bin a duration falls in (negative and NaN durations count as 0 ms)."""
    if not duration_ms >= 1.0:  # also NaN
        return 0
    # The number of bin edges at or below the duration is its bin: one C call.
    return bisect_right(_LOWER_EDGES, duration_ms)


def representative(index: int) -> float:
    """The value a quantile that falls in bin `index` reports."""
    low, high = bin_bounds(index)
    if index <= 0:
        return 0.5
    if math.isinf(high):
        return low
    return math.sqrt(low * high)


def quantile(counts: Sequence[int], q: float) -> float | None:
    """The `q`-quantile (0 < q ≤ 1) of the durations counted in `counts` (one count per
    bin), by nearest rank; None when nothing was counted."""
    if not 0 < q <= 1:
        raise ValueError("q must be in (0, 1]")
    total = sum(counts)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return representative(index)
    return representative(len(counts) - 1)  # pragma: no cover - seen reaches total
