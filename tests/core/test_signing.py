import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt
import pytest
from standardwebhooks import Webhook

from docuhooks.core.events import Actor, AuthMethod, Event, EventType, Verb
from docuhooks.core.signing import (
    TOKEN_LIFETIME_SECONDS,
    OutboundRequest,
    SigningSecret,
    StoredEvent,
    WebhookTarget,
    build_request,
    generate_secret,
    hmac_token,
    new_traceparent,
    redact_headers,
    redact_url,
)

NOW = datetime(2026, 11, 29, 10, 15, 0, tzinfo=UTC)
WEBHOOK_ID = "6c0e4c55-3c7f-4bd5-a3a4-5b1e7f4f9a10"
ISSUER = "https://acme.docuhooks.example"
EVENT = Event(
    event_type=EventType.INTERVIEW_LOAD_EVENT,
    site_id="site-1",
    created_by=Actor(id="u-1", login_name="ann@example.com", name="Ann Lee", email="ann@x.org"),
    data={
        "interviewId": "i-1",
        "workItemId": "w-1",
        "workItemName": "Lease & co = fun",
        "workItemVersionId": "v-1",
        "workGroupId": "g-1",
        "templateId": "t-1",
        "templateName": "Lease",
        "versionNumber": 3,
        "urgent": True,
        "note": None,
        "tags": ["a", "b"],
    },
    event_id="evt-1",
    created_date=NOW,
).to_dict()


def make_target(
    method: AuthMethod, verb: Verb = Verb.POST, url: str = "https://r.example/hook", **extra: object
) -> WebhookTarget:
    fields: dict[str, object] = {
        "webhook_id": WEBHOOK_ID,
        "url": url,
        "verb": verb,
        "auth_method": method,
        "issuer": ISSUER,
        "secret": None if method is AuthMethod.ACCESS_TOKEN else generate_secret(method),
        "access_token": "tok-123" if method is AuthMethod.ACCESS_TOKEN else None,
    }
    fields.update(extra)
    return WebhookTarget(**fields)  # type: ignore[arg-type]


def build(
    target: WebhookTarget, event: dict[str, Any] = EVENT, **kwargs: object
) -> OutboundRequest:
    options: dict[str, object] = {
        "delivery_id": "dlv-1",
        "attempt": 2,
        "now": NOW,
        "user_agent": "docuhooks/0.1.0",
    }
    options.update(kwargs)
    return build_request(event, target, **options)  # type: ignore[arg-type]


def token_of(request: OutboundRequest) -> str:
    if request.method == "GET":
        return parse_qs(urlsplit(request.url).query)["token"][0]
    assert request.body is not None
    return parse_qs(request.body.decode())["token"][0]


class TestGenerateSecret:
    def test_hmac_secret_is_url_safe_with_32_bytes_of_entropy(self) -> None:
        secret = generate_secret(AuthMethod.HMAC)
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret.value)
        assert re.fullmatch(r"[0-9a-f]{32}", secret.kid)

    def test_standard_webhooks_secret_is_whsec_base64(self) -> None:
        secret = generate_secret(AuthMethod.STANDARD_WEBHOOKS)
        assert secret.value.startswith("whsec_")
        assert len(base64.b64decode(secret.value.removeprefix("whsec_"), validate=True)) == 32

    def test_every_secret_and_kid_is_new(self) -> None:
        secrets = [generate_secret(AuthMethod.HMAC) for _ in range(50)]
        assert len({s.value for s in secrets}) == 50
        assert len({s.kid for s in secrets}) == 50

    def test_access_token_has_no_generated_secret(self) -> None:
        with pytest.raises(ValueError, match="administrator supplies the access token"):
            generate_secret(AuthMethod.ACCESS_TOKEN)

    def test_repr_never_shows_the_secret(self) -> None:
        secret = generate_secret(AuthMethod.HMAC)
        target = make_target(AuthMethod.HMAC, secret=secret, url="https://r.example/h?token=abc")
        assert secret.value not in repr(secret)
        assert secret.value not in repr(target)
        assert "abc" not in repr(target)


