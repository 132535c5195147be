"""Request body limits, enforced while the body streams in (a lying Content-Length cannot
get past them); and the moment each request arrived, for the interview budget."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docuhooks.api.errors import error_body
from docuhooks.interview_hooks.budget import mark_waiting_since

#: (method, path ending) of the routes whose body is an answer set, in any spelling: they
#: take JSON and XML alike, up to the answer-set limit, whatever the other limits are.
_ANSWER_SET_ROUTES = (("PUT", "/answers"), ("POST", "/assemble"))
#: (method, path start) of the web UI's interview posts: a step's form or an answer file,
#: both an answer set at most.
_ANSWER_SET_PAGES = (("POST", "/ui/interviews/"),)


def takes_answer_set(scope: Scope) -> bool:
    path = str(scope.get("path", "")).rstrip("/").lower()
    method = scope.get("method", "")
    return any(method == m and path.endswith(end) for m, end in _ANSWER_SET_ROUTES) or any(
        method == m and path.startswith(start) for m, start in _ANSWER_SET_PAGES
    )


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        json_limit: int,
        upload_limit: int,
        answer_set_limit: int | None = None,
    ) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.answer_set_limit = answer_set_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Interview steps spend their budget from here: the person has been waiting since now.
        mark_waiting_since()
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.json_limit if "json" in content_type or not content_type else self.upload_limit
        too_large = _message(limit)
        if self.answer_set_limit is not None and takes_answer_set(scope):
            # Cut off while streaming in, long before the 60 MiB an upload may be.
            limit = self.answer_set_limit
            too_large = (
                f"the answer set is larger than {limit} bytes, the most accepted "
                "(max_answer_set_bytes)"
            )
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await _reject(send, 400, "bad_request", "Content-Length is not a number")
                return
            if too_big:
                await _reject(send, 413, "payload_too_large", too_large)
                return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _reject(send, 413, "payload_too_large", too_large)


class _TooLarge(Exception):
    pass


def _message(limit: int) -> str:
    return f"the request body is larger than this endpoint accepts ({limit} bytes)"


async def _reject(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps(error_body(code, message)).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
