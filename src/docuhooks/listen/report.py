"""What the listener shows of each request: the record, readable or as one JSON line."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from docuhooks_receiver import (
    CustomInterviewEvent,
    InterviewLoadEvent,
    NewWorkItemVersionComplete,
    OperationalEvent,
    PostProcessingEvent,
    VerificationError,
    WebhookEvent,
)


@dataclass(frozen=True, slots=True)
class Received:
    """One request and how the listener answered it."""

    at: datetime
    method: str
    #: The request target with any `token` parameter redacted.
    path: str
    status: int
    event: WebhookEvent | None = None
    error: VerificationError | None = None
    #: `X-Docuhooks-Event-Type` as sent: what a refused request claimed to be.
    claimed_type: str | None = None
    delivery_id: str | None = None
    attempt: str | None = None
    #: The answers returned to an interview event (None: not an interview event, or 204).
    answers: tuple[tuple[str, Any], ...] | None = None
    note: str | None = None

    @property
    def event_type(self) -> str | None:
        if isinstance(self.event, OperationalEvent):
            return self.event.event_type  # one class for the six operational types
        return type(self.event).__name__ if self.event is not None else self.claimed_type

    def to_json(self) -> dict[str, Any]:
        event = self.event
        record: dict[str, Any] = {
            "time": self.at.isoformat(),
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "verified": event is not None,
            "error": None,
            "eventType": self.event_type,
            "eventId": event.event_id if event else None,
            "deliveryId": self.delivery_id,
            "attempt": self.attempt,
        }
        if self.error is not None:
            record["error"] = {"code": type(self.error).__name__, "message": str(self.error)}
        if event is not None:
            record["test"] = event.test
            record["user"] = {
                "id": event.user.id,
                "loginName": event.user.login_name,
                "name": event.user.name,
                "email": event.user.email,
            }
        if isinstance(event, OperationalEvent):
            record["about"] = _about(event)
        elif event is not None:
            work_item = event.work_item
            record["workItem"] = {
                "id": work_item.id,
                "name": work_item.name,
                "versionId": work_item.version_id,
                "versionNumber": work_item.version_number,
            }
            record["template"] = event.template.name
            record["documents"] = [
                {"name": d.name, "fileName": d.file_name, "size": d.size, "sha256": d.sha256}
                for d in _documents(event)
            ]
            if isinstance(event, CustomInterviewEvent):
                record["interviewEventName"] = event.interview_event_name
        if self.answers is not None:
            record["answers"] = [{"name": name, "value": value} for name, value in self.answers]
        if self.note:
            record["note"] = self.note
        return record

    def pretty(self) -> str:
        event = self.event
        verdict = "verified" if event else f"REFUSED {type(self.error).__name__}"
        kind = self.event_type or "(no event type)"
        if event is None and self.claimed_type:
            kind += " (claimed)"
        lines = [
            f"{self.at:%H:%M:%S.%f}"[:12]
            + visible(f"  {self.method} {self.path}  {kind}  {verdict}  -> {self.status}")
        ]

        def row(label: str, text: str) -> None:
            lines.append(f"    {label:<10} {visible(text)}")

        if self.error is not None:
            row("why", str(self.error))
        if event is not None:
            test = "  [test event]" if event.test else ""
            row("event", f"{event.event_id} (delivery {self.delivery_id}, attempt {self.attempt})")
            row("user", f"{event.user.name} <{event.user.email}> ({event.user.account_type}){test}")
            if isinstance(event, OperationalEvent):
                row("about", _about(event))
                if self.note:
                    row("note", self.note)
                return "\n".join(lines)
            item = event.work_item
            number = f"v{item.version_number}" if item.version_number is not None else None
            named = " ".join(part for part in (item.name, number) if part)
            row("work item", f"{named} ({item.id}, version {item.version_id})".lstrip())
            row("template", event.template.name)
            if isinstance(event, CustomInterviewEvent):
                row("button", event.interview_event_name)
            for document in _documents(event):
                inline = ", content inline" if document.content is not None else ""
                row(
                    "document",
                    f"{document.name} | {document.file_name} | {document.size} bytes{inline}"
                    f" | sha256 {document.sha256}",
                )
            if isinstance(event, InterviewLoadEvent | CustomInterviewEvent):
                row("answered", _describe(self.answers) if self.answers else "nothing (204)")
        if self.note:
            row("note", self.note)
        return "\n".join(lines)


#: C0 and C1 controls and DEL. What the readable view prints comes from the request (its
#: path and headers, from anyone who reaches the port) and from the event (work item,
#: template, user and file names, which the platform's users choose): printed as they are,
#: `\x1b`, `\x9b` and `\x07` would drive the terminal and a line break would forge a row.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """`text` with each control character shown as its escape (`\\x1b`), not obeyed."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _documents(event: WebhookEvent) -> Sequence[Any]:
    if isinstance(event, NewWorkItemVersionComplete | PostProcessingEvent):
        return event.documents
    return ()


def _describe(answers: Sequence[tuple[str, Any]]) -> str:
    return ", ".join(f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in answers)


class Printer:
    """Writes each request to `out`: a readable block, or one JSON object a line."""

    def __init__(self, out: TextIO | None = None, *, as_json: bool = False) -> None:
        self.out = out or sys.stdout
        self.as_json = as_json
        self._lock = threading.Lock()

    def received(self, record: Received) -> None:
        text = json.dumps(record.to_json()) if self.as_json else record.pretty() + "\n"
        self._write(text)

    def note(self, text: str) -> None:
        shown = (
            json.dumps({"note": text}) if self.as_json else f"    {'note':<10} {visible(text)}\n"
        )
        self._write(shown)

    def _write(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)


def _about(event: OperationalEvent) -> str:
    """What an operational event is about: its webhook, or its destination and webhooks."""
    if event.webhook is not None:
        hook = event.webhook
        return f"webhook {hook.name} ({hook.id}) {hook.status}: {hook.url}"
    names = ", ".join(hook.name for hook in event.webhooks)
    return f"destination {event.destination} ({names})"
