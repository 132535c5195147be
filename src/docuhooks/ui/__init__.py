"""The web UI: server-rendered pages with htmx for in-place actions, signed in with a
password, each page calling the same services as the API. The webhook administration pages
are modules here; the document platform's pages are in `ui.routes`.

`routers` holds every UI router, in the order the app matches their routes (all kept out
of the OpenAPI document); `STATIC_DIR` is served at `/ui/static`."""

from __future__ import annotations

from fastapi import APIRouter, Response

from docuhooks.ui import (
    account,
    auth,
    dashboard,
    deliveries,
    events,
    interview,
    tokens,
    users,
    webhooks,
    workitems,
)
from docuhooks.ui.rendering import STATIC_DIR, UiRoute, redirect
from docuhooks.ui.routes import templates, workgroups

__all__ = ["STATIC_DIR", "routers"]

router = APIRouter(route_class=UiRoute, include_in_schema=False)


@router.get("/")
async def home() -> Response:
    """A browser opening the server's address lands in the admin UI."""
    return redirect("/ui/")


#: The app serves these routers' routes itself rather than including the routers (see
#: `docuhooks.app`): a UI part is added here, not included into `router`.
routers: tuple[APIRouter, ...] = (
    router,
    auth.router,
    webhooks.router,
    dashboard.router,
    deliveries.router,
    events.router,
    users.router,
    account.router,
    tokens.router,
    templates.router,
    workgroups.router,
    workitems.router,
    interview.router,
)
