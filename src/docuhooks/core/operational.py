"""Operational events: what the platform tells a site's administrators about its own webhooks
and their destinations. Pure: the `data` of each event, built from values the caller read.

Each event is about one webhook (`data.webhook`), except the breaker events, which are about
a destination (`scheme://host:port`) and list the site's webhooks that point at it. The user
documentation is docs/receiving.md, "Operational events".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from docuhooks.core.events import Actor, Event, EventType, format_timestamp

__all__ = [
    "MAX_LISTED_WEBHOOKS",
    "SYSTEM_ACTOR",
    "WebhookSummary",
    "breaker_closed",
    "breaker_opened",
    "sample_data",
    "secret_grace_ending",
    "webhook_deactivated",
    "webhook_resumed",
    "webhook_suspended",
]

#: The `createdBy` of an operational event that no person caused (a suspension, a probe's
#: success, a 410, a breaker): the platform itself.
SYSTEM_ACTOR = Actor(
    id="00000000-0000-0000-0000-000000000000",
    login_name="docuhooks",
    name="docuhooks",
    email="",
    account_type="System",
)

#: A breaker event lists at most this many of the site's webhooks at the destination
#: (`webhookCount` says how many there are).
MAX_LISTED_WEBHOOKS = 100


@dataclass(frozen=True, slots=True)
class WebhookSummary:
    """The webhook an operational event is about, as it stands after the change."""

    id: str
    name: str
    url: str
    event_type: str
    status: str
    status_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "url": self.url,
            "eventType": self.event_type,
            "status": self.status,
            "statusReason": self.status_reason,
        }


def _when(moment: datetime | None) -> str | None:
    return format_timestamp(moment) if moment is not None else None


def _event(
    event_type: EventType, site_id: str, data: dict[str, Any], now: datetime, actor: Actor
) -> Event:
    return Event(
        event_type=event_type, site_id=site_id, created_by=actor, data=data, created_date=now
    )


def webhook_suspended(
    site_id: str,
    webhook: WebhookSummary,
    *,
    consecutive_failures: int,
    first_failure_at: datetime | None,
    next_probe_at: datetime | None,
    now: datetime,
) -> Event:
    return _event(
        EventType.WEBHOOK_SUSPENDED,
        site_id,
        {
            "webhook": webhook.to_dict(),
            "suspendedDate": _when(now),
            "consecutiveFailures": consecutive_failures,
            "firstFailureDate": _when(first_failure_at),
            "nextProbeDate": _when(next_probe_at),
        },
        now,
        SYSTEM_ACTOR,
    )


def webhook_resumed(
    site_id: str,
    webhook: WebhookSummary,
    *,
    resumed_by: str,
    suspended_at: datetime | None,
    now: datetime,
    actor: Actor = SYSTEM_ACTOR,
) -> Event:
    """`resumed_by` is `probe` (a probe attempt succeeded) or `admin` (an administrator
    resumed it; `actor` is then that person, the event's `createdBy`)."""
    if resumed_by not in ("probe", "admin"):
        raise ValueError(f"resumed_by must be probe or admin, not {resumed_by!r}")
    return _event(
        EventType.WEBHOOK_RESUMED,
        site_id,
        {
            "webhook": webhook.to_dict(),
            "resumedBy": resumed_by,
            "resumedDate": _when(now),
            "suspendedDate": _when(suspended_at),
        },
        now,
        actor,
    )


def webhook_deactivated(
    site_id: str, webhook: WebhookSummary, *, status_code: int, now: datetime
) -> Event:
    """The receiver answered 410 Gone, so the platform deactivated the webhook."""
    return _event(
        EventType.WEBHOOK_DEACTIVATED,
        site_id,
        {
            "webhook": webhook.to_dict(),
            "cause": "gone",
            "statusCode": status_code,
            "deactivatedDate": _when(now),
        },
        now,
        SYSTEM_ACTOR,
    )


def secret_grace_ending(
    site_id: str,
    webhook: WebhookSummary,
    *,
    secret_id: str | None,
    previous_secret_id: str | None,
    grace_ends_at: datetime,
    now: datetime,
) -> Event:
    return _event(
        EventType.WEBHOOK_SECRET_GRACE_ENDING,
        site_id,
        {
            "webhook": webhook.to_dict(),
            "secretId": secret_id,
            "previousSecretId": previous_secret_id,
            "graceEndsDate": _when(grace_ends_at),
        },
        now,
        SYSTEM_ACTOR,
    )


def _listed(webhooks: Sequence[WebhookSummary]) -> dict[str, Any]:
    return {
        "webhooks": [w.to_dict() for w in webhooks[:MAX_LISTED_WEBHOOKS]],
        "webhookCount": len(webhooks),
    }


def breaker_opened(
    site_id: str,
    destination: str,
    webhooks: Sequence[WebhookSummary],
    *,
    failures: int,
    next_probe_at: datetime | None,
    now: datetime,
) -> Event:
    return _event(
        EventType.DESTINATION_BREAKER_OPENED,
        site_id,
        {
            "destination": destination,
            "openedDate": _when(now),
            "failures": failures,
            "nextProbeDate": _when(next_probe_at),
            **_listed(webhooks),
        },
        now,
        SYSTEM_ACTOR,
    )


def breaker_closed(
    site_id: str,
    destination: str,
    webhooks: Sequence[WebhookSummary],
    *,
    opened_at: datetime | None,
    now: datetime,
) -> Event:
    return _event(
        EventType.DESTINATION_BREAKER_CLOSED,
        site_id,
        {
            "destination": destination,
            "closedDate": _when(now),
            "openedDate": _when(opened_at),
            **_listed(webhooks),
        },
        now,
        SYSTEM_ACTOR,
    )


def sample_data(event_type: EventType, now: datetime) -> dict[str, Any]:
    """A realistic `data` of an operational event, for a test send: about a sample webhook
    that does not exist (its id is all zeros but the last digit)."""
    host = "https://receiver.example"
    webhook = WebhookSummary(
        id="00000000-0000-0000-0000-000000000001",
        name="Sample webhook",
        url=f"{host}/hooks/docuhooks",
        event_type=EventType.NEW_WORK_ITEM_VERSION_COMPLETE.value,
        status="active",
        status_reason=None,
    )
    later = now + timedelta(minutes=10)
    first_failure = now - timedelta(hours=25)
    samples: dict[EventType, Event] = {
        EventType.WEBHOOK_SUSPENDED: webhook_suspended(
            "",
            replace(
                webhook,
                status="suspended",
                status_reason="suspended: 20 consecutive failed attempts since "
                f"{first_failure.isoformat()}",
            ),
            consecutive_failures=20,
            first_failure_at=first_failure,
            next_probe_at=later,
            now=now,
        ),
        EventType.WEBHOOK_RESUMED: webhook_resumed(
            "", webhook, resumed_by="probe", suspended_at=now - timedelta(hours=2), now=now
        ),
        EventType.WEBHOOK_DEACTIVATED: webhook_deactivated(
            "",
            replace(
                webhook,
                status="inactive",
                status_reason="deactivated: the receiver answered 410 Gone",
            ),
            status_code=410,
            now=now,
        ),
        EventType.WEBHOOK_SECRET_GRACE_ENDING: secret_grace_ending(
            "",
            webhook,
            secret_id="k_sample_new",
            previous_secret_id="k_sample_old",
            grace_ends_at=now + timedelta(hours=23),
            now=now,
        ),
        EventType.DESTINATION_BREAKER_OPENED: breaker_opened(
            "", f"{host}:443", [webhook], failures=5, next_probe_at=later, now=now
        ),
        EventType.DESTINATION_BREAKER_CLOSED: breaker_closed(
            "", f"{host}:443", [webhook], opened_at=now - timedelta(minutes=30), now=now
        ),
    }
    if event_type not in samples:
        raise ValueError(f"{event_type} is not an operational event")
    return samples[event_type].data
