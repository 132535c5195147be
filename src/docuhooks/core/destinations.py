"""A destination's health: its circuit breaker and its adaptive concurrency limit. Pure.

A *destination* is where calls go: scheme, host and port. Every webhook of a site that
points there shares the site's state of it (`state_key`), because a host that is down or
overloaded is so for all of them. Each site keeps its own: many hosts serve many tenants,
each on a path of its own (a chat service's incoming webhooks, an automation platform), and
a site's own path answering 429 with a day's `Retry-After`, or its webhooks' timeouts set
shorter than the host needs, must not hold back another site's calls there. What protects
the host from all sites together is the cap on calls in flight to it, which counts every
site's calls.

- **Circuit breaker.** After `failure_threshold` consecutive failures that say the host is
  unreachable or broken (`connect`, `dns`, `tls`, `timeout`, or a 5xx status) the breaker
  *opens*: the destination's deliveries are postponed (left due in the store, not attempted,
  so they spend none of their retries) and one *probe* call goes out per `probe_interval`
  (the breaker is *half open* while it is in flight; to a host that fails every probe, one
  for all sites together: `delivery.claims`). The probe's success closes the breaker; its
  failure opens it for another interval.
- **Adaptive concurrency** (additive increase, multiplicative decrease). A 429, a 503 or a
  timeout halves the destination's limit on calls in flight; every success raises it by one,
  up to the policy's `max_concurrency` (the installation's cap on calls in flight to one
  destination, so that a halving always lowers what is really sent). A breaker that closes
  starts again from one call at a time, so a recovered host's backlog drains at a rate it
  shows it can take.
- **Pause.** A `Retry-After` on a 429 or 503 holds the whole destination back that long,
  not only the delivery that carried it.

The worker classifies each attempt with :func:`signal_of` and folds the signals into the
stored state with :func:`advance`; the claim reads the state to decide what may go.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from yarl import URL

__all__ = [
    "MAX_CONCURRENCY",
    "BreakerPolicy",
    "BreakerState",
    "DestinationState",
    "Signal",
    "advance",
    "destination_of",
    "host_answered",
    "signal_of",
    "split_state_key",
    "state_key",
]

#: The most calls in flight a destination's adaptive limit may ever allow (a webhook's own
#: `maxConcurrency` is at most this too); a policy's `max_concurrency` is at most this.
MAX_CONCURRENCY = 100

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The longest host name DNS resolves (RFC 1035).
_LONGEST_HOST = 253


def destination_of(url: str) -> str:
    """The destination key of a webhook URL: ``scheme://host:port``, lower-cased, with the
    default port written out, so ``HTTPS://Example.com/a`` and ``https://example.com:443/b``
    share one.

    The host is the one the HTTP client connects to and pools connections by (yarl's, IDNA
    applied): ``１２７.0.0.1``, ``127。0。0。1`` and ``127.0.0.1`` are one destination, as
    are ``ſhared.example``, ``Shared.example`` and ``shared.example.``, so spelling a host
    another way never escapes the caps on calls in flight to it, nor fills its connections
    outside them."""
    text = url.strip()
    try:
        parsed = URL(text)
        scheme = parsed.scheme.lower()
        host = (parsed.raw_host or "").lower()
        # The port as written (yarl before 1.18 reads ":0" as no port at all).
        written = urlsplit(text).port
        port = written if written is not None else _DEFAULT_PORTS.get(scheme, 0)
    except (ValueError, UnicodeError):
        # Not a URL the client could call (a webhook's URL is checked when it is saved):
        # keyed as written, so it shares nothing.
        try:
            parts = urlsplit(text)
            scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        except ValueError:
            scheme, host = "", text.lower()
        port = 0
    host = host.removesuffix(".")
    if len(host) > _LONGEST_HOST:
        # No name DNS resolves (a webhook's URL is held to 253 characters when it is saved;
        # one saved before may be longer): a key of bounded length that names no host any
        # call can reach (`.invalid` is reserved for that).
        host = hashlib.sha256(host.encode()).hexdigest() + ".invalid"
    bracketed = f"[{host}]" if ":" in host else host
    return f"{scheme}://{bracketed}:{port}"


def state_key(site_id: str, destination: str) -> str:
    """Where a site's state of a destination is kept (the `destinations` table's `origin`)."""
    return f"{site_id} {destination}"


def split_state_key(key: str) -> tuple[str, str]:
    """The site and the destination of a `state_key`."""
    site_id, _, destination = key.partition(" ")
    return site_id, destination


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Signal(StrEnum):
    """What one attempt says about its destination."""

    #: The destination answered as a working server does (2xx, or a 4xx other than 429).
    HEALTHY = "healthy"
    #: Unreachable or broken: counts toward opening the breaker.
    FAILURE = "failure"
    #: Overloaded and saying so (429): lower the limit, but it is up.
    THROTTLED = "throttled"
    #: Overloaded and failing (503, timeout): both of the above.
    FAILING_SLOWLY = "failing_slowly"
    #: Says nothing about the destination (the address policy refused it, say).
    NONE = "none"


_UNREACHABLE = frozenset({"connect", "dns", "tls"})


def host_answered(status: int | None) -> bool:
    """Whether an attempt's answer shows the destination's own server is up: any status
    below 500. A 5xx may be a proxy or load balancer answering for a host that is down (an
    egress proxy answers 500 or 502 for a host it cannot reach), and no answer at all
    (`connect`, `dns`, `tls`, `timeout`) says nothing of the kind."""
    return status is not None and status < 500


def signal_of(status: int | None, error_class: str | None) -> Signal:
    """Classify an attempt by its status code and error class (the attempt log's)."""
    if status is None:
        if error_class == "timeout":
            return Signal.FAILING_SLOWLY
        return Signal.FAILURE if error_class in _UNREACHABLE else Signal.NONE
    if status == 429:
        return Signal.THROTTLED
    if status == 503:
        return Signal.FAILING_SLOWLY
    if status >= 500:
        return Signal.FAILURE
    if status < 200 or error_class == "invalid_response":
        return Signal.NONE
    return Signal.HEALTHY


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    probe_interval: timedelta = timedelta(seconds=30)
    #: The adaptive limit's ceiling: the claim never lets more than this many calls go to one
    #: destination anyway, so a limit above it would take several halvings to mean anything.
    max_concurrency: int = MAX_CONCURRENCY

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("the breaker's failure threshold must be at least 1")
        if self.probe_interval <= timedelta(0):
            raise ValueError("the breaker's probe interval must be positive")
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"the adaptive limit's ceiling must be 1 to {MAX_CONCURRENCY}")


