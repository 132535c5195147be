"""`docuhooks listen` over real HTTP: requests signed as the delivery worker signs them, for
every authentication method, verified, printed and answered; refusals carry the SDK's message;
interview events are answered from the answer file in each of its formats."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from docuhooks.core.clock import utcnow
from docuhooks.core.events import Actor, AuthMethod, Event, EventType, Verb
from docuhooks.core.operational import sample_data
from docuhooks.core.signing import SigningSecret, WebhookTarget, build_request, generate_secret
from docuhooks.listen import (
    AnswerFile,
    Listener,
    ListenError,
    ListenServer,
    Printer,
    build_listener,
)
from docuhooks_receiver import AccessToken, HmacSecret, StandardWebhooksSecret, VerificationError

WEBHOOK_ID = "7e5c1d2a-0b7c-4a55-9b4e-1f1f7d0e2c11"
HMAC = generate_secret(AuthMethod.HMAC)
WHSEC = generate_secret(AuthMethod.STANDARD_WEBHOOKS)
ACCESS_TOKEN = "legacy-access-token-0123456789"
ANN = Actor(id="0f9d7c1e", login_name="ann@example.com", name="Ann Lee", email="ann@example.com")
PDF = b"%PDF-1.7\n%%EOF\n"
DOCUMENT = {
    "id": "d0c5",
    "name": "Lease",
    "fileName": "lease.pdf",
    "contentType": "application/pdf",
    "size": len(PDF),
    "sha256": "ab" * 32,
    "url": "https://acme.example/api/v1/workitems/a1/versions/b2/documents/d0c5/content",
}
WORK_ITEM = {
    "workItemId": "a1a1",
    "workItemName": "Lease for Jane",
    "workItemVersionId": "b2b2",
    "workGroupId": "f5f5",
    "templateId": "c3c3",
    "templateName": "Residential lease",
}
INTERVIEW = WORK_ITEM | {"interviewId": "e4e4"}


def lookup_data(client: str) -> dict[str, Any]:
    return INTERVIEW | {
        "interviewEventName": "Look up client",
        "answers": {"answers": [{"name": "Client Name", "type": "text", "value": client}]},
    }


DATA: dict[EventType, dict[str, Any]] = {
    EventType.NEW_WORK_ITEM_VERSION_COMPLETE: WORK_ITEM
    | {"versionNumber": 2, "documents": [DOCUMENT]},
    EventType.INTERVIEW_LOAD_EVENT: INTERVIEW,
    EventType.CUSTOM_INTERVIEW_EVENT: lookup_data("Jane"),
}


def signed(
    url: str,
    event_type: EventType,
    data: dict[str, Any],
    auth: AuthMethod = AuthMethod.HMAC,
    verb: Verb = Verb.POST,
    secret: SigningSecret | None = None,
    webhook_id: str = WEBHOOK_ID,
) -> tuple[httpx.Response, str]:
    """Send `event_type` to the listener at `url` as the platform would; the reply and eventId."""
    if secret is None:
        secret = {AuthMethod.HMAC: HMAC, AuthMethod.STANDARD_WEBHOOKS: WHSEC}.get(auth)
    target = WebhookTarget(
        webhook_id=webhook_id,
        url=url + "/hooks",
        verb=verb,
        auth_method=auth,
        issuer="https://acme.example",
        secret=secret,
        access_token=ACCESS_TOKEN if auth is AuthMethod.ACCESS_TOKEN else None,
    )
    event = Event(
        event_type=event_type, site_id="51e5", created_by=ANN, data=data, created_date=utcnow()
    ).to_dict()
    request = build_request(
        event,
        target,
        delivery_id="dlv-1",
        attempt=1,
        now=datetime.now(UTC),
        user_agent="docuhooks/test",
    )
    response = httpx.request(
        request.method, request.url, headers=dict(request.headers), content=request.body
    )
    return response, event["eventId"]


def all_secrets() -> dict[str, Any]:
    return {
        "hmac_secrets": [HMAC.value],
        "whsec_secrets": [WHSEC.value],
        "access_tokens": [ACCESS_TOKEN],
    }


@contextmanager
def listening(listener: Listener) -> Iterator[str]:
    server = ListenServer("127.0.0.1", 0, listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def make_listener(as_json: bool = True, **options: Any) -> tuple[Listener, io.StringIO]:
    """A listener for all three secrets of this module's webhook, printing into a buffer."""
    out = io.StringIO()
    printer = Printer(out, as_json=as_json)
    answers = options.pop("answers", None)
    listener = build_listener(**all_secrets(), webhook_ids=[WEBHOOK_ID], **options)
    listener.answers = answers
    listener.on_request = printer.received
    listener.on_note = printer.note
    return listener, out


