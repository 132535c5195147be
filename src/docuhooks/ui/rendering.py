"""Rendering for the admin UI: the template environment, pages and htmx fragments, the error
pages every route shares, and the headers that keep pages out of caches and frames."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from docuhooks import __version__
from docuhooks.answers import off_loop
from docuhooks.api.errors import other_slash_route
from docuhooks.errors import DocuhooksError, TooManyRequests
from docuhooks.ui import history
from docuhooks.ui.session import COOKIE, CsrfRefused, LoginRequired, UiSession, find

log = structlog.get_logger("docuhooks.ui")

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

#: Scripts and styles come only from /ui/static: no inline script can run, so markup that
#: slipped past escaping still cannot execute.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)

#: Short messages a redirect names by key (never free text in a URL).
NOTICES = {
    "created": "Webhook created.",
    "updated": "Changes saved.",
    "deleted": "Webhook deleted.",
    "activated": "Webhook activated.",
    "deactivated": "Webhook deactivated: it sends nothing until activated again.",
    "resumed": "Webhook resumed: its waiting deliveries are due now.",
    "redelivered": "The event is queued to be sent again.",
    "signed-out": "You are signed out.",
    "password-changed": "Your password is changed. Your other browsers are signed out.",
    "user-saved": "User saved.",
    "user-created": "User created. Give them their password: they can change it on their "
    "account page once signed in.",
    "password-set": "Password set. Their signed-in browsers are signed out.",
    "token-revoked": "Token revoked: it no longer works anywhere.",
    "template-uploaded": "Template uploaded.",
    "template-deleted": "Template deleted: its room in the site's storage is free.",
    "workgroup-created": "Work group created.",
    "work-item-created": "Work item created. Open its interview to start version 1.",
    "work-item-deleted": "Work item deleted, with its versions and documents: their room in "
    "the site's storage is free.",
    "finished": "Interview finished: the documents are assembled.",
}


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _static(path: str) -> str:
    # The version in the URL lets browsers cache the files until an upgrade changes them.
    return f"/ui/static/{path}?v={__version__}"


def _details(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_details(v)}" for k, v in value.items() if v not in (None, []))
    if isinstance(value, list):
        return ", ".join(_details(v) for v in value)
    return str(value)


environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = _when
environment.filters["details"] = _details
environment.filters["urlquote"] = lambda value: quote(str(value), safe="")
environment.globals["static"] = _static
environment.globals.update(history.GLOBALS)
environment.globals["htmx_config"] = json.dumps(
    {
        # Our stylesheet styles the indicators: htmx's injected <style> would break the CSP.
        "includeIndicatorStyles": False,
        "allowEval": False,
        "allowScriptTags": False,
        "historyCacheSize": 0,
        # Not "style": carrying an element's style attribute over a swap is an inline style,
        # which the CSP refuses (Chromium gives form inputs an empty one).
        "attributesToSettle": ["class", "width", "height"],
        # Error fragments are swapped too: the server retargets them to the message area.
        "responseHandling": [
            {"code": "204", "swap": False},
            {"code": "[23]..", "swap": True},
            {"code": "[45]..", "swap": True, "error": True},
        ],
    }
)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def render(
    request: Request,
    template: str,
    session: UiSession | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page or fragment; `session` supplies the user and CSRF token to the layout."""
    html = _html(request, template, session, **context)
    return HTMLResponse(html, status_code=status_code, headers=headers)