class TestCommonHeaders:
    @pytest.mark.parametrize(
        ("method", "verb"),
        [
            (AuthMethod.HMAC, Verb.POST),
            (AuthMethod.HMAC, Verb.GET),
            (AuthMethod.ACCESS_TOKEN, Verb.POST),
            (AuthMethod.ACCESS_TOKEN, Verb.GET),
            (AuthMethod.STANDARD_WEBHOOKS, Verb.POST),
        ],
    )
    def test_every_request_identifies_event_delivery_attempt_and_trace(
        self, method: AuthMethod, verb: Verb
    ) -> None:
        request = build(
            make_target(method, verb), traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        )
        assert request.method == verb.value
        assert request.headers["User-Agent"] == "docuhooks/0.1.0"
        assert request.headers["X-Docuhooks-Event-Id"] == "evt-1"
        assert request.headers["X-Docuhooks-Event-Type"] == "InterviewLoadEvent"
        assert request.headers["X-Docuhooks-Delivery-Id"] == "dlv-1"
        assert request.headers["X-Docuhooks-Attempt"] == "2"
        assert request.headers["traceparent"] == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        assert (request.body is None) == (verb is Verb.GET)

    def test_a_trace_is_started_when_none_is_given(self) -> None:
        request = build(make_target(AuthMethod.HMAC))
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", request.headers["traceparent"])

    def test_headers_cannot_be_changed_after_building(self) -> None:
        request = build(make_target(AuthMethod.HMAC))
        with pytest.raises(TypeError):
            request.headers["Authorization"] = "x"  # type: ignore[index]


