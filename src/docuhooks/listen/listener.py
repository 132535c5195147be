"""Deciding the reply to each request: verify with the SDK, then answer by event type.

Notifications get `notification_status` (204 unless told otherwise, to try retries and
`Retry-After`); interview events get the answer file's answers (or 204); post-processing events
keep the documents as they are (inline, 200) or take the callback route (202, then
`PUT completeUrl` when an API token is given). Refused requests get the SDK's status (401, or
400 for a malformed request) and its message, which the platform keeps in its delivery log.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from docuhooks.core.clock import Clock, SystemClock
from docuhooks.listen.answers import AnswerFile
from docuhooks.listen.report import Received
from docuhooks_receiver import (
    CustomInterviewEvent,
    InterviewLoadEvent,
    PostProcessingEvent,
    PostProcessingResult,
    VerificationError,
    Verifier,
    WebhookEvent,
)

PostProcessingMode = Literal["passthrough", "callback"]
JSON_CONTENT = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Run after the reply has gone out (the post-processing callback).
    then: Callable[[], None] | None = None


@dataclass
class Listener:
    """Verifies requests with `verifier` and decides each reply. `on_request` sees every one."""

    verifier: Verifier
    answers: AnswerFile | None = None
    #: The reply to NewWorkItemVersionComplete: a 2xx, or a failure to watch retries.
    notification_status: int = 204
    retry_after: int | None = None
    post_processing: PostProcessingMode = "passthrough"
    #: Lets the callback mode `PUT completeUrl` itself; without it, the command is printed.
    api_token: str | None = None
    on_request: Callable[[Received], None] = field(default=lambda record: None)
    on_note: Callable[[str], None] = field(default=lambda text: None)
    #: When requests arrive, shown in local time.
    clock: Clock = field(default_factory=SystemClock)

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Reply, Received]:
        lowered = {name.lower(): value for name, value in headers.items()}
        arrived = Received(
            at=self.clock.now().astimezone(),
            method=method,
            path=redacted(target),
            status=0,
            claimed_type=lowered.get("x-docuhooks-event-type"),
            delivery_id=lowered.get("x-docuhooks-delivery-id"),
            attempt=lowered.get("x-docuhooks-attempt"),
        )
        try:
            event = self.verifier.verify(method, target, headers, body or None)
        except VerificationError as exc:
            error = {"error": {"code": type(exc).__name__, "message": str(exc)}}
            reply = Reply(exc.status_code, JSON_CONTENT, json.dumps(error).encode("utf-8"))
            return reply, self._report(replace(arrived, status=reply.status, error=exc))
        reply, answers, note = self._answer(event)
        record = replace(arrived, status=reply.status, event=event, answers=answers, note=note)
        return reply, self._report(record)

    def _answer(self, event: WebhookEvent) -> tuple[Reply, Any, str | None]:
        if isinstance(event, InterviewLoadEvent | CustomInterviewEvent):
            found = self.answers.reply_to(event) if self.answers else None
            if found is None:
                return Reply(204), None, None
            reply = Reply(200, {"Content-Type": found.content_type}, found.body)
            return reply, found.answers, None
        if isinstance(event, PostProcessingEvent):
            if self.post_processing == "callback":
                return self._callback(event)
            body = PostProcessingResult().to_json().encode("utf-8")
            return Reply(200, JSON_CONTENT, body), None, "inline reply: documents kept as they are"
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        return Reply(self.notification_status, headers), None, None

    def _callback(self, event: PostProcessingEvent) -> tuple[Reply, Any, str | None]:
        deadline = f"before {event.callback_deadline.isoformat()}"
        if self.api_token is None:
            note = (
                f"callback mode: complete it {deadline} with\n"
                f"      curl -X PUT -H 'Authorization: Bearer $TOKEN' '{event.complete_url}'"
            )
            return Reply(202), None, note
        token = self.api_token

        def complete() -> None:
            request = urllib.request.Request(
                event.complete_url, method="PUT", headers={"Authorization": f"Bearer {token}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    outcome = f"{response.status}"
            except urllib.error.HTTPError as exc:
                outcome = f"{exc.code} {exc.read(500).decode('utf-8', 'replace')}"
            except OSError as exc:
                outcome = f"failed: {exc}"
            self.on_note(f"PUT {event.complete_url} -> {outcome}")

        return Reply(202, then=complete), None, f"callback mode: completing {deadline}"

    def _report(self, record: Received) -> Received:
        self.on_request(record)
        return record


def redacted(target: str) -> str:
    parts = urlsplit(target)
    if not parts.query:
        return parts.path
    params = [(k, "[redacted]" if k == "token" else v) for k, v in parse_qsl(parts.query, True)]
    return f"{parts.path}?{urlencode(params, safe='[]')}"