def json_lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line]


@pytest.mark.parametrize(
    ("auth", "verb", "event_type"),
    [
        (AuthMethod.HMAC, Verb.POST, EventType.NEW_WORK_ITEM_VERSION_COMPLETE),
        (AuthMethod.HMAC, Verb.GET, EventType.INTERVIEW_LOAD_EVENT),
        (AuthMethod.STANDARD_WEBHOOKS, Verb.POST, EventType.NEW_WORK_ITEM_VERSION_COMPLETE),
        (AuthMethod.ACCESS_TOKEN, Verb.POST, EventType.NEW_WORK_ITEM_VERSION_COMPLETE),
        (AuthMethod.ACCESS_TOKEN, Verb.GET, EventType.INTERVIEW_LOAD_EVENT),
    ],
)
def test_each_method_is_verified_answered_and_printed(
    auth: AuthMethod, verb: Verb, event_type: EventType
) -> None:
    listener, out = make_listener()
    with listening(listener) as url:
        response, event_id = signed(url, event_type, DATA[event_type], auth, verb)
    assert response.status_code == 204, response.text
    [line] = json_lines(out)
    assert line["verified"] is True and line["error"] is None
    assert line["eventType"] == event_type.value and line["eventId"] == event_id
    assert line["method"] == verb.value and line["status"] == 204
    assert line["user"]["loginName"] == "ann@example.com"
    assert line["workItem"]["id"] == "a1a1" and line["workItem"]["versionId"] == "b2b2"
    assert line["deliveryId"] == "dlv-1" and line["attempt"] == "1"
    assert "token=" not in line["path"] or "token=[redacted]" in line["path"]
    if event_type is EventType.NEW_WORK_ITEM_VERSION_COMPLETE:
        assert line["documents"] == [
            {"name": "Lease", "fileName": "lease.pdf", "size": len(PDF), "sha256": "ab" * 32}
        ]


def test_the_readable_view_shows_the_event_user_work_item_and_documents() -> None:
    listener, out = make_listener(as_json=False)
    with listening(listener) as url:
        event_type = EventType.NEW_WORK_ITEM_VERSION_COMPLETE
        _, event_id = signed(url, event_type, DATA[event_type])
        signed(url, EventType.INTERVIEW_LOAD_EVENT, INTERVIEW, verb=Verb.GET)
    text = out.getvalue()
    assert "POST /hooks  NewWorkItemVersionComplete  verified  -> 204" in text
    assert event_id in text and "(delivery dlv-1, attempt 1)" in text
    assert "Ann Lee <ann@example.com>" in text
    assert "Lease for Jane v2 (a1a1, version b2b2)" in text
    assert f"lease.pdf | {len(PDF)} bytes | sha256 {'ab' * 32}" in text
    # The HMAC token of a GET is a credential: it never reaches the terminal.
    assert "GET /hooks?token=[redacted]  InterviewLoadEvent  verified  -> 204" in text
    assert "answered   nothing (204)" in text


#: Terminal controls a tenant can put in what the readable view prints: CSI (7-bit and the
#: one-byte C1 form), an OSC that sets the window title (ended by BEL), and a line break
#: that would forge a row of its own.
HOSTILE = "\x1b[2J\x9b31m\x1b]0;owned\x07\r\n    note       forged"


