"""The four event types, and the platform's operational events, as typed objects, read from
the event object on the wire.

Parsing is strict about what a receiver relies on (ids, names, documents) and tolerant of fields
it does not know, so a receiver keeps working when the platform adds a field.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias, overload

from docuhooks_receiver._errors import MalformedRequest


@dataclass(frozen=True, slots=True)
class User:
    """The person (or service principal) whose action caused the event: `createdBy`."""

    id: str
    login_name: str
    name: str
    email: str
    account_type: str = "UserAccount"


@dataclass(frozen=True, slots=True)
class WorkItem:
    """The work item and the version the event is about.

    Not every event type carries every field: `name` and `work_group_id` are absent from
    post-processing events, `version_number` from interview events.
    """

    id: str
    version_id: str
    name: str | None = None
    version_number: int | None = None
    work_group_id: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Document:
    """An assembled document. `content` is present only in post-processing events, and only
    for documents up to 5 MiB; otherwise fetch the bytes from `url` with an API token."""

    id: str
    name: str
    file_name: str
    content_type: str
    size: int
    sha256: str
    url: str
    content: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class _Common:
    event_id: str
    #: None only for access-token GET calls, whose query parameters do not carry it.
    created_date: datetime | None
    site_id: str
    user: User
    #: True for the sample events an administrator sends with "test webhook".
    test: bool
    #: The event object as received, for fields this SDK does not model.
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class NewWorkItemVersionComplete(_Common):
    """A work item version is complete and its documents can be fetched. Reply with any 2xx."""

    work_item: WorkItem
    template: Template
    documents: tuple[Document, ...]


@dataclass(frozen=True, slots=True)
class InterviewLoadEvent(_Common):
    """A user opened an interview. Reply 200 with an answer set, or 204 for no answers."""

    interview_id: str
    work_item: WorkItem
    template: Template


@dataclass(frozen=True, slots=True)
class CustomInterviewEvent(_Common):
    """A user pressed an interview event button. Reply 200 with an answer set, or 204.

    `answers` is the interview's current answer set as sent (answer JSON); it is empty
    when the event came as GET parameters, which cannot carry it.
    """

    interview_id: str
    work_item: WorkItem
    template: Template
    interview_event_name: str
    answers: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PostProcessingEvent(_Common):
    """Documents were assembled and wait for this receiver.

    Reply 200 with a `PostProcessingResult` (inline mode), or 202 and later upload through the
    REST API and `PUT complete_url` before `callback_deadline` (callback mode).
    """

    work_item: WorkItem
    template: Template
    documents: tuple[Document, ...]
    callback_deadline: datetime
    complete_url: str


@dataclass(frozen=True, slots=True)
class WebhookSummary:
    """A webhook as an operational event describes it."""

    id: str
    name: str
    url: str
    event_type: str
    #: active, inactive or suspended, after the change the event reports.
    status: str
    status_reason: str | None = None


#: The platform's events about its own webhooks and their destinations.
OPERATIONAL_EVENT_TYPES = frozenset(
    {
        "WebhookSuspended",
        "WebhookResumed",
        "WebhookDeactivated",
        "WebhookSecretGraceEnding",
        "DestinationBreakerOpened",
        "DestinationBreakerClosed",
    }
)


@dataclass(frozen=True, slots=True)
class OperationalEvent(_Common):
    """One of `OPERATIONAL_EVENT_TYPES`: the platform telling a site's administrators about
    one of its webhooks (`webhook`) or about a destination (`destination`, with the site's
    `webhooks` that point at it). The rest of each type's fields are in `data`."""

    event_type: str
    #: The webhook the event is about; None for the breaker events.
    webhook: WebhookSummary | None
    #: The breaker events: `scheme://host:port`.
    destination: str | None
    #: The breaker events: the site's webhooks at the destination (at most 100).
    webhooks: tuple[WebhookSummary, ...]
    data: Mapping[str, Any] = field(repr=False)


WebhookEvent: TypeAlias = (
    NewWorkItemVersionComplete
    | InterviewLoadEvent
    | CustomInterviewEvent
    | PostProcessingEvent
    | OperationalEvent
)