class TestHmac:
    def test_post_is_a_form_with_a_token_plain_pyjwt_decodes(self) -> None:
        target = make_target(AuthMethod.HMAC)
        request = build(target)
        assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
        assert request.body is not None and request.body.startswith(b"token=")
        assert target.secret is not None
        claims = jwt.decode(
            token_of(request),
            target.secret.value,
            algorithms=["HS256"],
            audience=WEBHOOK_ID,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
        iat = int(NOW.timestamp())
        jti = claims.pop("jti")
        assert re.fullmatch(r"[0-9a-f]{32}", jti)
        assert claims == {
            **EVENT,
            "iss": ISSUER,
            "aud": WEBHOOK_ID,
            "iat": iat,
            "nbf": iat,
            "exp": iat + TOKEN_LIFETIME_SECONDS,
        }

    @pytest.mark.parametrize(
        "name",
        ["Matter 1", "Müller – 契約 😀", "lone \ud800 surrogate"],
        ids=["ascii", "non-ascii", "lone-surrogate"],
    )
    def test_token_is_what_pyjwt_encodes(self, name: str) -> None:
        # The token is built by hand for speed. PyJWT must read it as its own: the same
        # header bytes, the same claims, a signature that verifies. Text is written as
        # UTF-8 (PyJWT escapes non-ASCII; both are JSON), and what orjson refuses, such as
        # a lone surrogate or an integer past 64 bits, as the standard library writes it.
        target = make_target(AuthMethod.HMAC)
        assert target.secret is not None
        event = {**EVENT, "data": {**EVENT["data"], "workItemName": name, "big": 2**70}}
        iat = int(NOW.timestamp())
        claims = {
            **event,
            "iss": ISSUER,
            "aud": WEBHOOK_ID,
            "iat": iat,
            "nbf": iat,
            "exp": iat + TOKEN_LIFETIME_SECONDS,
            "jti": "f" * 32,
        }
        expected = jwt.encode(
            claims, target.secret.value, algorithm="HS256", headers={"kid": target.secret.kid}
        )
        token = hmac_token(event, target, issued_at=iat, jti="f" * 32)
        assert token.split(".")[0] == expected.split(".")[0]
        decoded = jwt.decode(
            token,
            target.secret.value,
            algorithms=["HS256"],
            audience=WEBHOOK_ID,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
        assert decoded == claims

    def test_header_is_exactly_alg_typ_kid(self) -> None:
        target = make_target(AuthMethod.HMAC)
        header = jwt.get_unverified_header(token_of(build(target)))
        assert target.secret is not None
        assert header == {"alg": "HS256", "typ": "JWT", "kid": target.secret.kid}

    def test_a_fresh_token_verifies_with_the_real_clock(self) -> None:
        target = make_target(AuthMethod.HMAC)
        assert target.secret is not None
        request = build(target, now=datetime.now(UTC))
        decoded = jwt.decode(
            token_of(request), target.secret.value, algorithms=["HS256"], audience=WEBHOOK_ID
        )
        assert decoded["eventId"] == "evt-1"

    def test_jti_differs_for_every_build(self) -> None:
        target = make_target(AuthMethod.HMAC)
        jtis = {
            jwt.decode(token_of(build(target)), options={"verify_signature": False})["jti"]
            for _ in range(20)
        }
        assert len(jtis) == 20

    def test_get_appends_the_token_to_an_existing_query(self) -> None:
        url = "https://r.example/hook?tenant=a%20b&x=1#frag"
        request = build(make_target(AuthMethod.HMAC, Verb.GET, url=url))
        parts = urlsplit(request.url)
        assert parts.path == "/hook"
        assert parts.fragment == "frag"
        params = parse_qsl(parts.query)
        assert params[:2] == [("tenant", "a b"), ("x", "1")]
        assert params[2][0] == "token" and len(params) == 3
        assert request.url.startswith("https://r.example/hook?tenant=a%20b&x=1&token=")

    def test_get_without_query_gets_one(self) -> None:
        request = build(make_target(AuthMethod.HMAC, Verb.GET))
        assert request.url.startswith("https://r.example/hook?token=ey")

    def test_url_that_already_carries_a_token_is_refused(self) -> None:
        target = make_target(AuthMethod.HMAC, Verb.GET, url="https://r.example/h?token=mine")
        with pytest.raises(ValueError, match="already has the query parameter"):
            build(target)

    def test_during_a_grace_period_the_old_secret_signs(self) -> None:
        old = generate_secret(AuthMethod.HMAC)
        target = make_target(AuthMethod.HMAC, previous_secret=old)
        token = token_of(build(target, now=datetime.now(UTC)))
        assert jwt.get_unverified_header(token)["kid"] == old.kid
        jwt.decode(token, old.value, algorithms=["HS256"], audience=WEBHOOK_ID)
        assert target.secret is not None
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(token, target.secret.value, algorithms=["HS256"], audience=WEBHOOK_ID)

    def test_other_time_zones_give_the_same_instant(self) -> None:
        target = make_target(AuthMethod.HMAC)
        local = NOW.astimezone(timezone(timedelta(hours=-5)))
        claims = jwt.decode(token_of(build(target, now=local)), options={"verify_signature": False})
        assert claims["iat"] == int(NOW.timestamp())

    def test_without_a_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match="has no signing secret"):
            build(make_target(AuthMethod.HMAC, secret=None))


class TestAccessToken:
    def test_post_is_compact_json_with_a_bearer_token(self) -> None:
        request = build(make_target(AuthMethod.ACCESS_TOKEN))
        assert request.headers["Authorization"] == "Bearer tok-123"
        assert request.headers["Content-Type"] == "application/json"
        assert request.body == json.dumps(EVENT, separators=(",", ":")).encode()

    def test_get_flattens_scalars_of_data_and_the_user(self) -> None:
        request = build(
            make_target(AuthMethod.ACCESS_TOKEN, Verb.GET, url="https://r.example/h?k=v")
        )
        assert request.body is None
        params = parse_qsl(urlsplit(request.url).query)
        assert params == [
            ("k", "v"),
            ("eventId", "evt-1"),
            ("eventType", "InterviewLoadEvent"),
            ("siteId", "site-1"),
            ("userId", "u-1"),
            ("userLoginName", "ann@example.com"),
            ("userName", "Ann Lee"),
            ("userEmail", "ann@x.org"),
            ("interviewId", "i-1"),
            ("workItemId", "w-1"),
            ("workItemName", "Lease & co = fun"),
            ("workItemVersionId", "v-1"),
            ("workGroupId", "g-1"),
            ("templateId", "t-1"),
            ("templateName", "Lease"),
            ("versionNumber", "3"),
            ("urgent", "true"),
        ]

    def test_get_marks_test_events(self) -> None:
        request = build(
            make_target(AuthMethod.ACCESS_TOKEN, Verb.GET), event={**EVENT, "test": True}
        )
        assert ("test", "true") in parse_qsl(urlsplit(request.url).query)

    def test_without_a_token_is_refused(self) -> None:
        with pytest.raises(ValueError, match="has no access token"):
            build(make_target(AuthMethod.ACCESS_TOKEN, access_token=None))


class TestStandardWebhooks:
    def test_request_verifies_with_the_standardwebhooks_package(self) -> None:
        target = make_target(AuthMethod.STANDARD_WEBHOOKS)
        request = build(target, now=datetime.now(UTC))
        assert target.secret is not None and request.body is not None
        assert request.headers["webhook-id"] == "evt-1"
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]+=*", request.headers["webhook-signature"])
        payload = Webhook(target.secret.value).verify(request.body, dict(request.headers))
        assert payload == EVENT

    def test_timestamp_is_the_given_moment(self) -> None:
        request = build(make_target(AuthMethod.STANDARD_WEBHOOKS))
        assert request.headers["webhook-timestamp"] == str(int(NOW.timestamp()))

    def test_during_a_grace_period_both_secrets_verify(self) -> None:
        old = generate_secret(AuthMethod.STANDARD_WEBHOOKS)
        target = make_target(AuthMethod.STANDARD_WEBHOOKS, previous_secret=old)
        request = build(target, now=datetime.now(UTC))
        assert target.secret is not None and request.body is not None
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (target.secret, old):
            Webhook(secret.value).verify(request.body, dict(request.headers))
        stranger = generate_secret(AuthMethod.STANDARD_WEBHOOKS)
        with pytest.raises(Exception, match="No matching signature"):
            Webhook(stranger.value).verify(request.body, dict(request.headers))

    def test_get_is_refused(self) -> None:
        with pytest.raises(ValueError, match="only POST is possible"):
            build(make_target(AuthMethod.STANDARD_WEBHOOKS, Verb.GET))

    def test_a_secret_that_is_not_base64_is_refused(self) -> None:
        bad = SigningSecret(kid="k", value="whsec_not*base64")
        with pytest.raises(ValueError, match="followed by base64"):
            build(make_target(AuthMethod.STANDARD_WEBHOOKS, secret=bad))


