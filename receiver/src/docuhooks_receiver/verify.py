"""Checking that a request came from the platform, for each authentication method.

A `Verifier` is built once from the receiver's configuration and checks raw requests: the HTTP
method, the URL (or just its query), the headers and the body bytes. It needs no web framework,
so the same code serves Flask, FastAPI, Django or a bare WSGI app.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt

from docuhooks_receiver._errors import (
    BadSignature,
    MalformedRequest,
    MissingToken,
    TokenExpired,
    TokenNotYetValid,
    VerificationError,
    WrongAudience,
    WrongIssuer,
)
from docuhooks_receiver.credentials import (
    AccessToken,
    AuthMethod,
    HmacSecret,
    Secret,
    StandardWebhooksSecret,
    typed_secret,
)
from docuhooks_receiver.events import WebhookEvent, parse_event

#: Clock difference tolerated between platform and receiver, in seconds.
DEFAULT_LEEWAY = 60.0
#: How old a Standard Webhooks timestamp may be, as the specification's reference libraries do.
STANDARD_WEBHOOKS_TOLERANCE = 300.0

_JWT_CLAIMS = frozenset({"iss", "aud", "iat", "nbf", "exp", "jti", "sub"})
# Plain ASCII decimal, no sign, no leading zero, no spaces: one number has one spelling, so the
# header can only be the text the sender signed. Sixteen digits outlast any real clock.
_STANDARD_WEBHOOKS_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,15}")


class Verifier:
    """Verifies requests for one webhook.

    `secrets` are typed: `HmacSecret`, `StandardWebhooksSecret` or `AccessToken`, and each is
    only ever tried on requests of its own method. A plain string is the pinned
    `auth_method`'s secret; with no method pinned, a plain string must be a `whsec_` secret
    (anything else could be an HMAC secret or an access token, and is refused). Give two during
    a secret rotation: the platform keeps signing with the old one for the grace period, and the
    receiver can deploy the new one first.

    `audience` is the webhook's id (or a list of ids, when one endpoint serves several
    webhooks); HMAC tokens made for another webhook are refused. Standard
    Webhooks and access-token requests carry no audience, so there the secret alone decides.

    `auth_method` may be left out: the method is then recognised from the request itself
    (a `webhook-signature` header, a `token` parameter, an `Authorization: Bearer` header).
    Pinned, only that method's requests are accepted, and a typed secret of another method is
    refused here, since it could never be used.
    """

    def __init__(
        self,
        *,
        secrets: Sequence[Secret | str],
        audience: str | Sequence[str] | None,
        auth_method: AuthMethod | str | None = None,
        issuer: str | None = None,
        leeway: float = DEFAULT_LEEWAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(secrets, str | HmacSecret | StandardWebhooksSecret | AccessToken):
            raise TypeError("secrets must be a list of secrets, not one secret")
        if not secrets:
            raise ValueError("give at least one secret")
        if leeway < 0:
            raise ValueError(f"leeway must not be negative, got {leeway}")
        self.auth_method = AuthMethod(auth_method) if auth_method is not None else None
        self.secrets: tuple[Secret, ...] = tuple(
            typed_secret(secret, self.auth_method) for secret in secrets
        )
        if self.auth_method is not None:
            _refuse_other_methods(self.secrets, self.auth_method)
        self.audience: str | list[str] | None = (
            audience if audience is None or isinstance(audience, str) else list(audience)
        )
        self.issuer = issuer
        self.leeway = leeway
        self._clock = clock
        self._hmac_keys = tuple(
            s.value.encode("utf-8") for s in self.secrets if isinstance(s, HmacSecret)
        )
        self._standard_webhooks_keys = tuple(
            s.key for s in self.secrets if isinstance(s, StandardWebhooksSecret)
        )
        self._access_tokens = tuple(
            s.value.encode("utf-8") for s in self.secrets if isinstance(s, AccessToken)
        )

    def verify(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> WebhookEvent:
        """The typed event in the request, or a `VerificationError` saying what is wrong."""
        return parse_event(self.verify_payload(method, url, headers, body))

    def verify_payload(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> dict[str, Any]:
        """The event object in the request as a dict, without the JWT claims."""
        lowered = {name.lower(): value for name, value in headers.items()}
        query = _query_params(url)
        auth_method = self.auth_method or _detect_method(lowered, query, body)
        if auth_method is AuthMethod.HMAC:
            return self._verify_hmac(_find_token(method, lowered, query, body))
        if auth_method is AuthMethod.STANDARD_WEBHOOKS:
            return self._verify_standard_webhooks(lowered, body)
        return self._verify_access_token(method, lowered, query, body)

    def _verify_hmac(self, token: str) -> dict[str, Any]:
        if not self._hmac_keys:
            raise BadSignature(_no_secret_of_kind("an HMAC", "HmacSecret"))
        header = _jwt_header(token)
        if header.get("alg") != "HS256":
            raise BadSignature(
                f"the token is signed with {header.get('alg')!r}; only HS256 is accepted"
            )
        signing_input, _, encoded_signature = token.rpartition(".")
        signature = _canonical_signature(encoded_signature)
        # PyJWT re-reads every segment on each call, so the matching secret is found with one
        # HMAC each first: one full decode per request, however many secrets a rotation holds.
        message = signing_input.encode("utf-8")
        secret = next(
            (
                candidate
                for candidate in self._hmac_keys
                if hmac.compare_digest(
                    hmac.new(candidate, message, hashlib.sha256).digest(), signature
                )
            ),
            None,
        )
        if secret is None:
            raise BadSignature(
                f"the token's signature matches none of the {len(self._hmac_keys)} configured "
                f"HMAC secret(s) (token kid {header.get('kid')!r}); check the webhook's current "
                "HMAC secret"
            )
        options = {
            # Time claims are checked below with the injected clock and with clearer messages.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": self.audience is not None,
            "require": ["exp"],
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience=self.audience,
                issuer=self.issuer,
                options=options,  # type: ignore[arg-type]
            )
        except jwt.InvalidSignatureError:
            raise BadSignature("the token's signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise WrongAudience(self._audience_message(token)) from None
        except jwt.InvalidIssuerError:
            raise WrongIssuer(
                f"the token was issued by {_unverified_claims(token).get('iss')!r}, "
                f"this receiver expects {self.issuer!r}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise MalformedRequest(f"the token lacks a claim: {exc}") from None
        except jwt.PyJWTError as exc:
            raise MalformedRequest(f"the token could not be read: {exc}") from None
        self._check_times(claims)
        return {name: value for name, value in claims.items() if name not in _JWT_CLAIMS}

    def _audience_message(self, token: str) -> str:
        return (
            f"the token is for webhook {_unverified_claims(token).get('aud')!r}, "
            f"this receiver accepts webhook(s) {self.audience!r}; check the audience setting"
        )

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp = _number_claim(claims, "exp")
        if exp is not None and now > exp + self.leeway:
            ago = now - exp
            raise TokenExpired(
                f"the token expired {ago:.0f} s ago (leeway {self.leeway:g} s); if it was sent "
                "just now, a clock may be off: check the time on this host and the platform",
                seconds_ago=ago,
            )
        for name in ("nbf", "iat"):
            moment = _number_claim(claims, name)
            if moment is not None and moment > now + self.leeway:
                early = moment - now
                raise TokenNotYetValid(
                    f"the token is valid only from {early:.0f} s from now ({name}, leeway "
                    f"{self.leeway:g} s); a clock is probably off: check the time on this host",
                    seconds_early=early,
                )

    def _verify_standard_webhooks(
        self, headers: Mapping[str, str], body: bytes | None
    ) -> dict[str, Any]:
        msg_id = headers.get("webhook-id")
        timestamp_text = headers.get("webhook-timestamp")
        signature_header = headers.get("webhook-signature")
        missing = [
            name
            for name, value in (
                ("webhook-id", msg_id),
                ("webhook-timestamp", timestamp_text),
                ("webhook-signature", signature_header),
            )
            if not value
        ]
        if missing:
            raise MissingToken(f"the Standard Webhooks header(s) {', '.join(missing)} are missing")
        assert msg_id and timestamp_text and signature_header
        if not self._standard_webhooks_keys:
            raise BadSignature(
                _no_secret_of_kind("a Standard Webhooks", "StandardWebhooksSecret ('whsec_…')")
            )
        if not _STANDARD_WEBHOOKS_TIMESTAMP.fullmatch(timestamp_text):
            raise MalformedRequest(
                "webhook-timestamp must be whole seconds since 1970 in plain digits (no sign, "
                f"no leading zero, no spaces), got {timestamp_text!r:.40}"
            )
        timestamp = int(timestamp_text)
        payload = body or b""
        # The header's own text is signed: with one spelling per number, it is what was sent.
        signed = b"%s.%s.%s" % (msg_id.encode("utf-8"), timestamp_text.encode("ascii"), payload)
        offered = _offered_signatures(signature_header)
        # One HMAC of the body per key, however many signatures the header offers.
        expected = [
            hmac.new(key, signed, hashlib.sha256).digest() for key in self._standard_webhooks_keys
        ]
        if not any(
            hmac.compare_digest(digest, candidate) for digest in expected for candidate in offered
        ):
            raise BadSignature(
                "no v1 signature in webhook-signature matches any of the "
                f"{len(self._standard_webhooks_keys)} configured Standard Webhooks secret(s); "
                "check the webhook's current whsec_ secret"
            )
        # Checked after the signature, so the message can trust the timestamp it talks about.
        self._check_times({"exp": timestamp + STANDARD_WEBHOOKS_TOLERANCE, "iat": timestamp})
        return _json_object(payload)

    def _verify_access_token(
        self,
        method: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        body: bytes | None,
    ) -> dict[str, Any]:
        if not self._access_tokens:
            raise BadSignature(_no_secret_of_kind("an access-token", "AccessToken"))
        authorization = headers.get("authorization")
        if not authorization:
            raise MissingToken("the Authorization header is missing; expected 'Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MalformedRequest("the Authorization header must read 'Bearer <token>'")
        offered = token.strip().encode("utf-8")
        # Every configured token is compared, so the time taken does not reveal which one matched.
        matches = [hmac.compare_digest(offered, token) for token in self._access_tokens]
        if not any(matches):
            raise BadSignature(
                "the bearer token matches none of the configured access tokens; check the "
                "webhook's access token"
            )
        if method.upper() == "GET":
            return _unflatten_query(query)
        return _json_object(body or b"")


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    secrets: Sequence[Secret | str],
    audience: str | Sequence[str] | None,
    auth_method: AuthMethod | str | None = None,
    issuer: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> WebhookEvent:
    """Verify one request and return its typed event; see `Verifier` for the parameters."""
    verifier = Verifier(
        secrets=secrets, audience=audience, auth_method=auth_method, issuer=issuer, leeway=leeway
    )
    return verifier.verify(method, url, headers, body)


def _refuse_other_methods(secrets: Sequence[Secret], pinned: AuthMethod) -> None:
    others = sorted({type(s).__name__ for s in secrets if s.method is not pinned})
    if others:
        raise ValueError(
            f"auth_method is {pinned.value!r}, but {' and '.join(others)} secret(s) were given "
            "too; they would never be used: leave auth_method out to accept several methods"
        )


def _no_secret_of_kind(kind: str, type_name: str) -> str:
    return (
        f"this is {kind} request, but no secret of that kind is configured; a secret only "
        f"verifies requests of its own method: add the webhook's secret as {type_name}"
    )


def _detect_method(
    headers: Mapping[str, str], query: Mapping[str, str], body: bytes | None
) -> AuthMethod:
    if "webhook-signature" in headers:
        return AuthMethod.STANDARD_WEBHOOKS
    if "token" in query or (body is not None and body.startswith(b"token=")):
        return AuthMethod.HMAC
    if "authorization" in headers:
        return AuthMethod.ACCESS_TOKEN
    raise MissingToken(
        "the request carries no credentials: no 'token' parameter (HMAC), no webhook-signature "
        "header (Standard Webhooks) and no Authorization header (access token)"
    )


def _find_token(
    method: str, headers: Mapping[str, str], query: Mapping[str, str], body: bytes | None
) -> str:
    if method.upper() != "GET" and body:
        content_type = headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise MalformedRequest(
                f"an HMAC POST must be application/x-www-form-urlencoded, got {content_type!r}"
            )
        form = _form_params(body.decode("latin-1"), "body")
        if "token" in form:
            return form["token"]
    if "token" in query:
        return query["token"]
    raise MissingToken(
        "the request has no 'token' parameter: HMAC webhooks send it in the form body (POST) "
        "or the query string (GET)"
    )


def _query_params(url: str) -> dict[str, str]:
    query = urlsplit(url).query if ("?" in url or "://" in url or url.startswith("/")) else url
    return _form_params(query, "query string")


def _form_params(encoded: str, where: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(encoded, keep_blank_values=True):
        if name in params:
            raise MalformedRequest(f"the parameter {name!r} appears twice in the {where}")
        params[name] = value
    return params


def _jwt_header(token: str) -> dict[str, Any]:
    segments = token.split(".")
    if len(segments) != 3:
        raise MalformedRequest(
            f"the token is not a well-formed JWT: it has {len(segments)} dot-separated "
            "parts, a signed JWT has 3"
        )
    try:
        header = json.loads(_b64url_decode(segments[0]))
    except (binascii.Error, ValueError, RecursionError):  # nested past Python's stack
        raise MalformedRequest(
            "the token is not a well-formed JWT: its header is unreadable"
        ) from None
    if not isinstance(header, dict):
        raise MalformedRequest("the token is not a well-formed JWT: its header is not an object")
    return header


def _canonical_signature(encoded: str) -> bytes:
    try:
        signature = _b64url_decode(encoded)
    except (binascii.Error, ValueError):
        raise MalformedRequest("the token's signature is not base64url") from None
    # Base64 decoders ignore the spare low bits of the last character, so without this check
    # several distinct tokens would carry the same valid signature.
    if base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii") != encoded:
        raise BadSignature("the token's signature is not canonically encoded")
    return signature


def _b64url_decode(encoded: str) -> bytes:
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


#: Signatures one `webhook-signature` header may offer: the platform sends one, or two during
#: a secret rotation; more only cost the receiver work.
MAX_OFFERED_SIGNATURES = 8


def _offered_signatures(header: str) -> list[bytes]:
    offered = []
    items = header.split()
    if len(items) > MAX_OFFERED_SIGNATURES:
        raise MalformedRequest(
            f"webhook-signature offers {len(items)} signatures; at most "
            f"{MAX_OFFERED_SIGNATURES} are read"
        )
    for item in items:
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):  # ValueError: not ASCII
            raise MalformedRequest(
                f"webhook-signature holds invalid base64: {item!r:.40}"
            ) from None
        # As for JWTs: a non-canonical encoding would let altered headers pass.
        if base64.b64encode(signature).decode("ascii") != encoded:
            raise BadSignature("a webhook-signature value is not canonically encoded")
        offered.append(signature)
    if not offered:
        raise MalformedRequest("webhook-signature holds no 'v1,<base64>' signature")
    return offered


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise MalformedRequest("the body is not valid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise MalformedRequest(f"the body must be a JSON object, got {type(value).__name__}")
    return value


def _unflatten_query(query: Mapping[str, str]) -> dict[str, Any]:
    """Rebuild the event object from the flattened GET parameters of an AccessToken call."""
    params = dict(query)
    event: dict[str, Any] = {name: params.pop(name, None) for name in ("eventId", "eventType")}
    event["siteId"] = params.pop("siteId", None)
    event["createdBy"] = {
        field: params.pop(param, None)
        for param, field in (
            ("userId", "id"),
            ("userLoginName", "loginName"),
            ("userName", "name"),
            ("userEmail", "email"),
        )
    }
    if "test" in params:
        event["test"] = params.pop("test") == "true"
    params.pop("token", None)
    event["data"] = params
    return event


def _unverified_claims(token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return claims
    except jwt.PyJWTError:
        return {}


def _number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedRequest(f"the token's {name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds):
        # An `exp` of infinity (JSON 1e400) would make a token that never expires.
        raise MalformedRequest(f"the token's {name} must be a finite number, got {value!r}")
    return seconds


__all__ = [
    "DEFAULT_LEEWAY",
    "AccessToken",
    "AuthMethod",
    "HmacSecret",
    "StandardWebhooksSecret",
    "VerificationError",
    "Verifier",
    "verify_request",
]
