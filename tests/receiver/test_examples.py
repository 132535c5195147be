"""The examples in examples/ must keep working: exercised in-process and run as scripts."""

import base64
import dataclasses
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from tests.receiver.receiver_samples import PDF, WEBHOOK_ID, accepted_secrets, sample_event, target

from docuhooks.answers.hotdocs import parse_hotdocs_xml
from docuhooks.answers.jsonformat import parse_answer_json
from docuhooks.answers.model import AnswerType, VariableDef
from docuhooks.answers.validate import fit_answers
from docuhooks.core.events import OPERATIONAL_EVENTS, AuthMethod, EventType, Verb
from docuhooks.core.signing import OutboundRequest, WebhookTarget, build_request
from docuhooks.platform.sample_sends import SAMPLE_VARIABLES
from docuhooks_receiver import HmacSecret, Verifier

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def signed(event_type: EventType, webhook: WebhookTarget) -> OutboundRequest:
    return build_request(
        sample_event(event_type),
        webhook,
        delivery_id="d",
        attempt=1,
        now=datetime.now(UTC),
        user_agent="docuhooks/test",
    )


class FlaskApp:
    def __init__(self, verifier: Verifier) -> None:
        self.client = load("receiver_flask").create_app(verifier).test_client()

    def send(self, request: OutboundRequest) -> tuple[int, str, bytes]:
        path = request.url.removeprefix("http://testserver")
        response = self.client.open(
            path, method=request.method, headers=dict(request.headers), data=request.body
        )
        return response.status_code, response.content_type or "", response.data


class FastAPIApp:
    def __init__(self, verifier: Verifier) -> None:
        self.client = TestClient(load("receiver_fastapi").create_app(verifier))

    def send(self, request: OutboundRequest) -> tuple[int, str, bytes]:
        response = self.client.request(
            request.method, request.url, headers=dict(request.headers), content=request.body
        )
        return response.status_code, response.headers.get("content-type", ""), response.content


SHAPES = [
    (AuthMethod.HMAC, Verb.POST),
    (AuthMethod.HMAC, Verb.GET),
    (AuthMethod.ACCESS_TOKEN, Verb.POST),
    (AuthMethod.STANDARD_WEBHOOKS, Verb.POST),
]


@pytest.mark.parametrize("app_type", [FlaskApp, FastAPIApp])
@pytest.mark.parametrize(("method", "verb"), SHAPES)
def test_examples_answer_every_event_type(app_type: Any, method: AuthMethod, verb: Verb) -> None:
    webhook = target(method, verb, url="http://testserver/hooks")
    app = app_type(Verifier(secrets=accepted_secrets(webhook), audience=WEBHOOK_ID))

    status, _, _ = app.send(signed(EventType.NEW_WORK_ITEM_VERSION_COMPLETE, webhook))
    assert status == 204

    status, content_type, body = app.send(signed(EventType.INTERVIEW_LOAD_EVENT, webhook))
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["answers"][0] == {
        "name": "Client Name",
        "type": "text",
        "value": "Ann Lee",
    }

    status, content_type, body = app.send(signed(EventType.CUSTOM_INTERVIEW_EVENT, webhook))
    assert (status, content_type.split(";")[0]) == (200, "application/xml")
    assert b"<AnswerSet" in body and b'<Answer name="Fee">' in body

    status, content_type, body = app.send(signed(EventType.POST_PROCESSING_EVENT, webhook))
    assert (status, content_type) == (200, "application/json")
    (document,) = json.loads(body)["documents"]
    assert document["action"] == "replace"
    assert base64.b64decode(document["content"]) == PDF

    if verb is Verb.POST:  # operational webhooks are POST only
        for event_type in sorted(OPERATIONAL_EVENTS):
            status, _, _ = app.send(signed(event_type, webhook))
            assert status == 204, event_type


