"""The ASGI application: routers, error handling, limits, and start-up/shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

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

#: Background parts started with the app and stopped with it (the worker registers here).
Component = Callable[[AppContext], Awaitable[Callable[[], Awaitable[None]]]]


def create_app(
    ctx: AppContext, *, components: list[Component] | None = None, migrate: bool = True
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await ctx.db.upgrade()
        stops = [await start(ctx) for start in components or []]
        try:
            yield
        finally:
            for stop in reversed(stops):
                await stop()
            await ctx.close()

    app = FastAPI(
        title="docuhooks",
        version=__version__,
        description="Webhooks for document automation: administration, deliveries, and the "
        "document platform that produces the events.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    errors.install(app)
    # Routes are matched in order, at about 1 µs each: the interview routes, where a person
    # waits on every request, come first (no other router's paths overlap theirs).
    for router in (
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
        ui.router,
    ):
        app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=ui.STATIC_DIR), name="ui-static")
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=ctx.settings.max_json_body_bytes,
        upload_limit=ctx.settings.max_upload_bytes,
    )
    return app
