import base64
import time
from datetime import UTC, datetime

import jwt
import pytest
from tests.receiver.receiver_samples import WEBHOOK_ID, accepted_secrets, sample_event, target

from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import OutboundRequest, build_request, generate_secret
from docuhooks_receiver import (
    AccessToken,
    BadSignature,
    CustomInterviewEvent,
    HmacSecret,
    InterviewLoadEvent,
    MalformedRequest,
    MissingToken,
    TokenExpired,
    TokenNotYetValid,
    Verifier,
    WrongAudience,
    WrongIssuer,
    verify_request,
)


def send(webhook, event_type=EventType.INTERVIEW_LOAD_EVENT, now=None) -> OutboundRequest:
    return build_request(
        sample_event(event_type),
        webhook,
        delivery_id="dlv-1",
        attempt=1,
        now=now or datetime.now(UTC),
        user_agent="docuhooks/test",
    )


def receive(request: OutboundRequest, **options):
    return Verifier(**options).verify(request.method, request.url, request.headers, request.body)


ALL_SHAPES = [
    (AuthMethod.HMAC, Verb.POST),
    (AuthMethod.HMAC, Verb.GET),
    (AuthMethod.ACCESS_TOKEN, Verb.POST),
    (AuthMethod.ACCESS_TOKEN, Verb.GET),
    (AuthMethod.STANDARD_WEBHOOKS, Verb.POST),
]


@pytest.mark.parametrize(("method", "verb"), ALL_SHAPES)
@pytest.mark.parametrize("explicit", [True, False])
def test_every_method_and_verb_verifies(method: AuthMethod, verb: Verb, explicit: bool) -> None:
    webhook = target(method, verb)
    event = receive(
        send(webhook),
        secrets=accepted_secrets(webhook),
        audience=WEBHOOK_ID,
        auth_method=method.value if explicit else None,
    )
    assert isinstance(event, InterviewLoadEvent)
    assert event.event_id == sample_event(EventType.INTERVIEW_LOAD_EVENT)["eventId"]
    assert event.user.login_name == "ann@example.com"
    assert event.template.name == "Residential lease"


def test_get_access_token_rebuilds_the_event_from_parameters() -> None:
    webhook = target(AuthMethod.ACCESS_TOKEN, Verb.GET)
    request = send(webhook, EventType.CUSTOM_INTERVIEW_EVENT)
    event = receive(request, secrets=accepted_secrets(webhook), audience=None)
    assert isinstance(event, CustomInterviewEvent)
    assert event.interview_event_name == "Look up client"
    assert event.answers == {}  # a query string cannot carry the answer set
    assert event.created_date is None
    assert event.user.email == "ann@example.com"


def test_verify_request_function_is_the_one_call_form() -> None:
    webhook = target(AuthMethod.HMAC)
    request = send(webhook)
    event = verify_request(
        request.method,
        request.url,
        request.headers,
        request.body,
        secrets=accepted_secrets(webhook),
        audience=WEBHOOK_ID,
    )
    assert isinstance(event, InterviewLoadEvent)


def test_query_string_alone_is_enough_for_get() -> None:
    webhook = target(AuthMethod.HMAC, Verb.GET)
    request = send(webhook)
    query = request.url.split("?", 1)[1]
    verifier = Verifier(secrets=accepted_secrets(webhook), audience=WEBHOOK_ID)
    assert isinstance(verifier.verify("GET", query, {}, None), InterviewLoadEvent)


def test_headers_are_case_insensitive() -> None:
    webhook = target(AuthMethod.STANDARD_WEBHOOKS)
    request = send(webhook)
    upper = {name.upper(): value for name, value in request.headers.items()}
    verifier = Verifier(secrets=accepted_secrets(webhook), audience=None)
    verifier.verify("POST", request.url, upper, request.body)


@pytest.mark.parametrize("method", [AuthMethod.HMAC, AuthMethod.STANDARD_WEBHOOKS])
def test_rotation_old_or_new_secret_first_both_work(method: AuthMethod) -> None:
    webhook = target(method, rotating=True)
    request = send(webhook)
    secrets = accepted_secrets(webhook)
    for order in (secrets, secrets[::-1]):
        receive(request, secrets=order, audience=WEBHOOK_ID)