def test_the_readable_view_prints_no_terminal_controls_from_the_request() -> None:
    """Work item, template, user and file names come from any user of the platform (the API
    accepts controls in them), and an unsigned request's path and claimed type from anyone
    who reaches the port: none may drive the integrator's terminal or forge a line."""
    listener, out = make_listener(as_json=False)
    evil = Actor(
        id="0f9d7c1e", login_name="eve@example.com", name=f"Eve{HOSTILE}", email="eve@example.com"
    )
    data = WORK_ITEM | {
        "workItemName": f"Lease{HOSTILE}",
        "templateName": f"Template{HOSTILE}",
        "versionNumber": 2,
        "documents": [DOCUMENT | {"name": f"Doc{HOSTILE}", "fileName": f"f{HOSTILE}.pdf"}],
    }
    with listening(listener) as url:
        target = WebhookTarget(
            webhook_id=WEBHOOK_ID,
            url=url + "/hooks",
            verb=Verb.POST,
            auth_method=AuthMethod.HMAC,
            issuer="https://acme.example",
            secret=HMAC,
        )
        event = Event(
            event_type=EventType.NEW_WORK_ITEM_VERSION_COMPLETE,
            site_id="51e5",
            created_by=evil,
            data=data,
            created_date=utcnow(),
        ).to_dict()
        request = build_request(
            event,
            target,
            delivery_id="dlv-1",
            attempt=1,
            now=datetime.now(UTC),
            user_agent="docuhooks/test",
        )
        answer = httpx.request(
            request.method, request.url, headers=dict(request.headers), content=request.body
        )
        assert answer.status_code == 204, answer.text
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            raw.sendall(
                b"POST /hooks\x1b[2J\x9b31m HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                b"X-Docuhooks-Event-Type: \x1b]0;owned\x07\r\nConnection: close\r\n\r\n"
            )
            raw.recv(65536)
    text = out.getvalue()
    shown = [c for c in text if c != "\n" and (c < " " or "\x7f" <= c <= "\x9f")]
    assert shown == [], f"terminal controls printed: {shown!r}"
    assert "\n    note       forged" not in text
    # Still readable: the names are there, their controls shown as escapes.
    assert "Lease" in text and "Template" in text and "Eve" in text


def test_a_bad_signature_is_refused_with_the_sdks_message() -> None:
    listener, out = make_listener()
    stranger = SigningSecret("k-other", "another-webhooks-secret-0123456789abcdef")
    event_type = EventType.NEW_WORK_ITEM_VERSION_COMPLETE
    with listening(listener) as url:
        response, _ = signed(url, event_type, DATA[event_type], secret=stranger)
    # What the SDK says about this very request, word for word.
    with pytest.raises(VerificationError) as refused:
        listener.verifier.verify(
            "POST",
            "/hooks",
            {"Content-Type": "application/x-www-form-urlencoded"},
            response.request.content,
        )
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "BadSignature", "message": str(refused.value)}}
    [line] = json_lines(out)
    assert line["verified"] is False and line["status"] == 401
    assert line["error"] == {"code": "BadSignature", "message": str(refused.value)}
    assert line["eventType"] == event_type.value  # as claimed by the header
    assert line["eventId"] is None


def test_a_token_for_another_webhook_and_a_malformed_request_are_refused() -> None:
    listener, out = make_listener(as_json=False)
    event_type = EventType.NEW_WORK_ITEM_VERSION_COMPLETE
    with listening(listener) as url:
        other, _ = signed(url, event_type, DATA[event_type], webhook_id="someone-else")
        malformed = httpx.post(
            url + "/hooks", content=b"token=abc", headers={"Content-Type": "text/plain"}
        )
        bare = httpx.get(url + "/")
    assert other.status_code == 401 and other.json()["error"]["code"] == "WrongAudience"
    assert "someone-else" in other.json()["error"]["message"]
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "MalformedRequest"
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "MissingToken"
    text = out.getvalue()
    assert "REFUSED WrongAudience  -> 401" in text
    assert "REFUSED MalformedRequest  -> 400" in text
    assert "why        an HMAC POST must be application/x-www-form-urlencoded" in text


