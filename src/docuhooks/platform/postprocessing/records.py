"""What a post-processing call carries and what the version shows about it: the one-time
completion token, the PostProcessingEvent's data, and the `postProcessing` record on the
version with its status. Pure: no I/O."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from docuhooks.core.events import format_timestamp
from docuhooks.delivery.transport import ErrorClass
from docuhooks.identity.models import Principal
from docuhooks.platform import documents
from docuhooks.platform.postprocessing.replies import Mode

#: Documents up to this size travel in the event as base64; larger ones are fetched by `url`.
INLINE_CONTENT_BYTES = 5 * 1024 * 1024


class Status(StrEnum):
    """Where a version's post-processing stands (`postProcessing.status` on the version)."""

    #: Waiting for a driver to call the receiver.
    PENDING = "pending"
    #: A driver is calling the receiver.
    CALLING = "calling"
    #: The receiver answered 202 and has until the deadline to `PUT completeUrl`.
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


FINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.TIMED_OUT})


# --- the completion token -----------------------------------------------------------------


def new_complete_token() -> str:
    """A one-time token that lets a receiver complete the version it was called for."""
    return "dhc_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def complete_url(base_url: str, work_item_id: str, version_id: str, token: str) -> str:
    """`completeUrl`: the complete route with the version's one-time token. The
    receiver still needs an API token of the site to call it."""
    return (
        f"{base_url.rstrip('/')}/api/v1/workitems/{work_item_id}/versions/{version_id}"
        f"/complete?token={token}"
    )


# --- what the event carries, and what the version shows ------------------------------------


def event_data(
    *,
    work_item: Any,
    version: Any,
    template: Any,
    rows: Sequence[Any],
    base_url: str,
    deadline: datetime,
    complete: str,
) -> dict[str, Any]:
    """The PostProcessingEvent's `data`. `rows` are the version's documents in
    assembled order; a row's `content` is None when it is too large to travel inline."""
    return {
        "workItemId": work_item.id,
        "workItemVersionId": version.id,
        "versionNumber": version.version_number,
        "templateId": template.id,
        "templateName": template.name,
        "documents": [_event_document(row, base_url, work_item.id) for row in rows],
        "callbackDeadline": format_timestamp(deadline),
        "completeUrl": complete,
    }


def _event_document(row: Any, base_url: str, work_item_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "fileName": row.file_name,
        "contentType": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "url": documents.content_url(base_url, work_item_id, row.version_id, row.id),
    }
    if row.content is not None:
        item["content"] = base64.b64encode(row.content).decode("ascii")
    return item


def started_record(
    *, webhook: Any, actor: Mapping[str, Any], deadline: datetime, now: datetime
) -> dict[str, Any]:
    """`postProcessing` on a version that has just entered PostProcessing."""
    return {
        "webhookId": webhook.id,
        "webhookName": webhook.name,
        "status": str(Status.PENDING),
        "mode": None,
        "error": None,
        "errorClass": None,
        "eventId": None,
        "deliveryId": None,
        "calls": 0,
        "deadline": format_timestamp(deadline),
        "startedDate": format_timestamp(now),
        "finishedDate": None,
        "finishedBy": dict(actor),
    }


def updated(record: Mapping[str, Any] | None, **changes: Any) -> dict[str, Any]:
    """`record` with `changes` (enum values as their strings); a final status is dated."""
    result = dict(record or {})
    result.update({k: str(v) if isinstance(v, StrEnum) else v for k, v in changes.items()})
    return result


def finished(
    record: Mapping[str, Any] | None,
    status: Status,
    now: datetime,
    *,
    error: str | None = None,
    error_class: ErrorClass | str | None = None,
    mode: Mode | None = None,
) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "status": status,
        "error": error,
        "errorClass": str(error_class) if error_class else None,
        "finishedDate": format_timestamp(now),
    }
    if mode is not None:
        changes["mode"] = mode
    return updated(record, **changes)


def finished_by(record: Mapping[str, Any] | None, site_id: str) -> Principal | None:
    """Who finished the interview, as recorded when post-processing started: the
    `createdBy` of the version's NewWorkItemVersionComplete, whoever completes it."""
    actor = (record or {}).get("finishedBy")
    if not isinstance(actor, Mapping) or not actor.get("id"):
        return None
    return Principal(
        user_id=str(actor["id"]),
        site_id=site_id,
        login_name=str(actor.get("loginName", "")),
        name=str(actor.get("name", "")),
        email=str(actor.get("email", "")),
        account_type=str(actor.get("accountType", "UserAccount")),
        roles=frozenset(),
    )
