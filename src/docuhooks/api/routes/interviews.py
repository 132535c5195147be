"""Interview routes: open, read and change answers, fire interview
events, finish. Any role of the site may run interviews."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import Field

from docuhooks.api.deps import Ctx, ReadConn, StandaloneCaller
from docuhooks.api.models import ERRORS, STORAGE_QUOTA, Output
from docuhooks.api.responses import FastJSONResponse
from docuhooks.api.routes.platform import Version
from docuhooks.api.routes.platform_support import add_source_platform_aliases
from docuhooks.platform import interviews

router = APIRouter(prefix="/api/v1", tags=["interviews"], responses=ERRORS)

_ANSWER_BODY = {
    "content": {
        "application/json": {
            "schema": {"type": "object"},
            "examples": {
                "canonical": {
                    "value": {"answers": [{"name": "Client Name", "type": "text", "value": "Jane"}]}
                },
                "shorthand": {"value": {"Client Name": "Jane", "Fee": 1500}},
            },
        },
        "application/xml": {"schema": {"type": "string"}},
    }
}


class InterviewWarning(Output):
    """Something left out, never an error: the interview still opens or changes."""

    source: Literal["answers", "webhook"] = Field(
        description="answers: answers sent to this interview that the template cannot take; "
        "webhook: an interview webhook failed, or answered something the template cannot take"
    )
    code: str = Field(
        description="unknown_variable, type_mismatch, unknown_option, repeat_depth (one answer "
        "left out); for webhooks also invalid_answers (not an answer set), "
        "answer_limit_exceeded (an answer set over a limit, which contributes nothing) or the "
        "delivery log's error class: timeout, connect, dns, tls, blocked, http_status, "
        "invalid_response"
    )
    message: str
    variable: str | None = Field(description="The answer's variable, when about one answer")
    webhookId: str | None = Field(description="The webhook, when source is webhook")
    webhookName: str | None = Field(description="The webhook's name, when source is webhook")


class Interview(Output):
    id: str
    workItemId: str
    workItemVersionId: str
    versionNumber: int
    status: str = Field(description="open, finished, or replaced (by a newer interview)")
    answers: dict[str, Any] = Field(description="The current answers, canonical answer JSON")
    eventElements: list[str]
    warnings: list[InterviewWarning] = Field(
        description="Answers left out and interview webhooks that failed; never an error"
    )
    createdDate: datetime
    createdBy: str | None
    finishedDate: datetime | None


@router.post(
    "/workitems/{work_item_id}/interviews",
    status_code=201,
    response_model=Interview,
    responses=STORAGE_QUOTA,
)
async def open_interview(work_item_id: str, ctx: Ctx, who: StandaloneCaller) -> Response:
    """Open an interview: continues the version in progress or starts the next one, then
    runs the InterviewLoadEvent webhooks and overlays their answers. The interview keeps a
    copy of the answers, which counts towards the site's storage quota: past it, 422
    `storage_quota_exceeded`, and nothing is opened. Webhook answers that would pass it are
    left out of the interview opened, with a `storage_quota_exceeded` warning."""
    opened = await interviews.open_interview(ctx, who, work_item_id)
    return FastJSONResponse(opened, status_code=201)  # a person waits on this one


@router.get("/interviews/{interview_id}", response_model=Interview)
async def get_interview(interview_id: str, conn: ReadConn, who: StandaloneCaller) -> Response:
    # The stored answers go out as they are: nothing to encode (`interviews.get`).
    return FastJSONResponse(await interviews.get(conn, who, interview_id))


@router.get(
    "/interviews/{interview_id}/answers",
    responses={200: {"content": {"application/json": {}, "application/xml": {}}}},
)
async def get_answers(
    interview_id: str, request: Request, ctx: Ctx, who: StandaloneCaller
) -> Response:
    """The current answers: canonical answer JSON, or HotDocs answer XML when the `Accept`
    header asks for `application/xml` or `text/xml`. Large answer sets are encoded off the
    event loop, a few of one site's at a time (see docs/operations.md, "Answer sets")."""
    # No database connection is held while the request waits its site's turn.
    async with ctx.db.read() as conn:
        stored = await interviews.stored_answers_text(conn, who, interview_id)
    accept = request.headers.get("accept", "").lower()
    xml = "xml" in accept and "json" not in accept
    document = await interviews.answers_document(ctx, who, stored, xml=xml)
    return Response(document, media_type="application/xml" if xml else "application/json")


@router.put(
    "/interviews/{interview_id}/answers",
    response_model=Interview,
    responses=STORAGE_QUOTA,
    openapi_extra={"requestBody": _ANSWER_BODY},
)
async def put_answers(
    interview_id: str, request: Request, ctx: Ctx, who: StandaloneCaller
) -> Response:
    """Overlay answers onto the interview's: canonical or shorthand answer JSON
    (`application/json`) or HotDocs answer XML (`application/xml`, `text/xml`). Each answer
    replaces the one of the same name whole; answers that do not fit the template are left
    out with a warning naming the variable. An answer set over a limit (its size, a value's
    size: 413; the number of answers or values: 422) changes nothing; the error names the
    limit and, where it is about one answer, the answer. A large answer set is read, overlaid
    and encoded off the event loop, a few of one site's at a time. The answers count towards
    the site's storage quota (on the interview and on its version): answers that would take
    the site past it are a 422 `storage_quota_exceeded` and change nothing."""
    updated = await interviews.update_answers(
        ctx,
        who,
        interview_id,
        body=await request.body(),
        content_type=request.headers.get("content-type", "application/json"),
    )
    # The answers are already JSON text (`interviews.update_answers`): nothing to encode.
    return FastJSONResponse(updated)


@router.post(
    "/interviews/{interview_id}/events/{event_name}",
    response_model=Interview,
    responses=STORAGE_QUOTA,
)
async def fire_interview_event(
    interview_id: str, event_name: str, ctx: Ctx, who: StandaloneCaller
) -> Response:
    """Activate the interview event element `event_name` (one of the template's
    `eventElements`): runs the matching CustomInterviewEvent webhooks. Answers they add that
    would take the site past its storage quota are a 422 `storage_quota_exceeded`, and the
    interview keeps the answers it had."""
    return FastJSONResponse(await interviews.fire_event(ctx, who, interview_id, event_name))


@router.post("/interviews/{interview_id}/finish", response_model=Version, responses=STORAGE_QUOTA)
async def finish_interview(interview_id: str, ctx: Ctx, who: StandaloneCaller) -> dict[str, Any]:
    """Assemble the version from the answers, post-process, complete it, and write the
    NewWorkItemVersionComplete event in the same transaction. Returns the version.

    The assembled document counts towards the site's storage quota: past it, 422
    `storage_quota_exceeded`, and the interview stays open with its answers."""
    return await interviews.finish(ctx, who, interview_id)


add_source_platform_aliases(router)
