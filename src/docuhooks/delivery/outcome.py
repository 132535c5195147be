"""What one notification attempt's result means for its delivery: pure.

The worker sends, asks :func:`decide`, and writes down the answer; keeping the decision free
of I/O is what lets every branch of the retry policy be tested in microseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from docuhooks.core.retry import RetrySchedule, parse_retry_after
from docuhooks.delivery.transport import TransportResult

#: Statuses whose `Retry-After` a receiver may use to slow us down.
RETRY_AFTER_STATUSES = frozenset({429, 503})


class Verdict(StrEnum):
    """The outcome label the metrics count, and what the worker does next."""

    SUCCEEDED = "succeeded"
    #: Failed; another attempt is scheduled.
    RETRYING = "retrying"
    #: Failed after the last attempt of the schedule.
    FAILED = "failed"
    #: 410 Gone: the receiver asked us to stop; the webhook is deactivated.
    GONE = "gone"
    #: A suspended webhook's probe failed; the delivery waits for the next probe.
    PROBE_FAILED = "probe_failed"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    #: When to try again; None when the delivery is finished.
    next_attempt_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.verdict in {Verdict.SUCCEEDED, Verdict.FAILED, Verdict.GONE}

    @property
    def counts_as_failure(self) -> bool:
        """Whether this attempt extends the webhook's run of failures (toward suspension)."""
        return self.verdict in {Verdict.RETRYING, Verdict.FAILED, Verdict.PROBE_FAILED}


def decide(
    result: TransportResult,
    *,
    attempts_made: int,
    schedule: RetrySchedule,
    rng: random.Random,
    now: datetime,
    probe: bool,
    probe_interval: timedelta,
) -> Decision:
    """The next step for a delivery whose attempt number `attempts_made` just ended in `result`.

    A suspended webhook's probe never exhausts its delivery: suspension exists so that a
    long outage queues events instead of losing them (suspension); they drain when a probe succeeds.
    """
    if result.ok:
        return Decision(Verdict.SUCCEEDED)
    if result.status == 410:
        return Decision(Verdict.GONE)
    if probe:
        return Decision(Verdict.PROBE_FAILED, now + probe_interval)
    retry_after = None
    if result.status in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(response_header(result, "retry-after"), now)
    delay = schedule.next_delay(attempts_made, rng, retry_after=retry_after)
    if delay is None:
        return Decision(Verdict.FAILED)
    return Decision(Verdict.RETRYING, now + timedelta(seconds=delay))


def response_header(result: TransportResult, name: str) -> str | None:
    """A response header by name, whatever its case."""
    for key, value in result.headers.items():
        if key.lower() == name:
            return value
    return None
