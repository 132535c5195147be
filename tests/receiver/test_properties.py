"""Properties of sign → verify that must hold for any event, not just the samples."""

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.receiver.receiver_samples import WEBHOOK_ID, accepted_secrets, target

from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import OutboundRequest, build_request
from docuhooks_receiver import TokenExpired, VerificationError, Verifier

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
events = st.fixed_dictionaries(
    {
        "eventId": st.uuids().map(str),
        "eventType": st.sampled_from([str(t) for t in EventType]),
        "createdDate": st.just("2026-11-29T10:15:00.123456Z"),
        "createdBy": st.fixed_dictionaries(
            {"id": text, "loginName": text, "name": text, "email": text, "accountType": text}
        ),
        "siteId": text,
        "data": st.dictionaries(text, json_values, max_size=6),
    },
    optional={"test": st.just(True)},
)
SHAPES = [
    (AuthMethod.HMAC, Verb.POST),
    (AuthMethod.HMAC, Verb.GET),
    (AuthMethod.ACCESS_TOKEN, Verb.POST),
    (AuthMethod.STANDARD_WEBHOOKS, Verb.POST),
]
WEBHOOKS = {shape: target(*shape) for shape in SHAPES}
SIGNED_SHAPES = [shape for shape in SHAPES if shape[0] is not AuthMethod.ACCESS_TOKEN]


def send(event: dict[str, Any], shape: tuple[AuthMethod, Verb], now: datetime) -> OutboundRequest:
    return build_request(
        event, WEBHOOKS[shape], delivery_id="d", attempt=1, now=now, user_agent="docuhooks/test"
    )


def verifier(shape: tuple[AuthMethod, Verb], leeway: float = 60) -> Verifier:
    return Verifier(
        secrets=accepted_secrets(WEBHOOKS[shape]),
        audience=WEBHOOK_ID,
        auth_method=shape[0],
        leeway=leeway,
    )


def mutate(text: str, index: int, replacement: str) -> str:
    index %= len(text)
    if replacement == text[index]:
        replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
@given(event=events)
def test_sign_then_verify_returns_the_event(
    shape: tuple[AuthMethod, Verb], event: dict[str, Any]
) -> None:
    request = send(event, shape, datetime.now(UTC))
    received = verifier(shape).verify_payload(
        request.method, request.url, request.headers, request.body
    )
    assert received == event


@pytest.mark.parametrize("shape", SIGNED_SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
@given(event=events, index=st.integers(min_value=0), byte=st.integers(0, 255))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_changed_byte_of_a_signed_body_fails(
    shape: tuple[AuthMethod, Verb], event: dict[str, Any], index: int, byte: int
) -> None:
    request = send(event, shape, datetime.now(UTC))
    check = verifier(shape)
    if request.body is not None:
        body = bytearray(request.body)
        index %= len(body)
        body[index] = byte if byte != body[index] else (byte + 1) % 256
        with pytest.raises(VerificationError):
            check.verify_payload(request.method, request.url, request.headers, bytes(body))
    else:
        base, _, token = request.url.partition("?token=")
        changed = mutate(token, index, chr(byte) if 33 <= byte < 127 else "Z")
        with pytest.raises(VerificationError):
            check.verify_payload("GET", f"{base}?token={changed}", request.headers, None)


@pytest.mark.parametrize("shape", SIGNED_SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
@given(
    event=events,
    index=st.integers(min_value=0),
    char=st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/="),
)
def test_any_changed_character_of_a_token_or_signature_fails(
    shape: tuple[AuthMethod, Verb], event: dict[str, Any], index: int, char: str
) -> None:
    request = send(event, shape, datetime.now(UTC))
    check = verifier(shape)
    headers = dict(request.headers)
    body, url = request.body, request.url
    if shape[0] is AuthMethod.STANDARD_WEBHOOKS:
        headers["webhook-signature"] = mutate(headers["webhook-signature"], index, char)
    elif body is not None:
        body = b"token=" + mutate(body.decode().removeprefix("token="), index, char).encode()
    else:
        base, _, token = url.partition("?token=")
        url = f"{base}?token={mutate(token, index, char)}"
    with pytest.raises(VerificationError):
        check.verify_payload(request.method, url, headers, body)


@pytest.mark.parametrize("shape", SIGNED_SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
@given(event=events, late=st.integers(min_value=1, max_value=10**7))
def test_an_expired_request_fails_with_the_expiry_message(
    shape: tuple[AuthMethod, Verb], event: dict[str, Any], late: int
) -> None:
    lifetime, leeway = 300, 30
    sent = datetime.fromtimestamp(time.time() - lifetime - leeway - late, UTC)
    request = send(event, shape, sent)
    with pytest.raises(TokenExpired, match=r"expired \d+ s ago.*a clock may be off") as caught:
        verifier(shape, leeway=leeway).verify_payload(
            request.method, request.url, request.headers, request.body
        )
    assert caught.value.seconds_ago >= leeway + late - 1


@pytest.mark.parametrize("shape", SIGNED_SHAPES, ids=lambda s: f"{s[0]}-{s[1]}")
def test_changing_the_spare_bits_of_the_last_signature_character_fails(
    shape: tuple[AuthMethod, Verb],
) -> None:
    # Base64 decoders ignore the low bits of a final character, so this is where a lax verifier
    # would accept a changed signature; random positions almost never land here.
    event = {"eventId": "e", "eventType": "InterviewLoadEvent", "data": {}}
    request = send(event, shape, datetime.now(UTC))
    check = verifier(shape)
    headers, body, url = dict(request.headers), request.body, request.url
    for char in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/":
        if shape[0] is AuthMethod.STANDARD_WEBHOOKS:
            signature = headers["webhook-signature"]
            last = len(signature.rstrip("=")) - 1
            if signature[last] == char:
                continue
            changed = {**headers, "webhook-signature": mutate(signature, last, char)}
            attempt = (request.method, url, changed, body)
        elif body is not None:
            if body.decode()[-1] == char:
                continue
            attempt = (request.method, url, headers, mutate(body.decode(), -1, char).encode())
        else:
            if url[-1] == char:
                continue
            attempt = (request.method, mutate(url, -1, char), headers, body)
        with pytest.raises(VerificationError):
            check.verify_payload(*attempt)
