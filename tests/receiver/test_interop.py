"""Interoperability with libraries nobody here wrote: plain PyJWT and `standardwebhooks`."""

import json
import time
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode

import jwt
import pytest
from standardwebhooks import Webhook
from tests.receiver.receiver_samples import (
    ISSUER,
    WEBHOOK_ID,
    accepted_secrets,
    sample_event,
    target,
)

from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import build_request, generate_secret
from docuhooks_receiver import HmacSecret, Verifier, parse_event


def sent(event_type: EventType, method: AuthMethod, verb: Verb = Verb.POST):
    webhook = target(method, verb)
    request = build_request(
        sample_event(event_type),
        webhook,
        delivery_id="d",
        attempt=1,
        now=datetime.now(UTC),
        user_agent="docuhooks/test",
    )
    return webhook, request


@pytest.mark.parametrize("event_type", list(EventType))
@pytest.mark.parametrize("verb", list(Verb))
def test_sender_tokens_decode_with_plain_pyjwt(event_type: EventType, verb: Verb) -> None:
    webhook, request = sent(event_type, AuthMethod.HMAC, verb)
    assert webhook.secret is not None
    where = request.url.split("?", 1)[1] if verb is Verb.GET else (request.body or b"").decode()
    token = parse_qs(where)["token"][0]
    claims = jwt.decode(token, webhook.secret.value, algorithms=["HS256"], audience=WEBHOOK_ID)
    assert {k: v for k, v in claims.items() if k in sample_event(event_type)} == sample_event(
        event_type
    )
    assert claims["iss"] == ISSUER


@pytest.mark.parametrize("event_type", list(EventType))
def test_sdk_verifies_tokens_made_by_plain_pyjwt(event_type: EventType) -> None:
    secret = "an-integrator-chose-this-secret-0123456789"
    claims = {**sample_event(event_type), "aud": WEBHOOK_ID, "exp": int(time.time()) + 60}
    token = jwt.encode(claims, secret, algorithm="HS256")
    verifier = Verifier(secrets=[HmacSecret(secret)], audience=WEBHOOK_ID)
    body = urlencode({"token": token}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    event = verifier.verify("POST", "https://r/h", headers, body)
    assert event == parse_event(sample_event(event_type))
    assert verifier.verify("GET", f"https://r/h?{body.decode()}", {}, None) == event


@pytest.mark.parametrize("event_type", list(EventType))
def test_standard_webhooks_package_verifies_sender_requests(event_type: EventType) -> None:
    webhook, request = sent(event_type, AuthMethod.STANDARD_WEBHOOKS)
    assert webhook.secret is not None and request.body is not None
    assert Webhook(webhook.secret.value).verify(request.body, dict(request.headers)) == (
        sample_event(event_type)
    )


@pytest.mark.parametrize("event_type", list(EventType))
def test_sdk_verifies_requests_signed_by_the_standard_webhooks_package(
    event_type: EventType,
) -> None:
    secret = generate_secret(AuthMethod.STANDARD_WEBHOOKS).value
    # Spaced JSON, unlike the platform's compact bodies: the SDK must not depend on the layout.
    body = json.dumps(sample_event(event_type), indent=2).encode()
    moment = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", moment, body.decode()),
    }
    event = Verifier(secrets=[secret], audience=None).verify("POST", "https://r/h", headers, body)
    assert event == parse_event(sample_event(event_type))


def test_the_received_event_equals_what_was_sent_for_every_method() -> None:
    for method in AuthMethod:
        webhook, request = sent(EventType.POST_PROCESSING_EVENT, method)
        verifier = Verifier(secrets=accepted_secrets(webhook), audience=WEBHOOK_ID)
        event = verifier.verify(request.method, request.url, request.headers, request.body)
        assert event == parse_event(sample_event(EventType.POST_PROCESSING_EVENT)), method
