"""What the admin UI tests share: users who can sign in, signing in, reading pages, and a
form as a browser tab holds it."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

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


@dataclass
class _Input:
    """One control of a form: its id (or ""), its name, the value it posts, and whether a
    person can type into it (not a hidden input)."""

    id: str
    name: str
    value: str
    typed: bool = True


class _FormReader(HTMLParser):
    """The controls of the form `form_id` in a page, or of every out-of-band swap (an
    element with `hx-swap-oob`) in an htmx answer, in order, with the values a browser
    posts: checked boxes only, a text area's text, a select's chosen option."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id, self.depth = form_id, 0
        self.inputs: list[_Input] = []
        self.swapped: list[_Input] = []
        self._text: _Input | None = None
        self._select: _Input | None = None
        self._first_option = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form" and attr.get("id") == self.form_id:
            self.depth = 1
            return
        kind = attr.get("type", "text")
        if "hx-swap-oob" in attr and tag == "input":
            swapped = _Input(attr.get("id", ""), attr.get("name", ""), attr["value"])
            self.swapped.append(swapped)
        if not self.depth or not attr.get("name"):
            if tag == "option" and self._select is not None:
                self._option(attr)
            return
        control = _Input(attr.get("id", ""), attr["name"], attr.get("value", ""), kind != "hidden")
        if tag == "input" and kind not in ("submit", "button", "file", "image", "reset"):
            if kind not in ("checkbox", "radio") or "checked" in attr:
                self.inputs.append(control)
        elif tag == "textarea":
            self._text = control
            self.inputs.append(control)
        elif tag == "select":
            self._select, self._first_option = control, ""
            self.inputs.append(control)

    def _option(self, attr: dict[str, str]) -> None:
        assert self._select is not None
        if not self._first_option:
            self._first_option = attr.get("value", "")
            self._select.value = self._first_option
        if "selected" in attr:
            self._select.value = attr.get("value", "")

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.value += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._text = None
        elif tag == "select":
            self._select = None
        elif tag == "form" and self.depth:
            self.depth = 0


@dataclass
class FormTab:
    """A page's form as a browser tab holds it, for tests that post it as the browser
    would: every control's value (hidden ones included), what the person changes, and
    what each htmx answer does to it — a body replaces the form, a save's out-of-band
    swaps replace the inputs of the same id (as htmx does with `hx-swap-oob`)."""

    inputs: list[_Input] = field(default_factory=list)
    form_id: str = "interview-form"

    @classmethod
    def of(cls, html: str, form_id: str = "interview-form") -> FormTab:
        tab = cls(form_id=form_id)
        tab.show(html)
        return tab

    def show(self, html: str) -> None:
        """What an answer from the server does to the tab: a page or body holding the
        form replaces it; otherwise its out-of-band inputs replace those of their id."""
        reader = _FormReader(self.form_id)
        reader.feed(html)
        reader.close()
        if f'id="{self.form_id}"' in html:
            self.inputs = reader.inputs
            return
        by_id = {control.id: control for control in self.inputs if control.id}
        for swapped in reader.swapped:
            assert swapped.id in by_id, f"no input #{swapped.id} to swap"
            target = by_id[swapped.id]
            target.name, target.value = swapped.name, swapped.value

    def value(self, name: str) -> str:
        found = [control.value for control in self.inputs if control.name == name]
        assert found, f"the form has no {name}"
        return found[0]

    def form(self, **changes: Any) -> dict[str, Any]:
        """The form as the tab posts it, with `changes` (name: value, or values for a name
        posted more than once). A change to a control a person types into stays typed in
        the tab, as in a browser; any other (a button pressed, a hidden input forged) is
        of this post only."""
        for control in self.inputs:
            if control.typed and isinstance(changes.get(control.name), str):
                control.value = changes[control.name]
        posted: dict[str, Any] = {}
        for control in self.inputs:
            posted.setdefault(control.name, []).append(control.value)
        posted = {
            name: values[0] if len(values) == 1 else values for name, values in posted.items()
        }
        return posted | changes