@pytest.mark.parametrize("method", [AuthMethod.HMAC, AuthMethod.STANDARD_WEBHOOKS])
def test_receiver_that_only_knows_the_new_secret_fails_during_hmac_grace(
    method: AuthMethod,
) -> None:
    webhook = target(method, rotating=True)
    assert webhook.secret is not None
    request = send(webhook)
    if method is AuthMethod.HMAC:
        # The old secret signs during the grace period, so the new one alone cannot verify yet.
        with pytest.raises(BadSignature, match="matches none of the 1 configured"):
            receive(
                request, secrets=[webhook.secret.value], audience=WEBHOOK_ID, auth_method="HMAC"
            )
    else:
        receive(request, secrets=[webhook.secret.value], audience=None)


@pytest.mark.parametrize(("method", "verb"), ALL_SHAPES)
def test_wrong_secret_is_a_bad_signature(method: AuthMethod, verb: Verb) -> None:
    webhook = target(method, verb)
    other = "not-the-token" if method is AuthMethod.ACCESS_TOKEN else generate_secret(method).value
    with pytest.raises(BadSignature, match="configured"):
        receive(send(webhook), secrets=[other], audience=WEBHOOK_ID, auth_method=method.value)


def test_wrong_audience_names_both_webhooks() -> None:
    webhook = target(AuthMethod.HMAC)
    with pytest.raises(
        WrongAudience, match=f"for webhook '{WEBHOOK_ID}'.*webhook\\(s\\) 'other-hook'"
    ):
        receive(send(webhook), secrets=accepted_secrets(webhook), audience="other-hook")


def test_wrong_issuer() -> None:
    webhook = target(AuthMethod.HMAC)
    with pytest.raises(WrongIssuer, match="expects 'https://elsewhere'"):
        receive(
            send(webhook),
            secrets=accepted_secrets(webhook),
            audience=WEBHOOK_ID,
            issuer="https://elsewhere",
        )


@pytest.mark.parametrize("method", [AuthMethod.HMAC, AuthMethod.STANDARD_WEBHOOKS])
def test_expired_says_by_how_much_and_blames_the_clock(method: AuthMethod) -> None:
    webhook = target(method)
    request = send(webhook, now=datetime.fromtimestamp(time.time() - 1000, UTC))
    with pytest.raises(TokenExpired, match=r"expired 70\d s ago.*a clock may be off") as caught:
        receive(request, secrets=accepted_secrets(webhook), audience=WEBHOOK_ID, leeway=0)
    assert 699 <= caught.value.seconds_ago <= 702


def test_leeway_forgives_a_late_token() -> None:
    webhook = target(AuthMethod.HMAC)
    request = send(webhook, now=datetime.fromtimestamp(time.time() - 330, UTC))
    receive(request, secrets=accepted_secrets(webhook), audience=WEBHOOK_ID, leeway=60)
    with pytest.raises(TokenExpired):
        receive(request, secrets=accepted_secrets(webhook), audience=WEBHOOK_ID, leeway=10)


@pytest.mark.parametrize("method", [AuthMethod.HMAC, AuthMethod.STANDARD_WEBHOOKS])
def test_token_from_the_future_is_not_yet_valid(method: AuthMethod) -> None:
    webhook = target(method)
    request = send(webhook, now=datetime.fromtimestamp(time.time() + 200, UTC))
    with pytest.raises(TokenNotYetValid, match="clock is probably off") as caught:
        receive(request, secrets=accepted_secrets(webhook), audience=WEBHOOK_ID, leeway=30)
    assert 198 <= caught.value.seconds_early <= 201


def test_injected_clock_decides_expiry() -> None:
    webhook = target(AuthMethod.HMAC)
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    request = send(webhook, now=sent)
    secrets = accepted_secrets(webhook)
    ok = Verifier(
        secrets=secrets, audience=WEBHOOK_ID, leeway=0, clock=lambda: sent.timestamp() + 299
    )
    ok.verify(request.method, request.url, request.headers, request.body)
    late = Verifier(
        secrets=secrets, audience=WEBHOOK_ID, leeway=0, clock=lambda: sent.timestamp() + 301
    )
    with pytest.raises(TokenExpired, match="expired 1 s ago"):
        late.verify(request.method, request.url, request.headers, request.body)


