"""Turning an event into a signed, ready-to-send request.

Everything here is pure: the delivery worker and the interview engine hand over an event, the
webhook's target and the attempt's identity, and get back a complete request description. The
transport sends it as it is and never needs to know how a webhook authenticates.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import (
    SplitResult,
    parse_qsl,
    quote,
    unquote_plus,
    urlencode,
    urlsplit,
    urlunsplit,
)

from docuhooks.core import jsontext
from docuhooks.core.events import AuthMethod, Verb
from docuhooks.core.ids import random_bytes

#: Seconds between a JWT's `iat` and its `exp`.
TOKEN_LIFETIME_SECONDS = 300
STANDARD_WEBHOOKS_SECRET_PREFIX = "whsec_"
REDACTED = "[redacted]"

_HMAC_SECRET_BYTES = 32
_STANDARD_WEBHOOKS_SECRET_BYTES = 32
#: Headers never written to the attempt log: our credentials on requests, and a receiver's
#: cookies on responses.
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "webhook-signature", "cookie", "set-cookie"}
)
_JSON_CONTENT_TYPE = "application/json"
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
#: Flattened GET parameters that AccessToken adds besides the scalar `data` fields.
_ACCESS_TOKEN_USER_PARAMS = (
    ("userId", "id"),
    ("userLoginName", "loginName"),
    ("userName", "name"),
    ("userEmail", "email"),
)


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """A webhook's signing secret and the id (`kid`) that names it in JWT headers.

    `value` is what the administrator copies into the receiver: for HMAC a random URL-safe string
    used as its UTF-8 bytes, for Standard Webhooks `whsec_` followed by base64 key bytes.
    """

    kid: str
    value: str

    def __repr__(self) -> str:
        # A secret must never reach a log line through an innocent `repr` of a target.
        return f"SigningSecret(kid={self.kid!r}, value={REDACTED!r})"


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """What signing needs to know about one webhook."""

    webhook_id: str
    url: str
    verb: Verb
    auth_method: AuthMethod
    #: The site's base URL, the JWT `iss`.
    issuer: str
    #: The current HMAC or Standard Webhooks secret; None for AccessToken.
    secret: SigningSecret | None
    #: Set only while a rotation grace period is running.
    previous_secret: SigningSecret | None = None
    access_token: str | None = None

    def __post_init__(self) -> None:
        # Stores hold the verb and method as text; comparing text with `is Verb.GET` would
        # silently take the POST path, so both become their enums here or fail loudly.
        try:
            object.__setattr__(self, "verb", Verb(self.verb))
        except ValueError:
            raise ValueError(f"verb must be GET or POST, got {self.verb!r}") from None
        try:
            object.__setattr__(self, "auth_method", AuthMethod(self.auth_method))
        except ValueError:
            methods = ", ".join(m.value for m in AuthMethod)
            raise ValueError(
                f"auth_method must be one of {methods}, got {self.auth_method!r}"
            ) from None

    def __repr__(self) -> str:
        return (
            f"WebhookTarget(webhook_id={self.webhook_id!r}, url={redact_url(self.url)!r}, "
            f"verb={self.verb.value!r}, auth_method={self.auth_method.value!r})"
        )


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One HTTP request, complete: the transport sends exactly this."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None


def generate_secret(method: AuthMethod) -> SigningSecret:
    """A new random secret for `method`, with a new key id."""
    kid = uuid.uuid4().hex
    if method is AuthMethod.HMAC:
        return SigningSecret(kid=kid, value=secrets.token_urlsafe(_HMAC_SECRET_BYTES))
    if method is AuthMethod.STANDARD_WEBHOOKS:
        key = secrets.token_bytes(_STANDARD_WEBHOOKS_SECRET_BYTES)
        return SigningSecret(
            kid=kid, value=STANDARD_WEBHOOKS_SECRET_PREFIX + base64.b64encode(key).decode("ascii")
        )
    raise ValueError(
        f"{method.value} webhooks have no platform-generated secret: the administrator "
        "supplies the access token"
    )


def new_traceparent() -> str:
    """A fresh W3C trace context header for a request that starts a trace."""
    ids = random_bytes(24).hex()
    return f"00-{ids[:32]}-{ids[32:]}-01"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store keeps it: the JSON text of its event object, and the two
    fields every request names in its headers.

    The delivery worker hands this to `build_request` rather than the decoded object: for
    an HMAC webhook the JWT's claims are the event's fields plus six of its own, so they are
    spliced onto the text, where decoding the event and encoding it again took about a
    tenth of the worker's time per delivery. Other methods decode it.
    """

    event_id: str
    event_type: str
    json_text: str

    def decoded(self) -> dict[str, Any]:
        value = json.loads(self.json_text)
        if not isinstance(value, dict):
            raise ValueError(f"event {self.event_id} is stored as something not a JSON object")
        return value


