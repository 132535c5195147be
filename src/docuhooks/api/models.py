"""Wire models shared by routes: camelCase JSON, strict types, unknown fields refused."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

EventTypeName = Literal[
    "NewWorkItemVersionComplete",
    "CustomInterviewEvent",
    "InterviewLoadEvent",
    "PostProcessingEvent",
]
AuthMethodName = Literal["HMAC", "AccessToken", "StandardWebhooks"]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


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
        422: "Invalid input; details name the fields",
    }.items()
}


class TimestampedOutput(Output):
    createdDate: datetime