class TestBadInput:
    def test_verb_and_method_given_as_text_become_enums(self) -> None:
        target = make_target(AuthMethod.HMAC, verb="GET", auth_method="HMAC")  # type: ignore[arg-type]
        assert target.verb is Verb.GET and target.auth_method is AuthMethod.HMAC
        assert build(target).method == "GET"

    def test_unknown_verb_or_method_is_refused(self) -> None:
        with pytest.raises(ValueError, match="verb must be GET or POST, got 'PUT'"):
            make_target(AuthMethod.HMAC, verb="PUT")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="auth_method must be one of HMAC, AccessToken"):
            make_target(AuthMethod.HMAC, auth_method="Basic")

    def test_attempts_count_from_one(self) -> None:
        with pytest.raises(ValueError, match="attempt counts from 1"):
            build(make_target(AuthMethod.HMAC), attempt=0)

    def test_naive_now_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            build(make_target(AuthMethod.HMAC), now=datetime(2026, 1, 1))

    def test_event_without_id_is_refused(self) -> None:
        with pytest.raises(ValueError, match="no eventId"):
            build(make_target(AuthMethod.HMAC), event={"eventType": "InterviewLoadEvent"})


class TestRedaction:
    def test_credentials_are_redacted_whatever_their_case(self) -> None:
        headers = {
            "authorization": "Bearer s3cret",
            "Webhook-Signature": "v1,abc",
            "X-Docuhooks-Event-Id": "evt-1",
        }
        assert redact_headers(headers) == {
            "authorization": "[redacted]",
            "Webhook-Signature": "[redacted]",
            "X-Docuhooks-Event-Id": "evt-1",
        }

    def test_a_receivers_cookies_stay_out_of_the_attempt_log(self) -> None:
        response = {"Set-Cookie": "session=abc", "Content-Type": "application/json"}
        assert redact_headers(response) == {
            "Set-Cookie": "[redacted]",
            "Content-Type": "application/json",
        }

    def test_redacting_a_built_request_leaves_no_secret(self) -> None:
        request = build(make_target(AuthMethod.ACCESS_TOKEN))
        assert "tok-123" not in json.dumps(redact_headers(request.headers))

    def test_token_in_url_is_redacted_and_the_rest_kept(self) -> None:
        request = build(make_target(AuthMethod.HMAC, Verb.GET, url="https://r.example/h?a=1#f"))
        assert redact_url(request.url) == "https://r.example/h?a=1&token=[redacted]#f"

    def test_urls_without_token_are_unchanged(self) -> None:
        for url in ("https://r.example/h", "https://r.example/h?tokens=1&a=%20"):
            assert redact_url(url) == url

    def test_new_traceparent_is_w3c_and_random(self) -> None:
        values = {new_traceparent() for _ in range(10)}
        assert len(values) == 10
        assert all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", v) for v in values)