#: Any of the claims `hmac_token` adds to the event's own fields, as a JSON string.
_A_CLAIM_NAME = re.compile(r'"(?:iss|aud|iat|nbf|exp|jti)"')


def build_request(
    event: Mapping[str, Any] | StoredEvent,
    target: WebhookTarget,
    *,
    delivery_id: str,
    attempt: int,
    now: datetime,
    user_agent: str,
    traceparent: str | None = None,
    tracestate: str = "",
) -> OutboundRequest:
    """The signed request that delivers `event` (an event object) to `target`.

    `attempt` counts from 1. `now` must be timezone-aware: it becomes the JWT `iat` and the
    Standard Webhooks timestamp. `traceparent` (and `tracestate`, when not empty) are the
    W3C trace context headers (`core.tracecontext`); without one the request starts a new
    trace. Raises ValueError when the target cannot carry the event (a
    missing secret or token, Standard Webhooks over GET, a URL that already has a parameter the
    request needs).
    """
    if isinstance(event, StoredEvent):
        event_id, event_type = event.event_id, event.event_type
        if target.auth_method is not AuthMethod.HMAC:
            event = event.decoded()  # these methods send or flatten the fields themselves
    else:
        event_id, event_type = _event_identity(event)
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware, or the timestamps would depend on the host")
    headers: dict[str, str] = {
        "User-Agent": user_agent,
        "X-Docuhooks-Event-Id": event_id,
        "X-Docuhooks-Event-Type": event_type,
        "X-Docuhooks-Delivery-Id": delivery_id,
        "X-Docuhooks-Attempt": str(attempt),
        "traceparent": traceparent if traceparent is not None else new_traceparent(),
    }
    if tracestate:
        headers["tracestate"] = tracestate
    timestamp = int(now.timestamp())
    if target.auth_method is AuthMethod.HMAC:
        return _hmac_request(event, target, headers, timestamp)
    assert not isinstance(event, StoredEvent)
    if target.auth_method is AuthMethod.ACCESS_TOKEN:
        return _access_token_request(event, target, headers)
    if target.auth_method is AuthMethod.STANDARD_WEBHOOKS:
        return _standard_webhooks_request(event, target, headers, timestamp, event_id)
    raise ValueError(f"unknown authentication method {target.auth_method!r}")


def hmac_token(
    event: Mapping[str, Any] | StoredEvent, target: WebhookTarget, *, issued_at: int, jti: str
) -> str:
    """The HS256 JWT of the HMAC method; signed by the previous secret while a grace period runs.

    The old secret signs during the grace period because the receiver deploys the new secret
    first and only then is the rotation finished; until then only the old one is known to work.
    """
    secret = target.previous_secret or target.secret
    if secret is None:
        raise ValueError(f"HMAC webhook {target.webhook_id} has no signing secret")
    own = {
        "iss": target.issuer,
        "aud": target.webhook_id,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + TOKEN_LIFETIME_SECONDS,
        "jti": jti,
    }
    claims = (
        _spliced_claims(event, own)
        if isinstance(event, StoredEvent)
        else compact_json({**event, **own})
    )
    # What `jwt.encode(claims, key, "HS256", headers={"kid": kid})` produces (the tests
    # check PyJWT reads it back), built by hand: PyJWT re-validates the key and the headers
    # on every call, and its JSON encoder is the standard library's; together they cost more
    # than the HMAC itself on the delivery worker's hot path.
    payload = _B64(claims).rstrip(b"=")
    signing_input = _jwt_header_segment(secret.kid) + b"." + payload
    keyed = _keyed_sha256(secret.value).copy()
    keyed.update(signing_input)
    signature = _B64(keyed.digest())
    return (signing_input + b"." + signature.rstrip(b"=")).decode("ascii")


