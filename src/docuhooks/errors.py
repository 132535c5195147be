"""The exception hierarchy. Services raise these; the API turns them into
`{"error": {"code", "message", "details"}}` with the status each one names."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one input field; `field` is a dotted path such as `workGroupIds.2`."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class DocuhooksError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": [d.to_dict() for d in self.details],
            }
        }


class BadRequest(DocuhooksError):
    status = 400
    code = "bad_request"


class ValidationFailed(DocuhooksError):
    status = 422
    code = "validation_failed"

    @classmethod
    def of(cls, errors: list[FieldError]) -> ValidationFailed:
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        return cls(f"invalid input: {summary}", details=errors)


class Unauthorized(DocuhooksError):
    status = 401
    code = "unauthorized"


class Forbidden(DocuhooksError):
    status = 403
    code = "forbidden"


class NotFound(DocuhooksError):
    status = 404
    code = "not_found"


class Conflict(DocuhooksError):
    status = 409
    code = "conflict"


class PayloadTooLarge(DocuhooksError):
    status = 413
    code = "payload_too_large"


class LimitExceeded(DocuhooksError):
    """Input over one of the server's resource limits (a render's time, memory or output, a
    DOCX's expanded size); `code` names the limit, as the message does with its setting."""

    status = 422
    code = "limit_exceeded"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 422,
        details: list[FieldError] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.code = code
        self.status = status


class Unavailable(DocuhooksError):
    """The server cannot do this now (it is shutting down); the same request may work later."""

    status = 503
    code = "unavailable"


class TooManyRequests(DocuhooksError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float) -> None:
        """`retry_after` is the wait in seconds; the `Retry-After` header gives it rounded up
        (at least 1), so a client that waits what it says is not refused again."""
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))
