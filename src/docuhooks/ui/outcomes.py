"""How the admin UI words the outcome of a test call: one sentence per outcome, and the
interview or post-processing warnings that add something to it.

The transport's message and the warning built from the same failure say the same thing
("timed out", then the warning "timeout: timed out"): the page says it once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docuhooks.delivery.transport import ErrorClass, TransportResult


@dataclass(frozen=True, slots=True)
class CallOutcome:
    sentence: str
    warnings: list[dict[str, Any]]


def describe_call(
    succeeded: bool, result: TransportResult, warnings: list[dict[str, Any]]
) -> CallOutcome:
    """`Test call failed: no answer within 5000 ms (timeout).`, `Test call succeeded: HTTP 200
    in 12 ms.`: the verdict, what happened, and the attempt log's error class when there is
    one, so the delivery log's filter can be matched by eye."""
    took = f"{result.duration_ms:.0f} ms"
    if result.error_class is ErrorClass.TIMEOUT and (result.error or "").startswith("timed out"):
        what = f"no answer within {took} ({result.error_class})"
    elif result.status is None:
        what = f"{result.error or 'no answer'}, after {took} ({result.error_class})"
    else:
        # The transport's message for a status starts with the status itself.
        status = f"HTTP {result.status}"
        detail = result.error or ""
        if detail.startswith(status):
            detail = detail.removeprefix(status)
        elif detail:
            detail = f": {detail}"
        what = f"{status} in {took}{detail}"
        if result.error_class not in (None, ErrorClass.HTTP_STATUS):
            what += f" ({result.error_class})"
    said = (str(result.error_class), result.error)
    rest = [w for w in warnings if (w.get("code"), w.get("message")) != said]
    verdict = "succeeded" if succeeded else "failed"
    return CallOutcome(f"Test call {verdict}: {what}.", rest)
