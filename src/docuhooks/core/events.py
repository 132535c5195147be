"""Event and webhook vocabulary shared by every layer, and the event object on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from docuhooks.core.ids import uuid7


class EventType(StrEnum):
    NEW_WORK_ITEM_VERSION_COMPLETE = "NewWorkItemVersionComplete"
    CUSTOM_INTERVIEW_EVENT = "CustomInterviewEvent"
    INTERVIEW_LOAD_EVENT = "InterviewLoadEvent"
    POST_PROCESSING_EVENT = "PostProcessingEvent"
    # Operational events: the platform's own events about webhooks (`core.operational`).
    WEBHOOK_SUSPENDED = "WebhookSuspended"
    WEBHOOK_RESUMED = "WebhookResumed"
    WEBHOOK_DEACTIVATED = "WebhookDeactivated"
    WEBHOOK_SECRET_GRACE_ENDING = "WebhookSecretGraceEnding"
    DESTINATION_BREAKER_OPENED = "DestinationBreakerOpened"
    DESTINATION_BREAKER_CLOSED = "DestinationBreakerClosed"


class AuthMethod(StrEnum):
    HMAC = "HMAC"
    ACCESS_TOKEN = "AccessToken"
    STANDARD_WEBHOOKS = "StandardWebhooks"


class Verb(StrEnum):
    GET = "GET"
    POST = "POST"


#: The platform's events about its own webhooks and destinations. Only a SiteAdministrator
#: may subscribe a webhook to them; they take no scopes and are delivered like any
#: notification.
OPERATIONAL_EVENTS = frozenset(
    {
        EventType.WEBHOOK_SUSPENDED,
        EventType.WEBHOOK_RESUMED,
        EventType.WEBHOOK_DEACTIVATED,
        EventType.WEBHOOK_SECRET_GRACE_ENDING,
        EventType.DESTINATION_BREAKER_OPENED,
        EventType.DESTINATION_BREAKER_CLOSED,
    }
)
#: Event types whose calls are notifications: durable, retried, delivered by workers.
NOTIFICATION_EVENTS = frozenset({EventType.NEW_WORK_ITEM_VERSION_COMPLETE} | OPERATIONAL_EVENTS)
#: Event types whose calls a person waits for: synchronous, never retried.
INTERVIEW_EVENTS = frozenset({EventType.INTERVIEW_LOAD_EVENT, EventType.CUSTOM_INTERVIEW_EVENT})


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a `Z`, as every timestamp on the wire is written."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Actor:
    """The user (or service principal) whose action caused an event: the event's `createdBy`."""

    id: str
    login_name: str
    name: str
    email: str
    account_type: str = "UserAccount"

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "loginName": self.login_name,
            "name": self.name,
            "email": self.email,
            "accountType": self.account_type,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """One occurrence on the platform, as it goes over the wire."""

    event_type: EventType
    site_id: str
    created_by: Actor
    data: dict[str, Any]
    event_id: str = field(default_factory=uuid7)
    #: When it happened, by the caller's clock (`ctx.now()`): core reads no clock itself.
    created_date: datetime = field(kw_only=True)
    test: bool = False

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "eventId": self.event_id,
            "eventType": str(self.event_type),
            "createdDate": format_timestamp(self.created_date),
            "createdBy": self.created_by.to_dict(),
            "siteId": self.site_id,
            "data": self.data,
        }
        if self.test:
            body["test"] = True
        return body