@pytest.mark.parametrize("app_type", [FlaskApp, FastAPIApp])
def test_examples_refuse_a_bad_signature_with_the_reason(app_type: Any) -> None:
    webhook = target(AuthMethod.HMAC, url="http://testserver/hooks")
    app = app_type(
        Verifier(
            secrets=[HmacSecret("somebody-elses-secret-of-32-bytes-or-more")], audience=WEBHOOK_ID
        )
    )
    status, _, body = app.send(signed(EventType.INTERVIEW_LOAD_EVENT, webhook))
    assert status == 401
    assert b"BadSignature" in body and b"matches none of the 1 configured HMAC" in body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("script", ["receiver_flask", "receiver_fastapi"])
def test_example_runs_as_a_script(script: str, tmp_path: Path) -> None:
    port = free_port()
    # An HMAC GET: the signed token travels in the query string, which servers log.
    webhook = target(AuthMethod.HMAC, Verb.GET, url=f"http://127.0.0.1:{port}/hooks")
    environment = {
        **os.environ,
        "PORT": str(port),
        "DOCUHOOKS_WEBHOOK_SECRETS": ",".join(s.value for s in accepted_secrets(webhook)),
        "DOCUHOOKS_WEBHOOK_IDS": WEBHOOK_ID,
    }
    log = tmp_path / "log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{script}.py")],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    request = signed(EventType.INTERVIEW_LOAD_EVENT, webhook)
    token = parse_qs(urlsplit(request.url).query)["token"][0]
    try:
        outbound = urllib.request.Request(
            request.url, data=request.body, headers=dict(request.headers), method=request.method
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(outbound, timeout=5) as response:
                    assert response.status == 200
                    assert json.loads(response.read())["answers"][0]["value"] == "Ann Lee"
                    break
            except (ConnectionError, urllib.error.URLError):
                assert process.poll() is None, f"{script} exited with {process.returncode}"
                assert time.monotonic() < deadline, f"{script} did not start listening"
                time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)
    printed = log.read_text()
    assert "GET /hooks?token=[redacted]" in printed, printed
    assert token not in printed


def test_example_without_secrets_says_what_to_set() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCUHOOKS_WEBHOOK")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "receiver_flask.py")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "set DOCUHOOKS_WEBHOOK_SECRETS" in result.stderr


def platform_guide_template() -> dict[str, VariableDef]:
    """The variables of the template docs/platform.md builds, which the examples answer."""
    guide = (EXAMPLES.parent / "docs" / "platform.md").read_text()
    definition = json.loads(re.search(r"definition=(\{.*?\n\})'", guide, re.S).group(1))  # type: ignore[union-attr]
    assert "Look up client" in definition["eventElements"]
    return _definitions(definition["variables"])


def sample_template() -> dict[str, VariableDef]:
    """The template a test event of an interview webhook without a template scope names."""
    return _definitions(SAMPLE_VARIABLES)


def _definitions(variables: list[dict[str, Any]]) -> dict[str, VariableDef]:
    return {
        v["name"]: VariableDef(
            v["name"],
            AnswerType(v["type"]),
            v.get("repeatDepth", 0),
            tuple(v.get("options", ())),
        )
        for v in variables
    }


def warnings_for(
    content_type: str, body: bytes, variables: dict[str, VariableDef]
) -> tuple[str, ...]:
    """What the platform would warn about, applying this reply to the template."""
    if content_type.split(";")[0] == "application/xml":
        _, misfits = fit_answers(parse_hotdocs_xml(body), variables)
        return tuple(w.message for w in misfits)
    return parse_answer_json(json.loads(body), variables).warnings


@pytest.mark.parametrize("template", [platform_guide_template, sample_template])
@pytest.mark.parametrize("app_type", [FlaskApp, FastAPIApp])
def test_the_framework_examples_answer_the_guides_template_without_warnings(
    app_type: Any, template: Any
) -> None:
    """The guide's template, and the one a test event names (Send test event, without a
    template scope), so a test shows no warning the real interview would not."""
    webhook = target(AuthMethod.HMAC, url="http://testserver/hooks")
    app = app_type(Verifier(secrets=accepted_secrets(webhook), audience=WEBHOOK_ID))
    for event_type in (EventType.INTERVIEW_LOAD_EVENT, EventType.CUSTOM_INTERVIEW_EVENT):
        status, content_type, body = app.send(signed(event_type, webhook))
        assert status == 200
        assert warnings_for(content_type, body, template()) == (), event_type


