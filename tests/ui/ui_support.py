"""What the admin UI tests share: users who can sign in, signing in, and reading pages."""

from __future__ import annotations

import re
import uuid

import httpx

from docuhooks.context import AppContext
from docuhooks.identity import service as identity

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def make_user(ctx: AppContext, site_id: str, role: str) -> str:
    """A user of `role` in the site, with PASSWORD; returns the login name."""
    login = f"ui-{role.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    async with ctx.db.transaction() as conn:
        await identity.create_user(
            conn,
            site_id=site_id,
            login_name=login,
            name=f"{role} person",
            roles=[role],
            password=PASSWORD,
            now=ctx.now(),
        )
    return login


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, login: str, password: str = PASSWORD) -> str:
    """Sign `client` in through the login form; returns the session's CSRF token."""
    client.cookies.clear()
    form = await client.get("/ui/login")
    assert form.status_code == 200, form.text
    done = await client.post(
        "/ui/login",
        data={
            "csrf_token": csrf_of(form.text),
            "login_name": login,
            "password": password,
            "next": "/ui/",
        },
    )
    assert done.status_code == 303, done.text
    home = await client.get("/ui/", follow_redirects=True)  # a User lands on work items
    return csrf_of(home.text)


def field_error(html: str, field: str) -> str:
    """The message shown next to a form field, or ''."""
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', html)
    return found.group(1) if found else ""