_B64 = base64.urlsafe_b64encode


@functools.lru_cache(maxsize=1024)
def _keyed_sha256(secret: str) -> hmac.HMAC:
    """HMAC-SHA256 keyed with `secret`, to copy for each token: keying (and, on OpenSSL 3,
    fetching the algorithm) on every call cost a quarter of the signature. A copy is taken
    per token, so the cached one is never updated and threads can share it."""
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def _spliced_claims(event: StoredEvent, own: dict[str, Any]) -> bytes:
    """The event's JSON object with `own`'s members added at its end: the same claims as
    `{**event, **own}`. An event whose text mentions a claim's name anywhere (it never
    should: the names are not fields of the event object) is decoded and merged instead, so a
    claim can never appear twice."""
    text = event.json_text.rstrip()
    if not text.endswith("}") or _A_CLAIM_NAME.search(text) is not None:
        return compact_json({**event.decoded(), **own})
    head = text[:-1].rstrip()
    separator = b"" if head.endswith("{") else b","
    return head.encode("utf-8") + separator + compact_json(own)[1:]


def compact_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, keys in insertion order (`jsontext.dumpb`)."""
    return jsontext.dumpb(value)


@functools.lru_cache(maxsize=1024)
def _jwt_header_segment(kid: str) -> bytes:
    # PyJWT sorts header keys: alg, kid, typ.
    header = json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}, separators=(",", ":"))
    return _B64(header.encode()).rstrip(b"=")


def standard_webhooks_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of the Standard Webhooks specification."""
    key = _standard_webhooks_key(secret)
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` fit for the attempt log: credentials replaced by `[redacted]`."""
    return {
        name: REDACTED if name.lower() in _SECRET_HEADERS else value
        for name, value in headers.items()
    }


def redact_url(url: str) -> str:
    """`url` with the value of any `token` query parameter replaced by `[redacted]`."""
    if "?" not in url:
        return url  # no query (the attempt log's usual case): nothing to split
    parts = urlsplit(url)
    if not parts.query:
        return url
    pieces = []
    for piece in parts.query.split("&"):
        name = piece.split("=", 1)[0]
        pieces.append(f"{name}={REDACTED}" if unquote_plus(name) == "token" else piece)
    return urlunsplit(parts._replace(query="&".join(pieces)))


def _event_identity(event: Mapping[str, Any]) -> tuple[str, str]:
    event_id = event.get("eventId")
    event_type = event.get("eventType")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("event has no eventId: pass the dict from Event.to_dict()")
    if not isinstance(event_type, str) or not event_type:
        raise ValueError(f"event {event_id} has no eventType: pass the dict from Event.to_dict()")
    return event_id, event_type


def _hmac_request(
    event: Mapping[str, Any] | StoredEvent,
    target: WebhookTarget,
    headers: dict[str, str],
    timestamp: int,
) -> OutboundRequest:
    # A random jti rather than one derived from delivery and attempt: a worker killed mid-request
    # re-runs the same attempt, and a receiver rejecting replayed jtis must still accept it.
    token = hmac_token(event, target, issued_at=timestamp, jti=random_bytes(16).hex())
    if target.verb is Verb.GET:
        # A JWT is URL-safe base64 and dots, all unreserved: encoding it would change nothing.
        url = _with_query(target.url, [("token", token)], encoded=f"token={token}")
        return OutboundRequest("GET", url, MappingProxyType(headers), None)
    headers["Content-Type"] = _FORM_CONTENT_TYPE
    # A JWT is made of URL-safe base64 and dots only, so it needs no form escaping.
    return OutboundRequest(
        "POST", target.url, MappingProxyType(headers), b"token=" + token.encode()
    )


def _access_token_request(
    event: Mapping[str, Any], target: WebhookTarget, headers: dict[str, str]
) -> OutboundRequest:
    if not target.access_token:
        raise ValueError(f"AccessToken webhook {target.webhook_id} has no access token")
    headers["Authorization"] = f"Bearer {target.access_token}"
    if target.verb is Verb.GET:
        url = _with_query(target.url, flatten_for_query(event))
        return OutboundRequest("GET", url, MappingProxyType(headers), None)
    headers["Content-Type"] = _JSON_CONTENT_TYPE
    return OutboundRequest("POST", target.url, MappingProxyType(headers), _json_body(event))


def _standard_webhooks_request(
    event: Mapping[str, Any],
    target: WebhookTarget,
    headers: dict[str, str],
    timestamp: int,
    event_id: str,
) -> OutboundRequest:
    if target.verb is not Verb.POST:
        raise ValueError(
            f"StandardWebhooks webhook {target.webhook_id} uses {target.verb.value}; "
            "Standard Webhooks signs a body, so only POST is possible"
        )
    if target.secret is None:
        raise ValueError(f"StandardWebhooks webhook {target.webhook_id} has no signing secret")
    body = _json_body(event)
    # Both signatures during a grace period, so a receiver holding either secret verifies.
    signing = [target.secret] + ([target.previous_secret] if target.previous_secret else [])
    headers["Content-Type"] = _JSON_CONTENT_TYPE
    headers["webhook-id"] = event_id
    headers["webhook-timestamp"] = str(timestamp)
    headers["webhook-signature"] = " ".join(
        standard_webhooks_signature(secret.value, event_id, timestamp, body) for secret in signing
    )
    return OutboundRequest("POST", target.url, MappingProxyType(headers), body)


def flatten_for_query(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The GET query parameters of an AccessToken call.

    Nested `data` values (lists, objects) cannot be flattened faithfully, so they are left out;
    nulls are left out too, so a receiver never has to tell "null" from the string "null".
    """
    params: list[tuple[str, str]] = [
        ("eventId", str(event["eventId"])),
        ("eventType", str(event["eventType"])),
        ("siteId", str(event.get("siteId", ""))),
    ]
    created_by = event.get("createdBy") or {}
    params.extend(
        (param, str(created_by[field]))
        for param, field in _ACCESS_TOKEN_USER_PARAMS
        if created_by.get(field) is not None
    )
    if event.get("test"):
        params.append(("test", "true"))
    taken = {name for name, _ in params}
    for name, value in (event.get("data") or {}).items():
        if value is None or isinstance(value, (list, dict)):
            continue
        if name in taken:
            raise ValueError(f"data field {name!r} collides with a top-level query parameter")
        params.append((name, _scalar_text(value)))
    return params


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _with_query(url: str, params: list[tuple[str, str]], *, encoded: str | None = None) -> str:
    """`url` with `params` added to its query (`encoded`: the same, already encoded)."""
    parts, existing = _split_query(url)
    clashes = sorted(existing.intersection(name for name, _ in params))
    if clashes:
        raise ValueError(
            f"the webhook URL already has the query parameter(s) {', '.join(clashes)}, "
            "which the request itself must carry"
        )
    added = encoded if encoded is not None else urlencode(params, quote_via=quote)
    query = f"{parts.query}&{added}" if parts.query else added
    return urlunsplit(parts._replace(query=query))


@functools.lru_cache(maxsize=1024)
def _split_query(url: str) -> tuple[SplitResult, frozenset[str]]:
    # A GET webhook's URL is the same for every call: split it and read its names once.
    parts = urlsplit(url)
    return parts, frozenset(name for name, _ in parse_qsl(parts.query, keep_blank_values=True))


def _json_body(event: Mapping[str, Any]) -> bytes:
    return compact_json(event)


def _standard_webhooks_key(secret: str) -> bytes:
    encoded = secret.removeprefix(STANDARD_WEBHOOKS_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ValueError("a Standard Webhooks secret is 'whsec_' followed by base64") from exc
    if not key:
        raise ValueError("a Standard Webhooks secret must not be empty")
    return key
