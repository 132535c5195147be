"""The ASGI application: the REST API's routers and the admin UI mounted together, error
handling, limits, and start-up/shutdown. Above both `api` and `ui` (the UI uses the API's
dependencies), so neither imports the other's way up."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute

from docuhooks import __version__, ui
from docuhooks.api import errors
from docuhooks.api.limits import BodyLimitMiddleware
from docuhooks.api.routes import (
    audit,
    auth,
    deliveries,
    documents,
    events,
    health,
    identity,
    interviews,
    metrics,
    platform,
    reference,
    stats,
    webhooks,
)
from docuhooks.api.trace_middleware import TraceMiddleware
from docuhooks.context import AppContext
from docuhooks.identity.installation_key import check_installation_key
from docuhooks.ui.rendering import unrouted_page

log = structlog.get_logger(__name__)

#: Database connections a PostgreSQL-backed app opens at start-up (`Database.warm_up`).
WARM_CONNECTIONS = 4

#: Where the API reference's assets are served.
API_DOCS_ASSETS = reference.ASSETS

#: Background parts started with the app and stopped with it (the worker registers here).
Component = Callable[[AppContext], Awaitable[Callable[[], Awaitable[None]]]]


def create_app(
    ctx: AppContext, *, components: list[Component] | None = None, migrate: bool = True
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await ctx.db.upgrade()
        await check_installation_key(ctx.db, ctx.box, now=ctx.now())
        await _warm_up(ctx)
        stops = [await start(ctx) for start in components or []]
        try:
            yield
        finally:
            for stop in reversed(stops):
                await stop()
            await ctx.close()

    # The API reference's scripts, styles and icon are served from the package
    # (`fastapi-offline` ships them, and mounts them here) rather than a CDN: it works offline
    # and behind a firewall, as the admin UI does. Its pages are `api.routes.reference`.
    app = FastAPIOffline(
        docs_url=None,
        redoc_url=None,
        static_url=API_DOCS_ASSETS,
        title="docuhooks",
        version=__version__,
        description="Webhooks for document automation: administration, deliveries, and the "
        "document platform that produces the events.",
        routes=_routes(),
        lifespan=lifespan,
        # Requests are traced by `TraceMiddleware`, with every FastAPI release: FastAPI's own
        # request spans (recent releases make them once a tracer provider is set) would be
        # a second server span for each request. Older releases keep this as `extra`.
        telemetry={"tracing": False},
    )
    app.state.ctx = ctx
    errors.install(app)
    _answer_unrouted_ui_addresses_in_html(app)
    app.mount("/ui/static", StaticFiles(directory=ui.STATIC_DIR), name="ui-static")
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=ctx.settings.max_json_body_bytes,
        upload_limit=ctx.settings.max_upload_bytes,
        answer_set_limit=ctx.settings.max_answer_set_bytes,
    )
    # Outermost: the whole request, body limits and errors included, is in its trace.
    app.add_middleware(TraceMiddleware)
    return app


def _answer_unrouted_ui_addresses_in_html(app: FastAPI) -> None:
    """An address under `/ui/` that no route answers gets the UI's error page, with its
    header and a way back; everything else (the API, the UI's static files) keeps the API's
    JSON error. Here because the API sits below the UI and cannot render its pages."""
    api_answer = app.exception_handlers[StarletteHTTPException]

    async def answer(request: Request, exc: Exception) -> Response:
        path = request.url.path
        ui_page = path.startswith("/ui/") and not path.startswith("/ui/static/")
        if ui_page and isinstance(exc, StarletteHTTPException):
            return await unrouted_page(request, exc.status_code, str(exc.detail))
        response = api_answer(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(StarletteHTTPException, answer)


def _routes() -> list[BaseRoute]:
    """Every route of the REST API and the admin UI, in the order they are matched.

    The app is given the routers' routes (`FastAPI(routes=...)`) instead of including the
    routers: FastAPI builds an included router's table of routes on the first request that
    reaches it (a request no route matches reaches them all): 0.3 to 1 s for ours on a busy
    two-core machine, which start-up or the first unlucky request would pay. A route an
    `APIRouter` makes already carries that router's prefix, tags, responses and dependencies,
    so nothing is lost (but `app.dependency_overrides`, which nothing here uses);
    `tests/api/test_start_up.py` fails if an included router comes back.

    Routes are matched one by one: the interview routes, where a person waits on every
    request, come first (no other router's paths overlap theirs)."""
    routers = (
        interviews.router,
        health.router,
        auth.router,
        identity.router,
        webhooks.router,
        deliveries.router,
        stats.router,
        events.router,
        audit.router,
        platform.router,
        documents.router,
        metrics.router,
        reference.router,
        *ui.routers,
    )
    return [route for router in routers for route in router.routes]


async def _warm_up(ctx: AppContext) -> None:
    """Open a few database connections before the first request needs one (PostgreSQL)."""
    try:
        await ctx.db.warm_up(WARM_CONNECTIONS)
    except Exception as exc:
        # Not fatal: the first requests will connect for themselves, or report the outage.
        log.warning("database.warm_up_failed", error=f"{type(exc).__name__}: {exc}")