class TestMissingAndMalformed:
    def test_no_credentials_at_all(self) -> None:
        with pytest.raises(
            MissingToken, match=r"no 'token' parameter.*webhook-signature.*Authorization"
        ):
            verify_request(
                "POST", "https://r/h", {}, b"{}", secrets=[HmacSecret("s")], audience=None
            )

    def test_hmac_without_token(self) -> None:
        with pytest.raises(MissingToken, match="form body \\(POST\\) or the query string"):
            verify_request(
                "GET",
                "https://r/h?x=1",
                {},
                None,
                secrets=[HmacSecret("s")],
                audience=None,
                auth_method="HMAC",
            )

    def test_hmac_token_that_is_not_a_jwt(self) -> None:
        with pytest.raises(MalformedRequest, match="not a well-formed JWT"):
            verify_request(
                "GET", "/h?token=abc", {}, None, secrets=[HmacSecret("s")], audience=None
            )

    def test_hmac_post_with_json_body(self) -> None:
        with pytest.raises(MalformedRequest, match="x-www-form-urlencoded"):
            verify_request(
                "POST",
                "/h",
                {"Content-Type": "application/json"},
                b'{"token": "x"}',
                secrets=[HmacSecret("s")],
                audience=None,
                auth_method=AuthMethod.HMAC,
            )

    def test_token_given_twice(self) -> None:
        with pytest.raises(MalformedRequest, match="'token' appears twice"):
            verify_request(
                "GET", "/h?token=a&token=b", {}, None, secrets=[HmacSecret("s")], audience=None
            )

    def test_other_algorithms_are_refused(self) -> None:
        token = jwt.encode({"exp": time.time() + 60}, "s" * 64, algorithm="HS512")
        with pytest.raises(BadSignature, match="only HS256"):
            verify_request(
                "GET", f"/h?token={token}", {}, None, secrets=[HmacSecret("s" * 64)], audience=None
            )

    def test_unsigned_tokens_are_refused(self) -> None:
        token = jwt.encode({"exp": time.time() + 60}, None, algorithm="none")  # type: ignore[arg-type]
        with pytest.raises(BadSignature, match="only HS256"):
            verify_request(
                "GET", f"/h?token={token}", {}, None, secrets=[HmacSecret("s")], audience=None
            )

    def test_token_without_expiry(self) -> None:
        token = jwt.encode({"eventId": "e"}, "s" * 32, algorithm="HS256")
        with pytest.raises(MalformedRequest, match=r"lacks a claim.*exp"):
            verify_request(
                "GET", f"/h?token={token}", {}, None, secrets=[HmacSecret("s" * 32)], audience=None
            )

    def test_standard_webhooks_missing_headers_are_named(self) -> None:
        with pytest.raises(MissingToken, match="webhook-id, webhook-timestamp are missing"):
            verify_request(
                "POST",
                "/h",
                {"webhook-signature": "v1,AA=="},
                b"{}",
                secrets=["whsec_AAAA"],
                audience=None,
            )

    def test_standard_webhooks_bad_timestamp(self) -> None:
        headers = {"webhook-id": "m", "webhook-timestamp": "soon", "webhook-signature": "v1,AA=="}
        with pytest.raises(MalformedRequest, match="whole seconds"):
            verify_request("POST", "/h", headers, b"{}", secrets=["whsec_AAAA"], audience=None)

    def test_standard_webhooks_signature_without_v1(self) -> None:
        headers = {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": "v2,AA=="}
        with pytest.raises(MalformedRequest, match="no 'v1,<base64>'"):
            verify_request("POST", "/h", headers, b"{}", secrets=["whsec_AAAA"], audience=None)

    def test_access_token_with_basic_scheme(self) -> None:
        with pytest.raises(MalformedRequest, match="'Bearer <token>'"):
            verify_request(
                "POST",
                "/h",
                {"Authorization": "Basic abc"},
                b"{}",
                secrets=[AccessToken("abc")],
                audience=None,
            )

    def test_access_token_body_not_json(self) -> None:
        with pytest.raises(MalformedRequest, match="not valid JSON"):
            verify_request(
                "POST",
                "/h",
                {"Authorization": "Bearer abc"},
                b"<xml/>",
                secrets=[AccessToken("abc")],
                audience=None,
            )

    def test_a_token_whose_header_nests_past_the_stack_is_malformed(self) -> None:
        """Before any signature is checked: anyone may send it, and it must be a 400, not
        the receiver's 500."""
        header = base64.urlsafe_b64encode(b"[" * 100_000).rstrip(b"=").decode()
        with pytest.raises(MalformedRequest, match="header is unreadable"):
            verify_request(
                "GET",
                f"/h?token={header}.e30.AAAA",
                {},
                None,
                secrets=[HmacSecret("s" * 32)],
                audience=None,
            )

    @pytest.mark.parametrize("value", ["v1,\xe9", "v1,\u0660\u0661==", "v1,AA==\x00"])
    def test_a_signature_that_is_not_ascii_base64_is_malformed(self, value: str) -> None:
        headers = {"webhook-id": "m", "webhook-timestamp": "1", "webhook-signature": value}
        with pytest.raises(MalformedRequest, match="invalid base64"):
            verify_request("POST", "/h", headers, b"{}", secrets=["whsec_AAAA"], audience=None)

    def test_access_token_body_nested_past_the_stack(self) -> None:
        with pytest.raises(MalformedRequest, match="nested too deeply"):
            verify_request(
                "POST",
                "/h",
                {"Authorization": "Bearer abc"},
                b"[" * 100_000,
                secrets=[AccessToken("abc")],
                audience=None,
            )

    def test_malformed_errors_answer_400_the_rest_401(self) -> None:
        assert MalformedRequest("x").status_code == 400
        assert BadSignature("x").status_code == 401
        assert TokenExpired("x", seconds_ago=1).status_code == 401


class TestConfiguration:
    def test_one_string_instead_of_a_list_is_caught(self) -> None:
        with pytest.raises(TypeError, match="list of secrets"):
            Verifier(secrets="secret", audience=None)

    def test_no_secrets(self) -> None:
        with pytest.raises(ValueError, match="at least one secret"):
            Verifier(secrets=[], audience=None)

    def test_negative_leeway(self) -> None:
        with pytest.raises(ValueError, match="leeway"):
            Verifier(secrets=[HmacSecret("s")], audience=None, leeway=-1)

    def test_unknown_method(self) -> None:
        with pytest.raises(ValueError, match="Basic"):
            Verifier(secrets=[HmacSecret("s")], audience=None, auth_method="Basic")


def test_one_endpoint_may_serve_several_webhooks() -> None:
    webhook = target(AuthMethod.HMAC)
    secrets = accepted_secrets(webhook)
    receive(send(webhook), secrets=secrets, audience=["another-hook", WEBHOOK_ID])
    with pytest.raises(WrongAudience, match="'a', 'b'"):
        receive(send(webhook), secrets=secrets, audience=("a", "b"))


def test_standard_webhooks_requests_verify_beside_other_kinds_of_secret() -> None:
    """One endpoint serving several webhooks configures all their secrets in one Verifier."""
    from datetime import UTC, datetime

    from docuhooks.core.events import AuthMethod as SenderMethod
    from docuhooks.core.events import Verb
    from docuhooks.core.signing import WebhookTarget, build_request, generate_secret
    from docuhooks_receiver import BadSignature, Verifier

    secret = generate_secret(SenderMethod.STANDARD_WEBHOOKS)
    target = WebhookTarget(
        webhook_id="w1",
        url="https://r.example/hook",
        verb=Verb.POST,
        auth_method=SenderMethod.STANDARD_WEBHOOKS,
        issuer="https://site.example",
        secret=secret,
    )
    event = {
        "eventId": "e1",
        "eventType": "NewWorkItemVersionComplete",
        "createdDate": "2026-11-29T10:15:00.000000Z",
        "createdBy": {"id": "u", "loginName": "a@b.c", "name": "A", "email": "a@b.c"},
        "siteId": "s",
        "data": {},
    }
    request = build_request(
        event, target, delivery_id="d", attempt=1, now=datetime.now(UTC), user_agent="t"
    )
    mixed = Verifier(
        secrets=[HmacSecret("an-hmac-secret!"), AccessToken("legacy-token"), secret.value],
        audience=None,
    )
    payload = mixed.verify_payload(request.method, request.url, request.headers, request.body)
    assert payload["eventId"] == "e1"
    only_others = Verifier(secrets=[HmacSecret("an-hmac-secret!")], audience=None)
    with pytest.raises(BadSignature, match="no secret of that kind"):
        only_others.verify_payload(request.method, request.url, request.headers, request.body)