def test_the_lookup_examples_data_fits_the_guides_template() -> None:
    """interview_data.json prefills the guide's interview and looks up the client name the
    guide types ("Jane Doe"), answering only variables of that template."""
    module = load("interview_lookup_receiver")
    answers = module.Answers(json.loads((EXAMPLES / "interview_data.json").read_text()))
    webhook = target(AuthMethod.HMAC, url="http://testserver/hooks")
    verifier = Verifier(secrets=accepted_secrets(webhook), audience=WEBHOOK_ID)

    def reply(event: dict[str, Any]) -> dict[str, Any] | None:
        request = build_request(
            event, webhook, delivery_id="d", attempt=1, now=datetime.now(UTC), user_agent="t"
        )
        result: dict[str, Any] | None = answers.reply_to(
            verifier.verify(request.method, request.url, dict(request.headers), request.body)
        )
        return result

    prefill = reply(sample_event(EventType.INTERVIEW_LOAD_EVENT))
    assert prefill is not None
    lookup_event = sample_event(EventType.CUSTOM_INTERVIEW_EVENT)
    lookup_event["data"]["answers"] = {
        "answers": [{"name": "Client Name", "type": "text", "value": "Jane Doe"}]
    }
    looked_up = reply(lookup_event)
    assert looked_up is not None, "the lookup finds the client the guide types"
    for answered in (prefill, looked_up):
        for template in (platform_guide_template(), sample_template()):
            assert parse_answer_json(answered, template).warnings == ()


@pytest.mark.parametrize(
    "script", ["receiver_flask", "receiver_fastapi", "interview_lookup_receiver"]
)
def test_the_auth_method_setting_takes_any_letter_case(
    script: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load(script)
    for given, method in (
        ("hmac", "HMAC"),
        (" HMAC ", "HMAC"),
        ("accesstoken", "AccessToken"),
        ("access_token", "AccessToken"),
        ("standard-webhooks", "StandardWebhooks"),
    ):
        monkeypatch.setenv("DOCUHOOKS_WEBHOOK_AUTH_METHOD", given)
        assert module.auth_method_from_environment() == method, given
    monkeypatch.delenv("DOCUHOOKS_WEBHOOK_AUTH_METHOD")
    assert module.auth_method_from_environment() == "HMAC"
    monkeypatch.setenv("DOCUHOOKS_WEBHOOK_AUTH_METHOD", "jwt")
    with pytest.raises(SystemExit) as refused:
        module.auth_method_from_environment()
    message = str(refused.value)
    assert "'jwt'" in message
    assert all(name in message for name in ("HMAC", "AccessToken", "StandardWebhooks"))


def test_the_lookup_example_answers_where_the_readme_points_webhooks() -> None:
    """examples/README.md: point the webhooks at http://127.0.0.1:<port>/hooks."""
    readme = (EXAMPLES / "README.md").read_text()
    assert "http://127.0.0.1:<port>/hooks" in readme
    assert "/interview`" not in readme
    module = load("interview_lookup_receiver")
    answers = module.Answers(json.loads((EXAMPLES / "interview_data.json").read_text()))
    webhook = target(AuthMethod.HMAC)
    verifier = Verifier(secrets=accepted_secrets(webhook), audience=WEBHOOK_ID)
    server = module.serve(verifier, answers, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path, status in (("/hooks", 200), ("/interview", 404)):
            url = f"http://127.0.0.1:{server.server_port}{path}"
            request = signed(EventType.INTERVIEW_LOAD_EVENT, dataclasses.replace(webhook, url=url))
            outbound = urllib.request.Request(
                request.url, data=request.body, headers=dict(request.headers), method=request.method
            )
            try:
                with urllib.request.urlopen(outbound, timeout=5) as response:
                    got, body = response.status, response.read()
            except urllib.error.HTTPError as exc:
                got, body = exc.code, exc.read()
            assert got == status, (path, got, body)
            if status == 404:
                assert b"/hooks" in body
    finally:
        server.shutdown()
        server.server_close()
