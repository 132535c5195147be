"""A FastAPI dependency that verifies a docuhooks call and hands the route its typed event.

    verifier = Verifier(secrets=[HmacSecret(SECRET)], audience=WEBHOOK_ID)

    @app.post("/hooks")
    async def hook(event: Annotated[WebhookEvent, Depends(verified_event(verifier))]): ...

A request that fails verification never reaches the route: it is answered with the error's
status (401, or 400 for a malformed request) and `{"detail": {"code", "message"}}`, which the
platform records in the delivery log where an administrator can read why it was refused.
Install with the `fastapi` extra.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request

from docuhooks_receiver._errors import VerificationError
from docuhooks_receiver.events import WebhookEvent
from docuhooks_receiver.verify import Verifier


def verified_event(verifier: Verifier) -> Callable[[Request], Awaitable[WebhookEvent]]:
    """A dependency returning the request's verified event, or answering 401/400 itself."""

    async def dependency(request: Request) -> WebhookEvent:
        body = await request.body()
        try:
            return verifier.verify(
                request.method, "?" + request.url.query, request.headers, body or None
            )
        except VerificationError as exc:
            raise HTTPException(
                status_code=exc.status_code,
                detail={"code": type(exc).__name__, "message": str(exc)},
            ) from None

    return dependency
