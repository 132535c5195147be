"""The three kinds of secret a receiver holds, one type each.

An HMAC secret, a Standard Webhooks `whsec_` secret and an access token are different values
with different exposure: an access token travels in clear in every call it authenticates, so
if it could also key an HMAC token, anyone who saw one call could forge the others. Typing
each secret by its method means a `Verifier` only ever tries a secret on requests of that
method. Each type checks its value when it is made, and none shows it in its `repr`, so a
secret does not end up in a log by accident.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

#: How a Standard Webhooks secret starts; no other kind of secret may start so.
WHSEC_PREFIX = "whsec_"


class AuthMethod(StrEnum):
    """How a webhook authenticates its calls; the values are those of the webhook settings."""

    HMAC = "HMAC"
    ACCESS_TOKEN = "AccessToken"
    STANDARD_WEBHOOKS = "StandardWebhooks"

    @classmethod
    def named(cls, name: str) -> AuthMethod:
        """The method `name` spells, in any letter case and with or without `_` or `-`
        (`hmac`, `access_token`, `standard-webhooks`), as a setting or an environment
        variable may give it; ValueError listing the methods otherwise."""
        wanted = _simple(name)
        for method in cls:
            if _simple(method.value) == wanted:
                return method
        valid = ", ".join(method.value for method in cls)
        raise ValueError(f"must be one of {valid}; got {name.strip()!r}")


def _simple(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def checked_secret_text(kind: str, value: object) -> str:
    """`value` if it can be a secret of any kind; ValueError (or TypeError) saying why not."""
    if not isinstance(value, str):
        raise TypeError(f"{kind} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(
            f"{kind} is blank: an empty or all-whitespace secret would let anyone sign; "
            "check the variable or file it is read from"
        )
    if value != value.strip():
        raise ValueError(
            f"{kind} starts or ends with whitespace (a line read from a file keeps its "
            "newline): strip it, the platform never puts whitespace there"
        )
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValueError(
            f"{kind} holds a control character (a line break, say): the platform never "
            "makes such secrets; check the variable or file it is read from"
        )
    return value


def _not_whsec(kind: str, value: str, name: str) -> None:
    if value.startswith(WHSEC_PREFIX):
        raise ValueError(
            f"{kind} starts with {WHSEC_PREFIX!r}, which marks a Standard Webhooks secret: "
            f"give it as StandardWebhooksSecret(...) (or auth_method='StandardWebhooks'), "
            f"not as {name}"
        )


@dataclass(frozen=True, slots=True, repr=False)
class HmacSecret:
    """A webhook's HMAC secret: verifies HS256 tokens of HMAC webhooks, nothing else."""

    value: str
    method: ClassVar[AuthMethod] = AuthMethod.HMAC

    def __post_init__(self) -> None:
        checked_secret_text("an HMAC secret", self.value)
        _not_whsec("an HMAC secret", self.value, "an HMAC secret")

    def __repr__(self) -> str:
        return "HmacSecret(<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class StandardWebhooksSecret:
    """A Standard Webhooks secret, `whsec_` and base64 (bare base64 is accepted too, as the
    specification's reference libraries do); verifies `webhook-signature` headers only."""

    value: str
    key: bytes = field(init=False, compare=False)
    method: ClassVar[AuthMethod] = AuthMethod.STANDARD_WEBHOOKS

    def __post_init__(self) -> None:
        checked_secret_text("a Standard Webhooks secret", self.value)
        try:
            key = base64.b64decode(self.value.removeprefix(WHSEC_PREFIX), validate=True)
        except binascii.Error:
            key = b""
        if not key:
            raise ValueError(
                "a Standard Webhooks secret must be 'whsec_' followed by base64, as the "
                "webhook's page shows it"
            )
        object.__setattr__(self, "key", key)

    def __repr__(self) -> str:
        return "StandardWebhooksSecret(<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class AccessToken:
    """The access token an administrator typed into an AccessToken webhook; it is compared
    with the `Authorization: Bearer` header and never used as a signing key."""

    value: str
    method: ClassVar[AuthMethod] = AuthMethod.ACCESS_TOKEN

    def __post_init__(self) -> None:
        checked_secret_text("an access token", self.value)
        _not_whsec("an access token", self.value, "an access token")
        if not all("!" <= c <= "~" for c in self.value):
            # The platform accepts only these: anything else cannot travel in the header.
            raise ValueError(
                "an access token is visible ASCII only (letters, digits and punctuation, no "
                "spaces), as the platform requires"
            )

    def __repr__(self) -> str:
        return "AccessToken(<hidden>)"


Secret = HmacSecret | StandardWebhooksSecret | AccessToken

_BY_METHOD: dict[AuthMethod, type[Secret]] = {
    AuthMethod.HMAC: HmacSecret,
    AuthMethod.STANDARD_WEBHOOKS: StandardWebhooksSecret,
    AuthMethod.ACCESS_TOKEN: AccessToken,
}


def typed_secret(secret: Secret | str, pinned: AuthMethod | None) -> Secret:
    """`secret` as its typed kind.

    A plain string is the pinned method's secret. With no method pinned, only a `whsec_`
    string says what it is; any other plain string could be an HMAC secret or an access token,
    and guessing wrong is exactly how an access token seen in clear would come to sign HMAC
    tokens, so it is refused and the caller is told how to say which.
    """
    if isinstance(secret, HmacSecret | StandardWebhooksSecret | AccessToken):
        return secret
    text = checked_secret_text("a secret", secret)
    if pinned is not None:
        return _BY_METHOD[pinned](text)
    if text.startswith(WHSEC_PREFIX):
        return StandardWebhooksSecret(text)
    raise ValueError(
        "a plain-string secret could be an HMAC secret or an access token: say which, with "
        "HmacSecret(...) or AccessToken(...) from docuhooks_receiver, or pin the method with "
        "auth_method='HMAC' (or 'AccessToken'); a 'whsec_' secret needs neither"
    )