@dataclass(frozen=True, slots=True)
class DestinationState:
    """A destination's stored state; a destination with no row is `DestinationState()`."""

    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    #: When the breaker last changed state (opened, or closed again).
    since: datetime | None = None
    next_probe_at: datetime | None = None
    concurrency: int = MAX_CONCURRENCY
    paused_until: datetime | None = None

    def at_rest(self, ceiling: int = MAX_CONCURRENCY) -> bool:
        """Nothing to remember: closed, no failure run, limit at the `ceiling` (the policy's
        `max_concurrency`), not paused."""
        return (
            self.state is BreakerState.CLOSED
            and self.failures == 0
            and self.concurrency >= ceiling
            and self.paused_until is None
        )


def advance(
    current: DestinationState,
    signal: Signal,
    now: datetime,
    policy: BreakerPolicy,
    *,
    retry_after: float | None = None,
) -> DestinationState:
    """The state after one attempt that ended at `now` with `signal`."""
    ceiling = policy.max_concurrency
    # A limit stored under a higher ceiling (or a destination's first row) starts from this one.
    state = current if current.concurrency <= ceiling else replace(current, concurrency=ceiling)
    if state.paused_until is not None and state.paused_until <= now:
        state = replace(state, paused_until=None)
    if retry_after is not None and retry_after > 0:
        until = now + timedelta(seconds=retry_after)
        if state.paused_until is None or until > state.paused_until:
            state = replace(state, paused_until=until)
    if signal in (Signal.THROTTLED, Signal.FAILING_SLOWLY):
        state = replace(state, concurrency=max(1, state.concurrency // 2))
    if signal is Signal.HEALTHY:
        if state.state is not BreakerState.CLOSED:
            # The probe got through: close, and start again from one call at a time.
            return replace(
                state,
                state=BreakerState.CLOSED,
                failures=0,
                since=now,
                next_probe_at=None,
                concurrency=1,
            )
        return replace(state, failures=0, concurrency=min(ceiling, state.concurrency + 1))
    if signal in (Signal.FAILURE, Signal.FAILING_SLOWLY):
        failures = state.failures + 1
        if state.state is not BreakerState.CLOSED or failures >= policy.failure_threshold:
            reopened = state.state is not BreakerState.CLOSED
            return replace(
                state,
                state=BreakerState.OPEN,
                failures=failures,
                since=state.since if reopened else now,
                next_probe_at=now + policy.probe_interval,
                concurrency=1,
            )
        return replace(state, failures=failures)
    return state
