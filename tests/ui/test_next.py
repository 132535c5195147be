"""The login page's `next` is normalised and kept inside the UI: it cannot be an open redirect,
however it is spelled."""

from __future__ import annotations

import pytest

from docuhooks.ui.auth import HOME, safe_next

HOSTILE = [
    "/ui/../../x",  # resolves to /x
    "/ui/../api/v1/users",
    "/ui/..",
    "/ui/a/../..",
    "/ui/%2e%2e/%2e%2e/x",  # encoded dots
    "/ui/%2E%2E/x",
    "/ui/.%2e/x",
    "/ui%2f..%2f..%2fx",  # encoded slashes
    "/ui/%252e%252e/x",  # encoded twice
    "/ui/%5c%5cevil.example",  # encoded backslashes
    "/ui/\\evil.example",
    "/ui\\..\\x",
    "\\\\evil.example/ui/",
    "//evil.example/ui/",
    "///evil.example/ui/",
    "/ui//evil.example",
    "/ui/%2f%2fevil.example",
    "https://evil.example/ui/",
    "http:/ui/x",
    "javascript:alert(1)//ui/",
    "data:text/html,<script>alert(1)</script>",
    "/ui/\t/evil.example",  # browsers drop tabs and line breaks
    "/ui/\n/x",
    "/ui/%0d%0aSet-Cookie:x=y",
    "/ui/%00",
    "/ui/é",
    "/ui/%C3%A9",
    "/ui/\uff0f\uff0fevil.example",  # fullwidth slashes
    "ui/x",
    "/UI/x",
    "/api/v1",
    "/",
    "",
    " /ui/x",
    "/ui/" + "x" * 3000,
]


@pytest.mark.parametrize("target", HOSTILE)
def test_hostile_next_values_fall_back_to_the_ui_home(target: str) -> None:
    assert safe_next(target) == HOME


@pytest.mark.parametrize(
    ("target", "resolved"),
    [
        ("/ui/", "/ui/"),
        ("/ui", "/ui/"),
        ("/ui/webhooks/new", "/ui/webhooks/new"),
        ("/ui/users/../webhooks", "/ui/webhooks"),
        ("/ui/./webhooks/", "/ui/webhooks/"),
        ("/ui/webhooks/%61bc", "/ui/webhooks/abc"),
        ("/ui/webhooks?page=2&q=a%20b", "/ui/webhooks?page=2&q=a%20b"),
        ("/ui/webhooks#section", "/ui/webhooks"),
    ],
)
def test_next_inside_the_ui_is_kept_as_resolved(target: str, resolved: str) -> None:
    assert safe_next(target) == resolved


def test_none_is_the_home() -> None:
    assert safe_next(None) == HOME
