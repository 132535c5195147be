"""A destination's breaker, adaptive limit and pause: every transition of the pure rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docuhooks.core.destinations import (
    MAX_CONCURRENCY,
    BreakerPolicy,
    BreakerState,
    DestinationState,
    Signal,
    advance,
    destination_of,
    signal_of,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = BreakerPolicy(failure_threshold=3, probe_interval=timedelta(seconds=30))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(state: DestinationState, *signals: Signal, start: float = 0) -> DestinationState:
    for i, signal in enumerate(signals):
        state = advance(state, signal, at(start + i), POLICY)
    return state


def test_destinations_are_scheme_host_and_port_with_the_default_port_written_out() -> None:
    assert destination_of("HTTPS://Example.com/a?b=1") == "https://example.com:443"
    assert destination_of("https://example.com:443/other") == "https://example.com:443"
    assert destination_of("http://example.com/x") == "http://example.com:80"
    assert destination_of("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    ("spelled", "host"),
    [
        ("http://127。0。0。1:8080/x", "http://127.0.0.1:8080"),  # ideographic full stops
        ("http://１２７.0.0.1:8080/x", "http://127.0.0.1:8080"),  # full-width digits
        ("http://127．0．0．1:8080/x", "http://127.0.0.1:8080"),
        ("http://ſhared.example/x", "http://shared.example:80"),  # long s
        ("http://shared.example./x", "http://shared.example:80"),  # the final dot
        ("http://bücher.example/x", "http://xn--bcher-kva.example:80"),
        ("http://xn--bcher-kva.example/x", "http://xn--bcher-kva.example:80"),
        ("http://[0:0::1]:90/x", "http://[::1]:90"),
    ],
)
def test_a_host_spelled_another_way_is_the_same_destination(spelled: str, host: str) -> None:
    """The host as the HTTP client connects to it and pools its connections: another
    spelling never escapes the caps on calls in flight to it."""
    assert destination_of(spelled) == host


def test_a_host_longer_than_dns_resolves_has_a_key_of_bounded_length() -> None:
    """Saved before such hosts were refused: the key, like a site's key of it, fits its
    column, and stays its own."""
    long = "https://" + ".".join(["é"] * 300) + "/x"
    other = "https://" + ".".join(["é"] * 301) + "/x"
    assert len(destination_of(long)) < 100
    assert destination_of(long).endswith(".invalid:443")
    assert destination_of(long) != destination_of(other)
    assert destination_of("https://example.com:0/") == "https://example.com:0"


@given(st.text())
def test_any_text_has_a_destination_key(text: str) -> None:
    assert isinstance(destination_of(text), str)
    assert destination_of("http://[::1]:9000/x") == "http://[::1]:9000"
    assert destination_of("http://a.example:8080/") != destination_of("http://a.example:8081/")


@pytest.mark.parametrize(
    ("status", "error_class", "signal"),
    [
        (200, None, Signal.HEALTHY),
        (204, None, Signal.HEALTHY),
        (404, None, Signal.HEALTHY),
        (410, None, Signal.HEALTHY),
        (429, None, Signal.THROTTLED),
        (503, None, Signal.FAILING_SLOWLY),
        (500, None, Signal.FAILURE),
        (502, None, Signal.FAILURE),
        (None, "timeout", Signal.FAILING_SLOWLY),
        (None, "connect", Signal.FAILURE),
        (None, "dns", Signal.FAILURE),
        (None, "tls", Signal.FAILURE),
        (None, "blocked", Signal.NONE),
        (None, None, Signal.NONE),
        (301, None, Signal.HEALTHY),  # a server that answers is up
        (200, "invalid_response", Signal.NONE),
    ],
)
def test_each_outcome_says_what_it_says_about_the_destination(
    status: int | None, error_class: str | None, signal: Signal
) -> None:
    assert signal_of(status, error_class) is signal


def test_failures_below_the_threshold_only_count() -> None:
    state = run(DestinationState(), Signal.FAILURE, Signal.FAILURE)
    assert state == DestinationState(failures=2)


def test_the_threshold_opens_the_breaker_at_one_call_with_a_probe_an_interval_later() -> None:
    state = run(DestinationState(), Signal.FAILURE, Signal.FAILING_SLOWLY, Signal.FAILURE)
    assert state.state is BreakerState.OPEN
    assert state.failures == 3
    assert state.since == at(2)
    assert state.next_probe_at == at(2) + POLICY.probe_interval
    assert state.concurrency == 1


def test_a_success_between_failures_starts_the_count_again() -> None:
    state = run(DestinationState(), Signal.FAILURE, Signal.FAILURE, Signal.HEALTHY, Signal.FAILURE)
    assert (state.state, state.failures) == (BreakerState.CLOSED, 1)


def test_throttling_and_no_signal_do_not_count_toward_the_breaker() -> None:
    state = run(DestinationState(), Signal.FAILURE, Signal.FAILURE, Signal.THROTTLED, Signal.NONE)
    assert (state.state, state.failures) == (BreakerState.CLOSED, 2)


def _opened() -> DestinationState:
    return run(DestinationState(), Signal.FAILURE, Signal.FAILURE, Signal.FAILURE)


def test_a_half_open_probe_that_succeeds_closes_and_restarts_from_one_call() -> None:
    probing = DestinationState(
        state=BreakerState.HALF_OPEN,
        failures=3,
        since=at(2),
        next_probe_at=at(62),
        concurrency=1,
    )
    state = advance(probing, Signal.HEALTHY, at(40), POLICY)
    assert state == DestinationState(
        state=BreakerState.CLOSED,
        failures=0,
        since=at(40),
        next_probe_at=None,
        concurrency=1,
    )


@pytest.mark.parametrize("signal", [Signal.FAILURE, Signal.FAILING_SLOWLY])
def test_a_half_open_probe_that_fails_opens_for_another_interval_keeping_since(
    signal: Signal,
) -> None:
    probing = DestinationState(
        state=BreakerState.HALF_OPEN, failures=3, since=at(2), next_probe_at=at(62), concurrency=1
    )
    state = advance(probing, signal, at(40), POLICY)
    assert state.state is BreakerState.OPEN
    assert state.since == at(2), "still the outage that began at the first opening"
    assert state.next_probe_at == at(40) + POLICY.probe_interval
    assert (state.failures, state.concurrency) == (4, 1)


def test_a_late_success_while_open_closes_too() -> None:
    state = advance(_opened(), Signal.HEALTHY, at(10), POLICY)
    assert (state.state, state.concurrency, state.failures) == (BreakerState.CLOSED, 1, 0)


def test_successes_grow_the_limit_by_one_up_to_the_maximum() -> None:
    state = advance(_opened(), Signal.HEALTHY, at(10), POLICY)
    limits = []
    for i in range(MAX_CONCURRENCY + 5):
        state = advance(state, Signal.HEALTHY, at(11 + i), POLICY)
        limits.append(state.concurrency)
    assert limits[:3] == [2, 3, 4]
    assert limits[MAX_CONCURRENCY - 2] == MAX_CONCURRENCY
    assert max(limits) == MAX_CONCURRENCY == limits[-1]
    assert state.at_rest()


def test_the_limit_grows_only_to_the_policys_ceiling_and_halves_from_there() -> None:
    """Under a ceiling of 20 (the installation's cap on calls to one destination) a fresh
    destination's first 429 halves what can really go out, 20 to 10, not 100 to 50."""
    capped = BreakerPolicy(failure_threshold=1000, max_concurrency=20)
    state = advance(DestinationState(), Signal.THROTTLED, at(0), capped)
    assert state.concurrency == 10
    for i in range(30):
        state = advance(state, Signal.HEALTHY, at(1 + i), capped)
    assert state.concurrency == 20
    assert state.at_rest(20) and not state.at_rest()
    assert advance(DestinationState(), Signal.HEALTHY, at(0), capped).at_rest(20)


@pytest.mark.parametrize("ceiling", [0, MAX_CONCURRENCY + 1])
def test_the_ceiling_must_be_within_the_maximum(ceiling: int) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(max_concurrency=ceiling)


@pytest.mark.parametrize("signal", [Signal.THROTTLED, Signal.FAILING_SLOWLY])
def test_overload_halves_the_limit_down_to_one_never_zero(signal: Signal) -> None:
    state = DestinationState()
    limits = []
    for i in range(10):
        state = advance(state, signal, at(i), BreakerPolicy(failure_threshold=1000))
        limits.append(state.concurrency)
    assert limits == [50, 25, 12, 6, 3, 1, 1, 1, 1, 1]


def test_retry_after_pauses_the_destination_and_only_ever_extends_the_pause() -> None:
    state = advance(DestinationState(), Signal.THROTTLED, at(0), POLICY, retry_after=60)
    assert state.paused_until == at(60)
    shorter = advance(state, Signal.THROTTLED, at(1), POLICY, retry_after=5)
    assert shorter.paused_until == at(60), "a shorter Retry-After never shortens the pause"
    longer = advance(shorter, Signal.FAILING_SLOWLY, at(2), POLICY, retry_after=120)
    assert longer.paused_until == at(122)


def test_a_pause_that_has_run_out_is_forgotten() -> None:
    paused = advance(DestinationState(), Signal.THROTTLED, at(0), POLICY, retry_after=10)
    assert advance(paused, Signal.HEALTHY, at(9), POLICY).paused_until == at(10)
    assert advance(paused, Signal.HEALTHY, at(10), POLICY).paused_until is None


@pytest.mark.parametrize("retry_after", [0.0, -5.0, None])
def test_no_or_a_non_positive_retry_after_does_not_pause(retry_after: float | None) -> None:
    state = advance(DestinationState(), Signal.THROTTLED, at(0), POLICY, retry_after=retry_after)
    assert state.paused_until is None


def test_a_fresh_destination_is_at_rest_and_changes_only_when_something_happened() -> None:
    assert DestinationState().at_rest()
    assert advance(DestinationState(), Signal.HEALTHY, at(0), POLICY) == DestinationState()
    assert advance(DestinationState(), Signal.NONE, at(0), POLICY) == DestinationState()
    assert not DestinationState(failures=1).at_rest()


@pytest.mark.parametrize(("threshold", "interval"), [(0, timedelta(seconds=1)), (1, timedelta(0))])
def test_a_policy_must_make_sense(threshold: int, interval: timedelta) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(failure_threshold=threshold, probe_interval=interval)


def test_a_host_of_253_characters_with_its_final_dot_is_a_receivers() -> None:
    """The longest name DNS resolves, written fully qualified: accepted, and one
    destination with the same name unqualified."""
    from docuhooks.webhooks.config import validate_url

    host = ".".join(["a" * 63] * 4)[:253]
    assert validate_url(f"https://{host}./hook") == (f"https://{host}./hook", None)
    assert validate_url(f"https://{host}a/hook")[1] is not None
    assert destination_of(f"https://{host}./hook") == destination_of(f"https://{host}/hook")
