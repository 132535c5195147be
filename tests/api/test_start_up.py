"""Start-up leaves nothing for the first request to build: FastAPI's table of each included
router's routes is made before the app serves (a request no route matches reaches them all),
and on PostgreSQL a few pooled connections are open before the first request needs one."""

from __future__ import annotations

from typing import Any

import fastapi.routing
import httpx
import pytest

from docuhooks.app import WARM_CONNECTIONS, create_app
from docuhooks.context import AppContext


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_first_requests_find_every_route_table_built(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FastAPI's own (private) builder, counted; it came with the lazy tables in 0.137.
    included_router = getattr(fastapi.routing, "_IncludedRouter", None)
    if included_router is None:
        pytest.skip(
            "this FastAPI (before 0.137) builds every route table when a router is "
            "included: none is left for a request to build"
        )
    built: list[Any] = []
    build = included_router._build_effective_context

    def counted(self: Any, route: Any) -> Any:
        built.append(route)
        return build(self, route)

    monkeypatch.setattr(included_router, "_build_effective_context", counted)
    app = create_app(ctx, migrate=False)
    async with app.router.lifespan_context(app):
        at_start = len(built)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            # The last router (the admin UI), and a path no route has.
            assert (await http.get("/ui/login")).status_code == 200
            assert (await http.get("/no/such/route")).status_code == 404
    assert at_start > 50, "the route tables were built at start-up"
    assert len(built) == at_start, "a request had to build a route table"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_start_up_opens_database_connections_on_postgresql(ctx: AppContext) -> None:
    await ctx.db.engine.dispose()  # a fresh pool: what the fixture's set-up opened is gone
    assert ctx.db.engine.pool.checkedin() == 0  # type: ignore[attr-defined]
    app = create_app(ctx, migrate=False)
    async with app.router.lifespan_context(app):
        assert ctx.db.engine.pool.checkedin() == WARM_CONNECTIONS  # type: ignore[attr-defined]