CANONICAL = {
    "answers": [
        {"name": "Client Name", "type": "text", "value": "Jane Smith"},
        {"name": "Fee", "type": "number", "value": 1500},
        {"name": "Child Name", "type": "text", "value": ["Ann", "Bob"]},
    ]
}
SHORTHAND = {"Client Name": "Jane Smith", "Fee": 1500, "Child Name": ["Ann", "Bob"]}
HOTDOCS = b"""<?xml version="1.0" encoding="UTF-8"?>
<AnswerSet version="1.1">
  <Answer name="Client Name"><TextValue>Jane Smith</TextValue></Answer>
  <Answer name="Fee"><NumValue>1500</NumValue></Answer>
  <Answer name="Child Name"><RptValue>
    <TextValue>Ann</TextValue><TextValue>Bob</TextValue>
  </RptValue></Answer>
</AnswerSet>
"""


@pytest.mark.parametrize(
    ("content", "content_type", "printed_fee"),
    [
        (json.dumps(CANONICAL).encode(), "application/json", 1500),
        (json.dumps(SHORTHAND).encode(), "application/json", 1500),
        (HOTDOCS, "application/xml", "1500"),
    ],
    ids=["canonical", "shorthand", "hotdocs-xml"],
)
@pytest.mark.parametrize(
    "event_type", [EventType.INTERVIEW_LOAD_EVENT, EventType.CUSTOM_INTERVIEW_EVENT]
)
def test_interview_events_are_answered_from_the_file(
    tmp_path: Path, content: bytes, content_type: str, printed_fee: Any, event_type: EventType
) -> None:
    answers = tmp_path / "answers"
    answers.write_bytes(content)
    listener, out = make_listener(answers=AnswerFile.load(answers))
    with listening(listener) as url:
        response, _ = signed(url, event_type, DATA[event_type])
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    if content_type == "application/json":
        assert response.json() == json.loads(content)
    else:
        assert response.content == content
    [line] = json_lines(out)
    assert line["answers"] == [
        {"name": "Client Name", "value": "Jane Smith"},
        {"name": "Fee", "value": printed_fee},
        {"name": "Child Name", "value": ["Ann", "Bob"]},
    ]