async def render_sized(
    request: Request,
    template: str,
    session: UiSession,
    context: Callable[[], Mapping[str, Any]],
    *,
    size: int,
    threads: int,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """`render` of a page that may be large (about `size` bytes): one over `INLINE_BYTES` is
    rendered, `context()` built too, in the parsing threads under one of the session's
    site's slots (`answers.offload`), not on the event loop every site's requests are
    served by. The interview page of a template of 5,000 variables takes a few tenths of a
    second to render. Jinja renders the same page in any thread."""
    html = await off_loop(
        size,
        threads,
        _sized_html,
        request,
        template,
        session,
        context,
        site=session.principal.site_id,
    )
    return HTMLResponse(html, status_code=status_code, headers=headers)


def _sized_html(
    request: Request,
    template: str,
    session: UiSession,
    context: Callable[[], Mapping[str, Any]],
) -> str:
    return _html(request, template, session, **context())


def _html(request: Request, template: str, session: UiSession | None = None, **context: Any) -> str:
    """The HTML of a page or fragment (`render`)."""
    notice = NOTICES.get(request.query_params.get("notice", ""))
    return environment.get_template(template).render(
        request=request,
        session=session,
        user=session.principal if session else None,
        csrf=session.csrf_token if session else "",
        notice=notice,
        **context,
    )


def sentence(message: str) -> str:
    """A service's message ("a password needs …") as a sentence on a page."""
    return f"{message[:1].upper()}{message[1:]}."


def redirect(url: str) -> RedirectResponse:
    """After a form post: 303, so the browser follows with a GET."""
    return RedirectResponse(url, status_code=303)


async def _error(request: Request, status: int, title: str, message: str) -> Response:
    if is_htmx(request):
        return render(
            request,
            "_error_message.html",
            status_code=status,
            headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
            title=title,
            message=message,
        )
    # The signed-in header (and its sign-out button) on error pages too: a User who may not
    # use the UI can still sign out.
    session = await find(request.app.state.ctx, request.cookies.get(COOKIE))
    return render(request, "error.html", session, status_code=status, title=title, message=message)


_TITLES = {
    400: "The request is not valid",
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible right now",
    413: "Too large",
    422: "The input is not valid",
    429: "Too many requests",
}
#: Titles of limits whose status alone (422) would say the input is wrong.
_CODE_TITLES = {
    "storage_quota_exceeded": "The site's storage is full",
    "webhook_limit_exceeded": "The site has all the webhooks it may have",
}


def _login_required(request: Request) -> Response:
    target = "/ui/login"
    if request.method == "GET" and not is_htmx(request):
        target += "?next=" + quote(
            request.url.path + (f"?{request.url.query}" * bool(request.url.query)), safe=""
        )
        return redirect(target)
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return redirect(target)


#: What the page says when no UI route answered the address.
_UNROUTED = {
    404: "There is no page at this address.",
    405: "This address is not a page: it only takes a form's submission. Open the page "
    "the form is on.",
}


async def unrouted_page(request: Request, status: int, detail: str) -> Response:
    """The UI's error page for a `/ui/` address no UI route answers (a mistyped address, a
    GET of a form's target), instead of the API's JSON."""
    other = other_slash_route(request) if status == 404 else None
    if other is not None and request.method in ("GET", "HEAD"):
        # A trailing slash typed (or left off): the page is there.
        query = f"?{request.url.query}" if request.url.query else ""
        return redirect(other + query)
    title = _TITLES.get(status, "Something went wrong")
    return harden(await _error(request, status, title, _UNROUTED.get(status, detail)))


def harden(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    # Pages show a webhook's configuration, and once its secret: no cache may keep them.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


class UiRoute(APIRoute):
    """A UI route: the services' errors become HTML pages (or, for htmx, a message in the
    page's message area) with the same status the API gives them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                response = _login_required(request)
            except CsrfRefused:
                response = await _error(
                    request,
                    403,
                    "The form could not be checked",
                    "This request did not carry the page's security token, so nothing was "
                    "changed. Reload the page and try again.",
                )
            except DocuhooksError as exc:
                title = _CODE_TITLES.get(exc.code) or _TITLES.get(
                    exc.status, "Something went wrong"
                )
                response = await _error(request, exc.status, title, exc.message)
                if isinstance(exc, TooManyRequests):
                    response.headers["Retry-After"] = str(exc.retry_after)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                    for e in exc.errors()[:5]
                )
                response = await _error(request, 400, _TITLES[400], problems)
            return harden(response)

        return route
