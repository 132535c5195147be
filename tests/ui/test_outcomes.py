"""The test call's outcome, worded once: the transport's message and the warning built from
the same failure are one sentence on the page."""

from __future__ import annotations

from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.ui.outcomes import describe_call


def _warning(code: str, message: str) -> dict[str, str | None]:
    return {"source": "webhook", "code": code, "message": message, "variable": None}


def test_a_timeout_is_said_once() -> None:
    result = TransportResult.failure(ErrorClass.TIMEOUT, "timed out", duration_ms=5000.4)
    said = describe_call(False, result, [_warning("timeout", "timed out")])
    assert said.sentence == "Test call failed: no answer within 5000 ms (timeout)."
    assert said.warnings == []


def test_each_outcome_in_one_sentence() -> None:
    cases = [
        (
            True,
            TransportResult.response(200, duration_ms=12),
            "Test call succeeded: HTTP 200 in 12 ms.",
        ),
        (
            False,
            TransportResult.response(503, duration_ms=7),
            "Test call failed: HTTP 503 in 7 ms.",
        ),
        (
            False,
            TransportResult.response(
                302, headers={"Location": "https://x.example/"}, duration_ms=3
            ),
            "Test call failed: HTTP 302 in 3 ms: redirect to https://x.example/, not followed.",
        ),
        (
            False,
            TransportResult.response(101, duration_ms=5),
            "Test call failed: HTTP 101 in 5 ms: unexpected informational status "
            "(invalid_response).",
        ),
        (
            False,
            TransportResult.failure(
                ErrorClass.CONNECT, "could not connect: refused", duration_ms=2
            ),
            "Test call failed: could not connect: refused, after 2 ms (connect).",
        ),
        (
            False,
            TransportResult.failure(ErrorClass.BLOCKED, "127.0.0.1 is loopback"),
            "Test call failed: 127.0.0.1 is loopback, after 0 ms (blocked).",
        ),
    ]
    for succeeded, result, sentence in cases:
        assert describe_call(succeeded, result, []).sentence == sentence


def test_warnings_that_add_something_stay() -> None:
    # A 200 whose answers the template cannot take: the call worked, the answers did not.
    kept = [_warning("unknown_variable", "no variable named 'Fee2'")]
    said = describe_call(False, TransportResult.response(200, duration_ms=4), kept)
    assert said.sentence == "Test call failed: HTTP 200 in 4 ms."
    assert said.warnings == kept