def test_a_keyed_file_answers_by_event_and_looks_up_what_the_user_typed(tmp_path: Path) -> None:
    keyed = {
        "InterviewLoadEvent": {"Client Name": "Jane"},
        "Look up client": {
            "lookup": "Client Name",
            "rows": {"Jane": {"Fee": 1500}, "Acme Ltd": {"Fee": 12000}},
        },
        "Look up fee": {"Fee": 99},
    }
    path = tmp_path / "answers.json"
    path.write_text(json.dumps(keyed))
    listener, out = make_listener(answers=AnswerFile.load(path))
    with listening(listener) as url:
        load, _ = signed(url, EventType.INTERVIEW_LOAD_EVENT, INTERVIEW)
        jane, _ = signed(url, EventType.CUSTOM_INTERVIEW_EVENT, lookup_data("Jane"))
        acme, _ = signed(url, EventType.CUSTOM_INTERVIEW_EVENT, lookup_data("Acme Ltd"))
        nobody, _ = signed(url, EventType.CUSTOM_INTERVIEW_EVENT, lookup_data("Nobody"))
        other_button = lookup_data("Jane") | {"interviewEventName": "Look up fee"}
        fee, _ = signed(url, EventType.CUSTOM_INTERVIEW_EVENT, other_button)
        unknown_button = lookup_data("Jane") | {"interviewEventName": "Something else"}
        unknown, _ = signed(url, EventType.CUSTOM_INTERVIEW_EVENT, unknown_button)
    assert load.json() == {"Client Name": "Jane"}
    assert jane.json() == {"Fee": 1500} and acme.json() == {"Fee": 12000}
    assert fee.json() == {"Fee": 99}
    assert nobody.status_code == 204 and unknown.status_code == 204
    lines = json_lines(out)
    assert [line.get("answers") for line in lines] == [
        [{"name": "Client Name", "value": "Jane"}],
        [{"name": "Fee", "value": 1500}],
        [{"name": "Fee", "value": 12000}],
        None,
        [{"name": "Fee", "value": 99}],
        None,
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "neither HotDocs answer XML nor JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b"<Answers/>", "the root element is <Answers>, expected <AnswerSet>"),
        (b"<AnswerSet>", "not well-formed XML"),
        (
            json.dumps({"answers": [{"name": "Fee", "type": "money", "value": 1}]}).encode(),
            "unknown type 'money'",
        ),
        (json.dumps({"Fee": {"amount": 1}, "Client": "x"}).encode(), "cannot be an answer value"),
        (
            json.dumps({"Look up": {"lookup": "Client Name", "rows": ["Jane"]}}).encode(),
            "'Look up': a lookup is {\"lookup\"",
        ),
    ],
)
def test_an_unusable_answer_file_is_refused_at_start(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "answers"
    path.write_bytes(content)
    with pytest.raises(ListenError, match="answers file") as refused:
        AnswerFile.load(path)
    assert message in str(refused.value)


def test_notifications_get_the_chosen_status_and_retry_after() -> None:
    listener, out = make_listener(notification_status=503, retry_after=30)
    event_type = EventType.NEW_WORK_ITEM_VERSION_COMPLETE
    with listening(listener) as url:
        response, _ = signed(url, event_type, DATA[event_type])
    assert response.status_code == 503 and response.headers["retry-after"] == "30"
    assert json_lines(out)[0]["status"] == 503


def post_processing_data(complete_url: str) -> dict[str, Any]:
    return WORK_ITEM | {
        "versionNumber": 2,
        "documents": [DOCUMENT | {"content": base64.b64encode(PDF).decode()}],
        "callbackDeadline": "2030-01-01T00:00:00Z",
        "completeUrl": complete_url,
    }


def test_post_processing_passthrough_keeps_the_documents() -> None:
    listener, out = make_listener()
    with listening(listener) as url:
        response, _ = signed(
            url, EventType.POST_PROCESSING_EVENT, post_processing_data("https://acme.example/c")
        )
    assert response.status_code == 200 and response.json() == {"documents": []}
    [line] = json_lines(out)
    assert line["note"] == "inline reply: documents kept as they are"


def test_post_processing_callback_completes_with_the_api_token() -> None:
    completed: list[tuple[str, str, str | None]] = []
    done = threading.Event()

    class Platform(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            completed.append((self.command, self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            done.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    platform = HTTPServer(("127.0.0.1", 0), Platform)
    threading.Thread(target=platform.serve_forever, daemon=True).start()
    complete_url = (
        f"http://127.0.0.1:{platform.server_port}/api/v1/workitems/a1/versions/b2/complete"
    )
    listener, out = make_listener(post_processing="callback", api_token="dht_secret-token")
    try:
        with listening(listener) as url:
            response, _ = signed(
                url, EventType.POST_PROCESSING_EVENT, post_processing_data(complete_url)
            )
            assert done.wait(10)
    finally:
        platform.shutdown()
        platform.server_close()
    assert response.status_code == 202
    assert completed == [
        ("PUT", "/api/v1/workitems/a1/versions/b2/complete", "Bearer dht_secret-token")
    ]
    lines = json_lines(out)
    assert lines[0]["status"] == 202 and "callback mode" in lines[0]["note"]
    assert lines[1] == {"note": f"PUT {complete_url} -> 200"}


def test_build_listener_reads_secret_files_and_refuses_no_secret(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.txt"
    secrets_file.write_text(f"{WHSEC.value}\n\n")
    listener = build_listener(
        secret_file=secrets_file, hmac_secrets=[HMAC.value], access_tokens=[ACCESS_TOKEN]
    )
    # One Verifier holds them all, each typed, so one listener serves webhooks of every
    # method, and no secret checks a request of another method.
    assert listener.verifier.secrets == (
        StandardWebhooksSecret(WHSEC.value),
        HmacSecret(HMAC.value),
        AccessToken(ACCESS_TOKEN),
    )
    assert listener.verifier.audience is None
    with pytest.raises(ListenError, match="--secret"):
        build_listener()


def test_plain_secrets_take_the_method_auth_method_names(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.txt"
    secrets_file.write_text(f"{HMAC.value}\n{ACCESS_TOKEN}\n")
    with pytest.raises(ValueError, match="could be an HMAC secret or an access token"):
        build_listener(secret_file=secrets_file)
    pinned = build_listener(secret_file=secrets_file, auth_method="HMAC")
    assert pinned.verifier.secrets == (HmacSecret(HMAC.value), HmacSecret(ACCESS_TOKEN))
    with pytest.raises(ValueError, match="marks a Standard Webhooks secret"):
        build_listener(secrets=[WHSEC.value], auth_method="HMAC")
    with pytest.raises(ValueError, match="blank"):
        build_listener(hmac_secrets=["  "])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_command_prints_json_lines_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    answers = tmp_path / "answers.xml"
    answers.write_bytes(HOTDOCS)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "docuhooks",
        "listen",
        "--port",
        str(port),
        "--json",
        "--hmac-secret",
        HMAC.value,
        "--webhook-id",
        WEBHOOK_ID,
        "--answers",
        str(answers),
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None and process.stdout is not None
        banner = process.stderr.readline()
        assert f"listening on http://127.0.0.1:{port}" in banner
        response, event_id = signed(
            f"http://127.0.0.1:{port}", EventType.INTERVIEW_LOAD_EVENT, INTERVIEW
        )
        assert response.status_code == 200 and response.content == HOTDOCS
        line = json.loads(process.stdout.readline())
        assert line["eventId"] == event_id and line["verified"] is True
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "stopped" in stderr and "Traceback" not in stderr


def test_the_command_refuses_unusable_options(tmp_path: Path) -> None:
    bad = tmp_path / "answers.json"
    bad.write_text("{")
    for arguments, message in (
        ([], "--secret"),
        (["--secret", "s" * 32], "could be an HMAC secret or an access token"),
        (["--hmac-secret", "whsec_AAAA"], "marks a Standard Webhooks secret"),
        (["--hmac-secret", "s" * 32, "--answers", str(bad)], "neither HotDocs answer XML nor JSON"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "docuhooks", "listen", *arguments],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2 and message in result.stderr


def test_a_failure_while_answering_is_still_answered_and_reported() -> None:
    class Broken(AnswerFile):
        def reply_to(self, event: Any) -> Any:
            raise RuntimeError("answer table unavailable")

    listener, out = make_listener(answers=Broken({}))
    with listening(listener) as url:
        response, _ = signed(url, EventType.INTERVIEW_LOAD_EVENT, INTERVIEW, verb=Verb.GET)
    assert response.status_code == 500
    assert "answer table unavailable" in response.json()["error"]["message"]
    [line] = json_lines(out)
    assert line["note"].startswith("GET /hooks?token=[redacted]: answered 500")


def test_operational_events_are_verified_answered_and_printed() -> None:
    listener, out = make_listener()
    pretty, shown = make_listener(as_json=False)
    for target in (listener, pretty):
        with listening(target) as url:
            for event_type in (
                EventType.WEBHOOK_SUSPENDED,
                EventType.DESTINATION_BREAKER_OPENED,
            ):
                response, _ = signed(url, event_type, sample_data(event_type, utcnow()))
                assert response.status_code == 204, response.text
    suspended, opened = json_lines(out)
    assert suspended["verified"] is True and suspended["eventType"] == "WebhookSuspended"
    assert suspended["about"].startswith("webhook Sample webhook (00000000-")
    assert "suspended: https://receiver.example/hooks/docuhooks" in suspended["about"]
    assert opened["about"] == "destination https://receiver.example:443 (Sample webhook)"
    assert "workItem" not in suspended
    text = shown.getvalue()
    assert "POST /hooks  WebhookSuspended  verified  -> 204" in text
    assert "about      destination https://receiver.example:443 (Sample webhook)" in text
