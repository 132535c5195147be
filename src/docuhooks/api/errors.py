"""Every error leaves the API as `{"error": {"code", "message", "details"}}`."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from docuhooks.errors import DocuhooksError, TooManyRequests

log = structlog.get_logger("docuhooks.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
}


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or []}}


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:] or parts
    return ".".join(parts)


def _position(document: Any, offset: Any) -> str:
    """`line L, column C` of a character offset in a JSON document, as editors count."""
    if not isinstance(document, str) or not isinstance(offset, int):
        return ""
    line = document.count("\n", 0, offset) + 1
    column = offset - (document.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}: "


def _malformed(exc: RequestValidationError) -> JSONResponse:
    details = [
        {
            "field": "body",
            "message": _position(exc.body, err["loc"][-1])
            + str(err.get("ctx", {}).get("error", "not valid JSON")),
        }
        for err in exc.errors()
        if err.get("type") == "json_invalid"
    ]
    summary = "; ".join(d["message"] for d in details)
    return JSONResponse(
        error_body("malformed_json", f"the request body is not valid JSON: {summary}", details),
        status_code=400,
    )


def _is_json(content_type: str) -> bool:
    """As FastAPI decides whether to parse a body as JSON: no type, or application/(*+)json."""
    if not content_type:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _not_json(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """A JSON body sent under another type (what `curl -d` does) reaches the model as bytes,
    and pydantic's answer ("body: Input should be a valid dictionary") hides the cause."""
    content_type = request.headers.get("content-type", "")
    if _is_json(content_type) or not any(
        tuple(err.get("loc", ())) == ("body",) for err in exc.errors()
    ):
        return None
    return JSONResponse(
        error_body(
            "unsupported_media_type",
            f"the request body must be JSON, sent with Content-Type: application/json "
            f"(this one came as {content_type[:100]!r})",
        ),
        status_code=415,
    )


def other_slash_route(request: Request) -> str | None:
    """The path with its trailing slash removed (or added), if a route answers that one.

    The app does not redirect to it (Starlette's `redirect_slashes`): a redirect has an empty
    body, so `curl -s` prints nothing, and a client that follows it may resend a POST as a
    GET. The API names the path instead, and the UI redirects a browser's GET there."""
    path = request.url.path
    if path in ("", "/"):
        return None
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    scope = {**request.scope, "path": other}
    for route in request.app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            return other
    return None


def install(app: FastAPI) -> None:
    app.router.redirect_slashes = False  # see `other_slash_route`

    @app.exception_handler(DocuhooksError)
    async def _domain(_: Request, exc: DocuhooksError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(err.get("type") == "json_invalid" for err in exc.errors()):
            return _malformed(exc)
        not_json = _not_json(request, exc)
        if not_json is not None:
            return not_json
        details = [
            {"field": _location(tuple(err.get("loc", ()))), "message": err.get("msg", "")}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse(
            error_body("validation_failed", f"invalid input: {summary}", details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        other = other_slash_route(request) if exc.status_code == 404 else None
        if other is not None:
            message = f"no route at {request.url.path!r}; the route is {other!r}"
        return JSONResponse(
            error_body(code, message),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        # Validation runs before writing, so this is a race with a concurrent request (two
        # creates with one name): the loser gets a conflict and nothing was written.
        log.info("integrity conflict", error=str(exc.orig)[:200])
        return JSONResponse(
            error_body("conflict", "the change conflicts with a concurrent change; retry it"),
            status_code=409,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return JSONResponse(
            error_body("internal_error", "an unexpected error occurred; it has been logged"),
            status_code=500,
        )