def parse_event(event: Mapping[str, Any]) -> WebhookEvent:
    """The typed event for an event object; MalformedRequest names the bad field."""
    if not isinstance(event, Mapping):
        raise MalformedRequest(f"the event must be a JSON object, got {type(event).__name__}")
    reader = _Reader(event, "")
    event_type = reader.text("eventType")
    data = _Reader(reader.mapping("data"), "data.")
    common: dict[str, Any] = {
        "event_id": reader.text("eventId"),
        "created_date": reader.timestamp("createdDate", required=False),
        "site_id": reader.text("siteId"),
        "user": _user(_Reader(reader.mapping("createdBy"), "createdBy.")),
        "test": reader.flag("test"),
        "raw": event,
    }
    if event_type in OPERATIONAL_EVENT_TYPES:
        is_breaker = event_type.startswith("Destination")
        return OperationalEvent(
            **common,
            event_type=event_type,
            webhook=None if is_breaker else _webhook(data.mapping("webhook"), "data.webhook."),
            destination=data.text("destination") if is_breaker else None,
            webhooks=_webhooks(data) if is_breaker else (),
            data=data.source,
        )
    template = Template(id=data.text("templateId"), name=data.text("templateName"))
    if event_type == "NewWorkItemVersionComplete":
        return NewWorkItemVersionComplete(
            **common,
            work_item=WorkItem(
                id=data.text("workItemId"),
                version_id=data.text("workItemVersionId"),
                name=data.text("workItemName"),
                version_number=data.integer("versionNumber"),
                work_group_id=data.text("workGroupId"),
            ),
            template=template,
            documents=_documents(data),
        )
    if event_type in ("InterviewLoadEvent", "CustomInterviewEvent"):
        interview: dict[str, Any] = {
            "interview_id": data.text("interviewId"),
            "work_item": WorkItem(
                id=data.text("workItemId"),
                version_id=data.text("workItemVersionId"),
                name=data.text("workItemName"),
                work_group_id=data.text("workGroupId"),
            ),
            "template": template,
        }
        if event_type == "InterviewLoadEvent":
            return InterviewLoadEvent(**common, **interview)
        return CustomInterviewEvent(
            **common,
            **interview,
            interview_event_name=data.text("interviewEventName"),
            answers=data.mapping("answers", required=False),
        )
    if event_type == "PostProcessingEvent":
        return PostProcessingEvent(
            **common,
            work_item=WorkItem(
                id=data.text("workItemId"),
                version_id=data.text("workItemVersionId"),
                version_number=data.integer("versionNumber"),
            ),
            template=template,
            documents=_documents(data),
            callback_deadline=data.timestamp("callbackDeadline"),
            complete_url=data.text("completeUrl"),
        )
    raise MalformedRequest(
        f"eventType {event_type!r} is not one of NewWorkItemVersionComplete, "
        "InterviewLoadEvent, CustomInterviewEvent, PostProcessingEvent, "
        + ", ".join(sorted(OPERATIONAL_EVENT_TYPES))
    )


def _webhook(source: Mapping[str, Any], path: str) -> WebhookSummary:
    reader = _Reader(source, path)
    return WebhookSummary(
        id=reader.text("id"),
        name=reader.text("name"),
        url=reader.text("url"),
        event_type=reader.text("eventType"),
        status=reader.text("status"),
        status_reason=reader.text("statusReason", required=False) or None,
    )


def _webhooks(data: _Reader) -> tuple[WebhookSummary, ...]:
    summaries = []
    for index, item in enumerate(data.sequence("webhooks")):
        path = f"data.webhooks[{index}]."
        if not isinstance(item, Mapping):
            raise MalformedRequest(f"{path[:-1]}: expected an object, got {type(item).__name__}")
        summaries.append(_webhook(item, path))
    return tuple(summaries)


def _user(reader: _Reader) -> User:
    return User(
        id=reader.text("id"),
        login_name=reader.text("loginName"),
        name=reader.text("name"),
        email=reader.text("email"),
        account_type=reader.text("accountType", required=False) or "UserAccount",
    )


def _documents(data: _Reader) -> tuple[Document, ...]:
    items = data.sequence("documents")
    documents = []
    for index, item in enumerate(items):
        path = f"data.documents[{index}]."
        if not isinstance(item, Mapping):
            raise MalformedRequest(f"{path[:-1]}: expected an object, got {type(item).__name__}")
        doc = _Reader(item, path)
        documents.append(
            Document(
                id=doc.text("id"),
                name=doc.text("name"),
                file_name=doc.text("fileName"),
                content_type=doc.text("contentType"),
                size=doc.integer("size"),
                sha256=doc.text("sha256"),
                url=doc.text("url"),
                content=doc.base64("content"),
            )
        )
    return tuple(documents)


@dataclass(frozen=True, slots=True)
class _Reader:
    """Reads typed fields out of one JSON object, naming the full path of whatever is wrong."""

    source: Mapping[str, Any]
    path: str

    def _get(self, name: str, required: bool) -> Any:
        value = self.source.get(name)
        if value is None and required:
            raise MalformedRequest(f"{self.path}{name} is missing")
        return value

    def _wrong(self, name: str, expected: str, value: Any) -> MalformedRequest:
        return MalformedRequest(
            f"{self.path}{name}: expected {expected}, got {type(value).__name__} {value!r:.60}"
        )

    def text(self, name: str, *, required: bool = True) -> str:
        value = self._get(name, required)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._wrong(name, "a string", value)
        return value

    def integer(self, name: str) -> int:
        value = self._get(name, True)
        # GET parameters arrive as strings, so digits are accepted in text form too.
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(name, "an integer", value)
        return value

    def flag(self, name: str) -> bool:
        value = self._get(name, False)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return bool(value == "true")
        raise self._wrong(name, "true or false", value)

    @overload
    def timestamp(self, name: str) -> datetime: ...
    @overload
    def timestamp(self, name: str, *, required: bool) -> datetime | None: ...

    def timestamp(self, name: str, *, required: bool = True) -> datetime | None:
        value = self.text(name, required=required)
        if not value and not required:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise self._wrong(name, "an ISO 8601 timestamp", value) from None
        if moment.tzinfo is None:
            raise self._wrong(name, "a timestamp with a time zone", value)
        return moment

    def mapping(self, name: str, *, required: bool = True) -> Mapping[str, Any]:
        value = self._get(name, required)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._wrong(name, "an object", value)
        return value

    def sequence(self, name: str) -> Sequence[Any]:
        value = self._get(name, True)
        if not isinstance(value, list):
            raise self._wrong(name, "a list", value)
        return value

    def base64(self, name: str) -> bytes | None:
        value = self._get(name, False)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._wrong(name, "base64 text", value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):  # ValueError: not ASCII
            raise self._wrong(name, "base64 text", value) from None
