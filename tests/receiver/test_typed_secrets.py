"""A secret of one method never verifies a request of another; blank secrets and lenient
Standard Webhooks timestamps are refused."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from tests.receiver.receiver_samples import WEBHOOK_ID, sample_event, target

from docuhooks.core.events import AuthMethod, EventType, Verb
from docuhooks.core.signing import (
    OutboundRequest,
    SigningSecret,
    build_request,
    generate_secret,
)
from docuhooks_receiver import (
    AccessToken,
    BadSignature,
    HmacSecret,
    MalformedRequest,
    StandardWebhooksSecret,
    VerificationError,
    Verifier,
)

HMAC_SECRET = generate_secret(AuthMethod.HMAC).value
WHSEC_SECRET = generate_secret(AuthMethod.STANDARD_WEBHOOKS).value
ACCESS_TOKEN = "legacy-access-token-0123456789abcdef"


def hmac_request(key: str) -> tuple[str, str, dict[str, str], bytes]:
    """An HMAC webhook call whose JWT is keyed with `key`, as an attacker would make it."""
    claims = {
        **sample_event(EventType.INTERVIEW_LOAD_EVENT),
        "aud": WEBHOOK_ID,
        "exp": int(time.time()) + 60,
    }
    body = urlencode({"token": jwt.encode(claims, key, algorithm="HS256")}).encode()
    return "POST", "/hooks", {"Content-Type": "application/x-www-form-urlencoded"}, body


def bearer_request(token: str) -> tuple[str, str, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = b'{"eventId": "e", "eventType": "InterviewLoadEvent"}'
    return "POST", "/hooks", headers, body


class TestOneKindNeverVerifiesAnother:
    def test_a_jwt_keyed_with_the_access_token_is_refused_beside_an_hmac_secret(self) -> None:
        verifier = Verifier(
            secrets=[HmacSecret(HMAC_SECRET), AccessToken(ACCESS_TOKEN)], audience=WEBHOOK_ID
        )
        verifier.verify(*hmac_request(HMAC_SECRET))
        with pytest.raises(BadSignature, match="none of the 1 configured HMAC"):
            verifier.verify(*hmac_request(ACCESS_TOKEN))

    def test_plain_hmac_secret_and_access_token_together_are_refused_as_ambiguous(self) -> None:
        with pytest.raises(ValueError, match="HMAC secret or an access token"):
            Verifier(secrets=[HMAC_SECRET, ACCESS_TOKEN], audience=WEBHOOK_ID)

    def test_an_access_token_cannot_join_a_verifier_pinned_to_hmac(self) -> None:
        with pytest.raises(ValueError, match="auth_method is 'HMAC', but AccessToken"):
            Verifier(
                secrets=[HmacSecret(HMAC_SECRET), AccessToken(ACCESS_TOKEN)],
                audience=WEBHOOK_ID,
                auth_method="HMAC",
            )

    def test_the_hmac_secret_is_refused_as_a_bearer_token(self) -> None:
        verifier = Verifier(
            secrets=[HmacSecret(HMAC_SECRET), AccessToken(ACCESS_TOKEN)], audience=None
        )
        verifier.verify_payload(*bearer_request(ACCESS_TOKEN))
        with pytest.raises(BadSignature, match="none of the configured access tokens"):
            verifier.verify_payload(*bearer_request(HMAC_SECRET))

    def test_an_hmac_secret_cannot_join_a_verifier_pinned_to_access_tokens(self) -> None:
        with pytest.raises(ValueError, match="'AccessToken', but HmacSecret"):
            Verifier(
                secrets=[AccessToken(ACCESS_TOKEN), HmacSecret(HMAC_SECRET)],
                audience=None,
                auth_method="AccessToken",
            )

    def test_a_verifier_with_only_hmac_secrets_refuses_any_bearer_token(self) -> None:
        verifier = Verifier(secrets=[HMAC_SECRET], audience=None, auth_method="HMAC")
        with pytest.raises(BadSignature, match="access-token request, but no secret of that"):
            Verifier(secrets=[HmacSecret(HMAC_SECRET)], audience=None).verify_payload(
                *bearer_request(HMAC_SECRET)
            )
        with pytest.raises(VerificationError):  # pinned: the bearer header is not even read
            verifier.verify_payload(*bearer_request(HMAC_SECRET))

    def test_a_jwt_keyed_with_the_whsec_string_is_refused(self) -> None:
        verifier = Verifier(secrets=[HmacSecret(HMAC_SECRET), WHSEC_SECRET], audience=WEBHOOK_ID)
        with pytest.raises(BadSignature, match="none of the 1 configured HMAC"):
            verifier.verify(*hmac_request(WHSEC_SECRET))

    @pytest.mark.parametrize("make", [HmacSecret, AccessToken])
    def test_a_whsec_secret_is_neither_an_hmac_secret_nor_an_access_token(
        self, make: type[HmacSecret] | type[AccessToken]
    ) -> None:
        with pytest.raises(ValueError, match="marks a Standard Webhooks secret"):
            make(WHSEC_SECRET)

    def test_a_whsec_string_is_refused_by_a_verifier_pinned_to_hmac(self) -> None:
        with pytest.raises(ValueError, match="marks a Standard Webhooks secret"):
            Verifier(secrets=[WHSEC_SECRET], audience=WEBHOOK_ID, auth_method="HMAC")

    def test_an_hmac_secret_that_reads_as_base64_never_keys_standard_webhooks(self) -> None:
        """Once, every secret that decoded as base64 was tried as a Standard Webhooks key."""
        base64_looking = "A" * 44
        webhook = dataclasses.replace(
            target(AuthMethod.STANDARD_WEBHOOKS),
            secret=SigningSecret(kid="k", value="whsec_" + base64_looking),
        )
        request = sent(webhook)
        Verifier(secrets=["whsec_" + base64_looking], audience=None).verify(*request)
        with pytest.raises(BadSignature, match="Standard Webhooks request, but no secret"):
            Verifier(secrets=[HmacSecret(base64_looking)], audience=None).verify(*request)


class TestBlankSecrets:
    @pytest.mark.parametrize("blank", ["", "   ", "\t", "\n", " \r\n "])
    def test_a_blank_plain_secret_is_refused(self, blank: str) -> None:
        for pinned in (None, "HMAC", "AccessToken", "StandardWebhooks"):
            with pytest.raises(ValueError, match="blank"):
                Verifier(secrets=[blank], audience=None, auth_method=pinned)

    @pytest.mark.parametrize("make", [HmacSecret, StandardWebhooksSecret, AccessToken])
    def test_a_blank_typed_secret_is_refused(
        self, make: type[HmacSecret] | type[StandardWebhooksSecret] | type[AccessToken]
    ) -> None:
        with pytest.raises(ValueError, match="blank"):
            make("   ")

    def test_surrounding_whitespace_is_refused(self) -> None:
        with pytest.raises(ValueError, match="newline"):
            HmacSecret(HMAC_SECRET + "\n")
        with pytest.raises(ValueError, match="whitespace"):
            AccessToken(" " + ACCESS_TOKEN)

    def test_a_whsec_secret_must_hold_base64(self) -> None:
        with pytest.raises(ValueError, match="'whsec_' followed by base64"):
            StandardWebhooksSecret("whsec_not base64!")
        with pytest.raises(ValueError, match="'whsec_' followed by base64"):
            StandardWebhooksSecret("whsec_")

    def test_no_secret_shows_its_value(self) -> None:
        for secret in (
            HmacSecret(HMAC_SECRET),
            StandardWebhooksSecret(WHSEC_SECRET),
            AccessToken(ACCESS_TOKEN),
        ):
            assert secret.value not in repr(secret)
            assert secret.value not in repr(Verifier(secrets=[secret], audience=None).secrets)


def sent(webhook) -> tuple[str, str, dict[str, str], bytes | None]:
    request: OutboundRequest = build_request(
        sample_event(EventType.NEW_WORK_ITEM_VERSION_COMPLETE),
        webhook,
        delivery_id="dlv-1",
        attempt=1,
        now=datetime.now(UTC),
        user_agent="docuhooks/test",
    )
    return request.method, request.url, dict(request.headers), request.body


class TestStandardWebhooksTimestamp:
    @pytest.fixture
    def request_and_verifier(
        self,
    ) -> tuple[tuple[str, str, dict[str, str], bytes | None], Verifier]:
        webhook = target(AuthMethod.STANDARD_WEBHOOKS, Verb.POST)
        assert webhook.secret is not None
        verifier = Verifier(secrets=[StandardWebhooksSecret(webhook.secret.value)], audience=None)
        return sent(webhook), verifier

    def test_the_original_timestamp_verifies(self, request_and_verifier) -> None:
        request, verifier = request_and_verifier
        verifier.verify(*request)

    @pytest.mark.parametrize(
        "respell",
        [
            lambda t: "+" + t,
            lambda t: "0" + t,
            lambda t: " " + t,
            lambda t: t + " ",
            lambda t: t + "\n",
            lambda t: t[:4] + "_" + t[4:],
            lambda t: "".join(chr(0x0660 + int(d)) for d in t),  # Arabic-Indic digits
        ],
        ids=[
            "plus",
            "leading-zero",
            "space-before",
            "space-after",
            "newline",
            "underscore",
            "non-ascii-digits",
        ],
    )
    def test_another_spelling_of_the_same_time_is_refused(
        self, request_and_verifier, respell
    ) -> None:
        (method, url, headers, body), verifier = request_and_verifier
        name = next(n for n in headers if n.lower() == "webhook-timestamp")
        original = headers[name]
        assert int(respell(original)) == int(original)  # what a lenient parser would read
        tampered = {**headers, name: respell(original)}
        with pytest.raises(MalformedRequest, match="plain digits"):
            verifier.verify(method, url, tampered, body)

    def test_a_zero_timestamp_is_read_as_plain_digits_and_then_too_old(self) -> None:
        key = base64.b64decode(WHSEC_SECRET.removeprefix("whsec_"))
        body = b"{}"
        signature = base64.b64encode(
            hmac.new(key, b"m.0." + body, hashlib.sha256).digest()
        ).decode()
        headers = {
            "webhook-id": "m",
            "webhook-timestamp": "0",
            "webhook-signature": f"v1,{signature}",
        }
        verifier = Verifier(secrets=[WHSEC_SECRET], audience=None)
        with pytest.raises(Exception, match="expired"):
            verifier.verify("POST", "/hooks", headers, body)


class TestWhatAnUnauthenticatedSenderCanCost:
    def test_a_header_offering_many_signatures_is_refused_before_any_hmac(
        self, request_and_verifier_of_standard_webhooks: tuple[tuple[Any, ...], Verifier]
    ) -> None:
        (method, url, headers, body), verifier = request_and_verifier_of_standard_webhooks
        name = next(n for n in headers if n.lower() == "webhook-signature")
        fake = "v1," + base64.b64encode(b"\0" * 32).decode()
        many = {**headers, name: " ".join([headers[name], *[fake] * 1300])}
        with pytest.raises(MalformedRequest, match="at most 8"):
            verifier.verify(method, url, many, body)
        # A rotation's two signatures, and a few more, are still read.
        few = {**headers, name: " ".join([fake, fake, headers[name]])}
        verifier.verify(method, url, few, body)

    @pytest.mark.parametrize("exp", [float("inf"), float("nan")])
    def test_a_token_whose_expiry_is_not_a_finite_number_is_refused(self, exp: float) -> None:
        claims = {**sample_event(EventType.INTERVIEW_LOAD_EVENT), "aud": WEBHOOK_ID, "exp": exp}
        body = urlencode({"token": jwt.encode(claims, HMAC_SECRET, algorithm="HS256")}).encode()
        verifier = Verifier(secrets=[HmacSecret(HMAC_SECRET)], audience=WEBHOOK_ID)
        with pytest.raises(MalformedRequest, match="finite"):
            verifier.verify(
                "POST", "/hooks", {"Content-Type": "application/x-www-form-urlencoded"}, body
            )


class TestSecretsThePlatformNeverMakes:
    @pytest.mark.parametrize("value", ["tök-0123456789", "two words", "tab\there"])
    def test_an_access_token_is_visible_ascii(self, value: str) -> None:
        with pytest.raises(ValueError):
            AccessToken(value)

    @pytest.mark.parametrize("value", ["line\nbreak" * 4, "nul\0byte" * 4, "del\x7f" * 8])
    def test_no_secret_holds_a_control_character(self, value: str) -> None:
        with pytest.raises(ValueError, match="control character"):
            HmacSecret(value)


@pytest.fixture
def request_and_verifier_of_standard_webhooks() -> tuple[tuple[Any, ...], Verifier]:
    webhook = target(AuthMethod.STANDARD_WEBHOOKS, Verb.POST)
    assert webhook.secret is not None
    verifier = Verifier(secrets=[StandardWebhooksSecret(webhook.secret.value)], audience=None)
    return sent(webhook), verifier
