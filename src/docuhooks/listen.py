"""`docuhooks listen`: a local receiver that verifies, prints and answers webhook calls.

It is built the way an integrator's receiver would be: the receiver SDK (`docuhooks.receiver`)
verifies each request and types its event, and the standard library's HTTP server carries it.
Nothing here reaches into the server, so what it shows is what a real receiver would see.

Replies: notifications get `status` (204 unless told otherwise, to try retries and
`Retry-After`); interview events get the answer file's answers (or 204); post-processing
events keep the documents as they are (inline, 200) or take the callback route (202, then
`PUT completeUrl` when an API token is given). Refused requests get the SDK's status (401, or
400 for a malformed request) and its message, which the platform keeps in its delivery log.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit

from docuhooks.receiver import (
    CustomInterviewEvent,
    InterviewLoadEvent,
    NewWorkItemVersionComplete,
    PostProcessingEvent,
    PostProcessingResult,
    VerificationError,
    Verifier,
    WebhookEvent,
    shorthand,
    write_hotdocs_xml,
)

#: Post-processing replies carry documents inline, so bodies can be large; beyond this, 413.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: The key of the answer file entry used when no entry names the event.
ANY_EVENT = "*"
PostProcessingMode = Literal["passthrough", "callback"]
WHSEC_PREFIX = "whsec_"


class ListenError(ValueError):
    """The listener's configuration cannot be used; the message says which part and why."""


