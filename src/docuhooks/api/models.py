"""Wire models shared by routes: camelCase JSON, strict types, unknown fields refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

EventTypeName = Literal[
    "NewWorkItemVersionComplete",
    "CustomInterviewEvent",
    "InterviewLoadEvent",
    "PostProcessingEvent",
    "WebhookSuspended",
    "WebhookResumed",
    "WebhookDeactivated",
    "WebhookSecretGraceEnding",
    "DestinationBreakerOpened",
    "DestinationBreakerClosed",
]
AuthMethodName = Literal["HMAC", "AccessToken", "StandardWebhooks"]


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_holds_nul(item) for item in value)
    return False


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # No text column takes NUL (PostgreSQL refuses it): the sender's error, said as such,
        # rather than a database error on the way in.
        if _holds_nul(value):
            raise ValueError("must not contain the NUL character (U+0000)")
        return value


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(Output):
    field: str
    message: str


class ErrorInfo(Output):
    code: str
    message: str
    details: list[ErrorDetail]


class ErrorResponse(Output):
    error: ErrorInfo


class Page(Output, Generic[T]):
    items: list[T]
    nextCursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end"
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed request",
        401: "No or bad API token",
        403: "The caller's role may not do this",
        404: "No such object in the caller's site",
        409: "Conflicts with the current state",
        413: "Request body too large",
        415: "The body is not sent as JSON (Content-Type: application/json)",
        422: "Invalid input; details name the fields",
    }.items()
}

#: Routes that store documents, templates or answer sets: what a full site answers.
STORAGE_QUOTA: dict[int | str, dict[str, Any]] = {
    422: {
        "model": ErrorResponse,
        "description": "Invalid input; details name the fields. Or `storage_quota_exceeded`: "
        "storing this would take the site past its storage quota "
        "(`site_storage_quota_bytes`, `site_storage_quota_files`); nothing was stored",
    }
}


class TimestampedOutput(Output):
    createdDate: datetime
