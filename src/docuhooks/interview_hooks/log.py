"""The delivery log of interview calls: the same events, deliveries and attempts tables the
notification worker writes, so administrators see every call to a receiver in one place.

Interview calls are never retried (a person is waiting), so each delivery has exactly one
attempt and is finished when it is written: `succeeded` or `failed`, nothing left due.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.signing import OutboundRequest, redact_headers, redact_url
from docuhooks.delivery.transport import DEFAULT_MAX_BODY, TransportResult
from docuhooks.interview_hooks.replies import Outcome
from docuhooks.store.schema import attempts, deliveries, events

_MAX_ERROR = 1000


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One interview call as the log keeps it."""

    delivery_id: str
    webhook_id: str
    started_at: datetime
    request: OutboundRequest | None
    result: TransportResult | None
    outcome: Outcome


async def write(
    conn: AsyncConnection,
    *,
    event: Mapping[str, Any],
    site_id: str,
    work_item_id: str,
    calls: Sequence[CallRecord],
    created_at: datetime,
    finished_at: datetime,
) -> None:
    """Insert the event, and one finished delivery with its one attempt per call."""
    await conn.execute(
        events.insert().values(
            id=event["eventId"],
            site_id=site_id,
            event_type=event["eventType"],
            payload=dict(event),
            work_item_id=work_item_id,
            created_at=created_at,
        )
    )
    delivery_rows = []
    attempt_rows = []
    for call in calls:
        outcome, result = call.outcome, call.result
        status_code = result.status if result is not None else None
        delivery_rows.append(
            {
                "id": call.delivery_id,
                "event_id": event["eventId"],
                "webhook_id": call.webhook_id,
                "site_id": site_id,
                "status": "succeeded" if outcome.succeeded else "failed",
                "attempts": 1,
                "next_attempt_at": None,
                "last_status_code": status_code,
                "last_error_class": str(outcome.error_class) if outcome.error_class else None,
                "last_error": _clip(outcome.error),
                "created_at": call.started_at,
                "completed_at": finished_at,
            }
        )
        if call.request is None:
            # The request could not even be built (e.g. a webhook without its secret): the
            # delivery says why, and there is no attempt to show.
            continue
        attempt_rows.append(
            {
                "id": str(uuid.uuid4()),
                "delivery_id": call.delivery_id,
                "webhook_id": call.webhook_id,
                "site_id": site_id,
                "attempt_number": 1,
                "started_at": call.started_at,
                "duration_ms": result.duration_ms if result is not None else 0.0,
                "request_method": call.request.method,
                "request_url": redact_url(call.request.url),
                "request_headers": redact_headers(call.request.headers),
                "status_code": status_code,
                "response_headers": dict(result.headers) if result is not None else None,
                "response_body": _body_text(result),
                "error_class": str(outcome.error_class) if outcome.error_class else None,
                "error": _clip(outcome.error),
            }
        )
    if delivery_rows:
        await conn.execute(deliveries.insert(), delivery_rows)
    if attempt_rows:
        await conn.execute(attempts.insert(), attempt_rows)


def _body_text(result: TransportResult | None) -> str | None:
    if result is None or result.status is None:
        return None
    text = result.body[:DEFAULT_MAX_BODY].decode("utf-8", errors="replace")
    # PostgreSQL text cannot hold NUL; a hostile receiver must not make the log unwritable.
    return text.replace("\x00", "\ufffd")


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
