"""Start-up leaves nothing for the first request to build: the app serves every route
itself, none through an included router (whose table of routes FastAPI builds on the first
request that reaches it), and on PostgreSQL a few pooled connections are open before the
first request needs one."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from docuhooks import ui
from docuhooks.api.routes import webhooks
from docuhooks.app import WARM_CONNECTIONS, create_app
from docuhooks.context import AppContext


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_every_route_is_served_by_the_app_itself(ctx: AppContext) -> None:
    app = create_app(ctx, migrate=False)
    included = [route for route in app.routes if not isinstance(route, APIRoute | Route | Mount)]
    assert included == [], "an included router: its routes are built on the first request"
    paths = {route.path for route in app.routes if isinstance(route, APIRoute | Route)}
    every = {
        route.path
        for router in (webhooks.router, *ui.routers)
        for route in router.routes
        if isinstance(route, APIRoute)
    }
    assert every <= paths
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            # A route of a UI part, the API's tags and error responses, and no route at all.
            assert (await http.get("/ui/login")).status_code == 200
            openapi = (await http.get("/openapi.json")).json()
            listed = openapi["paths"]["/api/v1/webhooks"]["get"]
            assert listed["tags"] == ["webhooks"] and "404" in listed["responses"]
            assert not any(path.startswith("/ui") for path in openapi["paths"])
            assert (await http.get("/no/such/route")).status_code == 404


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_start_up_opens_database_connections_on_postgresql(ctx: AppContext) -> None:
    await ctx.db.engine.dispose()  # a fresh pool: what the fixture's set-up opened is gone
    assert ctx.db.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    app = create_app(ctx, migrate=False)
    async with app.router.lifespan_context(app):
        assert ctx.db.engine.pool.checkedin() == WARM_CONNECTIONS  # type: ignore[attr-defined]
