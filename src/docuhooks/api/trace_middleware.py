"""Every HTTP request runs in a trace: the caller's, when it sends a valid W3C `traceparent`
(and `tracestate`), else a new one. The request's span is the current one while its route
runs, so what the route causes (an event, an interview's calls, a post-processing call)
continues the trace; with OpenTelemetry on it is recorded as a server span named by the
route's template (`POST /api/v1/interviews/{interview_id}/finish`)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docuhooks import tracing
from docuhooks.core.tracecontext import from_headers

#: Probes and scrapes cause no call to a receiver, and a span for each every few seconds
#: would bury the requests that do.
UNTRACED = frozenset({"/metrics", "/healthz", "/readyz"})


class TraceMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED:
            await self.app(scope, receive, send)
            return
        traceparent: list[str] = []
        tracestate: list[str] = []
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent.append(value.decode("latin-1"))
            elif name == b"tracestate":
                tracestate.append(value.decode("latin-1"))
        method = scope["method"]
        span = tracing.start_span(
            f"{method}",
            parent=from_headers(traceparent, tracestate) if traceparent else None,
            kind=tracing.Kind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
            propagated=True,
        )
        if not span.recording:
            with tracing.use(span):
                await self.app(scope, receive, send)
            return

        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            with tracing.use(span):
                await self.app(scope, receive, sending)
        except Exception as exc:
            span.fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.rename(f"{method} {route}")
                span.set_attribute("http.route", route)
            if status:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.fail(f"answered {status}")
            span.end()
