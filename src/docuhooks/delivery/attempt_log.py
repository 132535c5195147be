"""The attempt log's rows, built in one place for every writer: the notification worker,
interview hooks, post-processing and test sends (the last three through
`interview_hooks.log`). One truncation rule (`clip`) and one redaction path (signatures,
tokens and URL credentials never reach the table), so the log reads the same whichever part
of the program made the call.

The worker inserts its rows in batches through a prepared statement
(`recorder_queries.insert_attempts`), so the builder returns plain dicts with the table's
columns and does nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from docuhooks.core.ids import uuid7
from docuhooks.core.signing import redact_headers, redact_url
from docuhooks.delivery.transport import DEFAULT_MAX_BODY, TransportResult

__all__ = ["MAX_ERROR", "attempt_row", "clip", "describe_error", "response_text"]

#: Longest error text kept, in attempts and in a delivery's `last_error`.
MAX_ERROR = 1000


def describe_error(exc: BaseException) -> str:
    """An exception as an attempt's (or a log line's) error: its type and message, capped."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def clip(text: str | None) -> str | None:
    """`text` cut to `MAX_ERROR` characters, the cut marked with an ellipsis, and without NUL
    (a receiver's words can reach an error, and PostgreSQL's text refuses NUL)."""
    if text is None:
        return None
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 1] + "…"


def response_text(result: TransportResult | None) -> str | None:
    """The response body as the log keeps it: at most `DEFAULT_MAX_BODY` bytes, as text; None
    when no response arrived."""
    if result is None or result.status is None:
        return None
    text = result.body[:DEFAULT_MAX_BODY].decode("utf-8", errors="replace")
    # PostgreSQL text cannot hold NUL; a hostile receiver must not make the log unwritable.
    return text.replace("\x00", "\ufffd")


def attempt_row(
    *,
    delivery_id: str,
    webhook_id: str,
    site_id: str,
    attempt_number: int,
    started_at: datetime,
    method: str,
    url: str,
    request_headers: Mapping[str, str] | None,
    result: TransportResult | None,
    error_class: str | None,
    error: str | None,
) -> dict[str, Any]:
    """One attempt, redacted and clipped. `request_headers` is None when the request was
    never built (the log then shows none); `result` None when nothing was sent."""
    return {
        "id": uuid7(),
        "delivery_id": delivery_id,
        "webhook_id": webhook_id,
        "site_id": site_id,
        "attempt_number": attempt_number,
        "started_at": started_at,
        "duration_ms": result.duration_ms if result is not None else 0.0,
        "request_method": method,
        "request_url": redact_url(url),
        "request_headers": redact_headers(request_headers) if request_headers is not None else {},
        "status_code": result.status if result is not None else None,
        "response_headers": (
            redact_headers(result.headers)
            if result is not None and result.status is not None
            else None
        ),
        "response_body": response_text(result),
        "error_class": str(error_class) if error_class else None,
        "error": clip(error),
    }
