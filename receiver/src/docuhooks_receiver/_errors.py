"""Why a webhook request was refused. Every error says what was wrong and what to check."""

from __future__ import annotations


class VerificationError(Exception):
    """The request did not prove it came from the platform; answer it with a 4xx.

    `status_code` is the HTTP status a receiver should reply with.
    """

    status_code = 401


class MissingToken(VerificationError):
    """The request carries no token, signature or Authorization header to check."""


class BadSignature(VerificationError):
    """The signature (or access token) matches none of the configured secrets."""


class WrongAudience(VerificationError):
    """The token was made for another webhook (its `aud` is not this receiver's webhook id)."""


class WrongIssuer(VerificationError):
    """The token was issued by another site (its `iss` is not the expected base URL)."""


class TokenExpired(VerificationError):
    """The token's lifetime, plus the leeway, is over.

    `seconds_ago` is how long ago it expired, not counting the leeway.
    """

    def __init__(self, message: str, *, seconds_ago: float) -> None:
        super().__init__(message)
        self.seconds_ago = seconds_ago


class TokenNotYetValid(VerificationError):
    """The token's `nbf` or `iat` (or the signed timestamp) lies in the future, past the leeway.

    `seconds_early` is how far in the future, not counting the leeway.
    """

    def __init__(self, message: str, *, seconds_early: float) -> None:
        super().__init__(message)
        self.seconds_early = seconds_early


class MalformedRequest(VerificationError):
    """The request or the event in it is not shaped as the platform sends them."""

    status_code = 400