# --- answers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerReply:
    """One answer set, ready to send, and its answers as (name, value) pairs for printing."""

    body: bytes
    content_type: str
    answers: tuple[tuple[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Lookup:
    """Answers chosen by what the user typed: the event's current answer `key` picks a row."""

    key: str
    rows: Mapping[str, AnswerReply]


class AnswerFile:
    """What the listener answers interview events with, read from one file.

    - HotDocs answer XML, canonical answer JSON (`{"answers": [...]}`) or shorthand answer JSON
      (`{"Client Name": "Jane"}`): answered to every interview event.
    - A JSON object whose every value is an object: keyed by `InterviewLoadEvent`, by an
      interview event name, by `CustomInterviewEvent` (any name) or by `*` (anything else),
      each an answer set in JSON or a lookup `{"lookup": "<answer name>", "rows": {"<value the
      user typed>": <answer set>}}`. Shorthand values are never objects, so this is unambiguous.

    An event nothing matches (or whose lookup finds no row) is answered 204: no answers.
    """

    def __init__(self, entries: Mapping[str, AnswerReply | Lookup]) -> None:
        self.entries = dict(entries)

    @classmethod
    def load(cls, path: str | Path) -> AnswerFile:
        try:
            content = Path(path).read_bytes()
        except OSError as exc:
            raise ListenError(f"answers file {path}: {exc.strerror or exc}") from None
        return cls.parse(content, where=f"answers file {path}")

    @classmethod
    def parse(cls, content: bytes, *, where: str = "answers") -> AnswerFile:
        if content.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
            return cls({ANY_EVENT: _xml_reply(content, where)})
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ListenError(f"{where}: neither HotDocs answer XML nor JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ListenError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data and "answers" not in data and all(isinstance(v, dict) for v in data.values()):
            return cls({key: _entry(value, f"{where}, {key!r}") for key, value in data.items()})
        return cls({ANY_EVENT: _json_reply(data, where)})

    def reply_to(self, event: InterviewLoadEvent | CustomInterviewEvent) -> AnswerReply | None:
        if isinstance(event, CustomInterviewEvent):
            keys = [event.interview_event_name, "CustomInterviewEvent", ANY_EVENT]
        else:
            keys = ["InterviewLoadEvent", ANY_EVENT]
        entry = next((self.entries[k] for k in keys if k in self.entries), None)
        if isinstance(entry, Lookup):
            # Only a CustomInterviewEvent carries the interview's answers to look up on.
            answers = event.answers if isinstance(event, CustomInterviewEvent) else {}
            typed = _answer_value(answers, entry.key)
            return None if typed is None else entry.rows.get(_lookup_text(typed))
        return entry


def _entry(value: dict[str, Any], where: str) -> AnswerReply | Lookup:
    if "lookup" not in value:
        return _json_reply(value, where)
    key, rows = value.get("lookup"), value.get("rows")
    if not isinstance(key, str) or not key or not isinstance(rows, dict):
        raise ListenError(
            f'{where}: a lookup is {{"lookup": "<answer name>", "rows": {{"<value>": answers}}}}'
        )
    replies = {}
    for typed, answers in rows.items():
        if not isinstance(answers, dict):
            raise ListenError(f"{where}, row {typed!r}: expected answer JSON, an object")
        replies[typed] = _json_reply(answers, f"{where}, row {typed!r}")
    return Lookup(key, replies)


def _json_reply(answer_set: dict[str, Any], where: str) -> AnswerReply:
    """Checked with the SDK's own writers, so a bad file fails at start-up, not mid-interview."""
    try:
        if isinstance(answer_set.get("answers"), list):
            write_hotdocs_xml(answer_set)
            pairs = tuple((a["name"], a.get("value")) for a in answer_set["answers"])
        else:
            pairs = tuple(shorthand(answer_set).items())
    except (ValueError, TypeError, KeyError) as exc:
        raise ListenError(f"{where}: not an answer set: {exc}") from None
    body = json.dumps(answer_set, separators=(",", ":")).encode("utf-8")
    return AnswerReply(body, "application/json", pairs)


def _xml_reply(content: bytes, where: str) -> AnswerReply:
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError as exc:
        raise ListenError(f"{where}: not well-formed XML: {exc}") from None
    if root.tag != "AnswerSet":
        raise ListenError(f"{where}: the root element is <{root.tag}>, expected <AnswerSet>")
    pairs = []
    for answer in root.iter("Answer"):
        leaves = ["".join(e.itertext()) for e in answer.iter() if len(e) == 0 and e is not answer]
        pairs.append((answer.get("name", ""), leaves[0] if len(leaves) == 1 else leaves))
    return AnswerReply(content, "application/xml", tuple(pairs))


def _answer_value(answer_json: Mapping[str, Any], name: str) -> Any:
    for answer in answer_json.get("answers") or []:
        if isinstance(answer, Mapping) and answer.get("name") == name:
            return answer.get("value")
    return None


def _lookup_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- what came in ----------------------------------------------------------------------------


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
            + f"  {self.method} {self.path}  {kind}  {verdict}  -> {self.status}"
        ]

        def row(label: str, text: str) -> None:
            lines.append(f"    {label:<10} {text}")

        if self.error is not None:
            row("why", str(self.error))
        if event is not None:
            test = "  [test event]" if event.test else ""
            row("event", f"{event.event_id} (delivery {self.delivery_id}, attempt {self.attempt})")
            row("user", f"{event.user.name} <{event.user.email}> ({event.user.account_type}){test}")
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
        self._write(json.dumps({"note": text}) if self.as_json else f"    {'note':<10} {text}\n")

    def _write(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)


# --- answering -------------------------------------------------------------------------------


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
    #: Checks requests with a `webhook-signature` header instead, when given: the SDK reads
    #: every secret of a Verifier as a whsec_ key for those, so they get the whsec_ ones alone.
    standard_webhooks_verifier: Verifier | None = None
    answers: AnswerFile | None = None
    #: The reply to NewWorkItemVersionComplete: a 2xx, or a failure to watch retries.
    notification_status: int = 204
    retry_after: int | None = None
    post_processing: PostProcessingMode = "passthrough"
    #: Lets the callback mode `PUT completeUrl` itself; without it, the command is printed.
    api_token: str | None = None
    on_request: Callable[[Received], None] = field(default=lambda record: None)
    on_note: Callable[[str], None] = field(default=lambda text: None)

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[Reply, Received]:
        lowered = {name.lower(): value for name, value in headers.items()}
        arrived = Received(
            at=datetime.now().astimezone(),
            method=method,
            path=_redacted(target),
            status=0,
            claimed_type=lowered.get("x-docuhooks-event-type"),
            delivery_id=lowered.get("x-docuhooks-delivery-id"),
            attempt=lowered.get("x-docuhooks-attempt"),
        )
        try:
            verifier = self.verifier
            if self.standard_webhooks_verifier is not None and "webhook-signature" in lowered:
                verifier = self.standard_webhooks_verifier
            event = verifier.verify(method, target, headers, body or None)
        except VerificationError as exc:
            error = {"error": {"code": type(exc).__name__, "message": str(exc)}}
            reply = Reply(exc.status_code, _JSON, json.dumps(error).encode("utf-8"))
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
            return Reply(200, _JSON, body), None, "inline reply: documents kept as they are"
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


_JSON = {"Content-Type": "application/json"}


def _redacted(target: str) -> str:
    parts = urlsplit(target)
    if not parts.query:
        return parts.path
    params = [(k, "[redacted]" if k == "token" else v) for k, v in parse_qsl(parts.query, True)]
    return f"{parts.path}?{urlencode(params, safe='[]')}"


# --- the HTTP server -------------------------------------------------------------------------


class ListenServer(ThreadingHTTPServer):
    """The standard library's threading server, bound at construction; `listener` may be set
    after binding (the demo learns its webhooks' secrets only once its port is known)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, listener: Listener | None = None) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.listener = listener

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else host
        shown = f"[{text}]" if self.address_family == socket.AF_INET6 else text
        return f"http://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ListenServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        listener = self.server.listener
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if listener is None or not 0 <= length <= MAX_BODY_BYTES:
            status = 503 if listener is None else 413
            self._send(Reply(status, _JSON, b'{"error": {"message": "not accepted"}}'))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        try:
            reply, _ = listener.handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception as exc:  # a bug here must still answer, and say what happened
            listener.on_note(f"{self.command} {_redacted(self.path)}: answered 500, {exc!r}")
            error = {"error": {"code": "ListenerError", "message": repr(exc)}}
            reply = Reply(500, _JSON, json.dumps(error).encode("utf-8"))
        self._send(reply)
        if reply.then is not None:
            reply.then()

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        # Every request is already reported by the listener, in a better form.
        pass


def build_listener(
    *,
    secrets: Sequence[str] = (),
    secret_file: str | Path | None = None,
    webhook_ids: Sequence[str] = (),
    auth_method: str | None = None,
    issuer: str | None = None,
    answers_file: str | Path | None = None,
    notification_status: int = 204,
    retry_after: int | None = None,
    post_processing: PostProcessingMode = "passthrough",
    api_token: str | None = None,
) -> Listener:
    """A listener from command-line style options; ListenError says what cannot be used."""
    all_secrets = list(secrets)
    if secret_file is not None:
        try:
            lines = Path(secret_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ListenError(f"secret file {secret_file}: {exc.strerror or exc}") from None
        all_secrets += [line.strip() for line in lines if line.strip()]
    if not all_secrets:
        raise ListenError(
            "give the webhook's secret with --secret (HMAC or whsec_ secret, or access token), "
            "or a file of them, one a line, with --secret-file"
        )
    audience = list(webhook_ids) or None
    whsec = [secret for secret in all_secrets if secret.startswith(WHSEC_PREFIX)]
    others = [secret for secret in all_secrets if not secret.startswith(WHSEC_PREFIX)]
    split = bool(whsec and others and auth_method is None)
    verifier = Verifier(
        secrets=others if split else all_secrets,
        audience=audience,
        auth_method=auth_method,
        issuer=issuer,
    )
    return Listener(
        verifier=verifier,
        standard_webhooks_verifier=(
            Verifier(secrets=whsec, audience=audience, auth_method="StandardWebhooks")
            if split
            else None
        ),
        answers=AnswerFile.load(answers_file) if answers_file is not None else None,
        notification_status=notification_status,
        retry_after=retry_after,
        post_processing=post_processing,
        api_token=api_token,
    )


def run(listener: Listener, *, host: str, port: int, as_json: bool = False) -> None:
    """Serve until Ctrl-C, printing every request on stdout (JSON lines with `as_json`)."""
    printer = Printer(as_json=as_json)
    listener.on_request = printer.received
    listener.on_note = printer.note
    try:
        server = ListenServer(host, port, listener)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    verifier = listener.verifier
    audience = verifier.audience or "any webhook (no --webhook-id: audience not checked)"
    secrets = len(verifier.secrets) + len(
        listener.standard_webhooks_verifier.secrets if listener.standard_webhooks_verifier else ()
    )
    # The banner goes to stderr in JSON mode, so stdout stays one JSON object a line.
    print(
        f"listening on {server.url} with {secrets} secret(s) for {audience}; Ctrl-C stops",
        file=sys.stderr if as_json else sys.stdout,
        flush=True,
    )
    if threading.current_thread() is threading.main_thread():
        # A service manager's SIGTERM stops it as cleanly as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
