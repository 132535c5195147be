"""The API reference pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), from the package.

Their scripts, styles and icon are served by the app from `fastapi-offline`'s copy
(`app.API_DOCS_ASSETS`), never a CDN. The pages also carry a Content-Security-Policy that lets
them load only from this server: ReDoc's side menu otherwise fetches its maker's logo from
`cdn.redoc.ly`, and a browser behind a firewall (or a privacy-minded administrator) should see
the reference make no call elsewhere. Swagger UI starts from an inline script, so inline
scripts are allowed on these two pages (they show only the server's own OpenAPI document);
ReDoc runs its search in a worker made from a `blob:` URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse

__all__ = ["ASSETS", "router"]

#: Where the app serves the pages' assets (fastapi-offline's static folder).
ASSETS = "/api-docs/static"
OPENAPI = "/openapi.json"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    )
)

router = APIRouter(include_in_schema=False)


def _guarded(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _guarded(
        get_swagger_ui_html(
            openapi_url=f"{root}{OPENAPI}",
            title="docuhooks - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return _guarded(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _guarded(
        get_redoc_html(
            openapi_url=f"{root}{OPENAPI}",
            title="docuhooks - ReDoc",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
    )