class TestStoredEvent:
    """The worker signs events as the store keeps them, as JSON text; the requests must be
    the ones the decoded event gives."""

    @staticmethod
    def stored(text: str | None = None) -> StoredEvent:
        return StoredEvent("evt-1", str(EVENT["eventType"]), text or json.dumps(EVENT))

    @staticmethod
    def claims(request: OutboundRequest) -> dict[str, object]:
        decoded: dict[str, object] = jwt.decode(
            token_of(request), options={"verify_signature": False}
        )
        decoded.pop("jti")
        return decoded

    @pytest.mark.parametrize("verb", [Verb.POST, Verb.GET])
    @pytest.mark.parametrize(
        "text",
        [
            json.dumps(EVENT),  # as SQLAlchemy's JSON type writes it
            json.dumps(EVENT, separators=(",", ":"), ensure_ascii=False),
            json.dumps(EVENT, indent=2) + "\n  ",
        ],
        ids=["spaced", "compact", "indented"],
    )
    def test_hmac_claims_are_the_decoded_events(self, verb: Verb, text: str) -> None:
        target = make_target(AuthMethod.HMAC, verb)
        from_text = build(target, self.stored(text))  # type: ignore[arg-type]
        from_dict = build(target)
        assert self.claims(from_text) == self.claims(from_dict)
        assert {k: v for k, v in from_text.headers.items() if k != "traceparent"} == {
            k: v for k, v in from_dict.headers.items() if k != "traceparent"
        }
        assert target.secret is not None
        jwt.decode(
            token_of(from_text),
            target.secret.value,
            algorithms=["HS256"],
            audience=WEBHOOK_ID,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )

    def test_an_event_naming_a_claim_is_merged_not_spliced(self) -> None:
        # Never produced by the platform, but a claim must not appear twice in a token.
        odd = {**EVENT, "iss": "spoofed", "data": {"jti": "x"}}
        target = make_target(AuthMethod.HMAC)
        token = token_of(build(target, self.stored(json.dumps(odd))))  # type: ignore[arg-type]
        payload = base64.urlsafe_b64decode(token.split(".")[1] + "==")
        assert payload.count(b'"iss"') == 1
        assert json.loads(payload)["iss"] == ISSUER

    def test_an_empty_object_gets_just_the_claims(self) -> None:
        target = make_target(AuthMethod.HMAC)
        token = hmac_token(StoredEvent("e", "t", " { } "), target, issued_at=1, jti="j")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert set(claims) == {"iss", "aud", "iat", "nbf", "exp", "jti"}

    @pytest.mark.parametrize(
        ("method", "verb"),
        [
            (AuthMethod.ACCESS_TOKEN, Verb.POST),
            (AuthMethod.ACCESS_TOKEN, Verb.GET),
            (AuthMethod.STANDARD_WEBHOOKS, Verb.POST),
        ],
    )
    def test_other_methods_send_what_the_decoded_event_gives(
        self, method: AuthMethod, verb: Verb
    ) -> None:
        target = make_target(method, verb)
        from_text = build(target, self.stored(), traceparent="t")  # type: ignore[arg-type]
        from_dict = build(target, traceparent="t")
        assert from_text == from_dict


def test_a_get_tokens_url_is_what_url_encoding_the_token_gives() -> None:
    # The token goes into the query unencoded: it must need no encoding.
    from docuhooks.core.signing import _with_query

    target = make_target(AuthMethod.HMAC, Verb.GET, url="https://r.example/hook?a=1&b=x%20y")
    request = build(target)
    token = token_of(request)
    assert request.url == _with_query(target.url, [("token", token)])
    assert request.url.startswith("https://r.example/hook?a=1&b=x%20y&token=")
