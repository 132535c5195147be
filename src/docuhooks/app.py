"""The ASGI application: the REST API's routers and the admin UI mounted together, error
handling, limits, and start-up/shutdown. Above both `api` and `ui` (the UI uses the API's
dependencies), so neither imports the other's way up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
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
    webhooks,
)
from docuhooks.context import AppContext

log = structlog.get_logger(__name__)

#: Database connections a PostgreSQL-backed app opens at start-up (`Database.warm_up`).
WARM_CONNECTIONS = 4

#: Where the API reference's assets are served.
API_DOCS_ASSETS = "/api-docs/static"

#: Background parts started with the app and stopped with it (the worker registers here).
Component = Callable[[AppContext], Awaitable[Callable[[], Awaitable[None]]]]


def create_app(
    ctx: AppContext, *, components: list[Component] | None = None, migrate: bool = True
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await ctx.db.upgrade()
        await _warm_up(ctx)
        stops = [await start(ctx) for start in components or []]
        try:
            yield
        finally:
            for stop in reversed(stops):
                await stop()
            await ctx.close()

    # The API reference (/docs, /redoc) with its scripts, styles and icon served from the
    # package (`fastapi-offline` ships them) rather than a CDN: it works offline and behind
    # a firewall, as the admin UI does.
    app = FastAPIOffline(
        static_url=API_DOCS_ASSETS,
        title="docuhooks",
        version=__version__,
        description="Webhooks for document automation: administration, deliveries, and the "
        "document platform that produces the events.",
        routes=_routes(),
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    errors.install(app)
    app.mount("/ui/static", StaticFiles(directory=ui.STATIC_DIR), name="ui-static")
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=ctx.settings.max_json_body_bytes,
        upload_limit=ctx.settings.max_upload_bytes,
        answer_set_limit=ctx.settings.max_answer_set_bytes,
    )
    return app


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
        events.router,
        audit.router,
        platform.router,
        documents.router,
        metrics.router,
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
