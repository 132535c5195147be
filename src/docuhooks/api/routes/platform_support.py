"""What the platform's routers share: the source platform's path spellings, query helpers,
and download headers."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute

from docuhooks.errors import FieldError, ValidationFailed

#: How the source platform's API spells the same paths. Its receivers call
#: `/WorkItems/{id}/Versions/{vid}/Documents/{docId}/Content`, and its documentation also
#: shows `/Workitems/{id}/versions/active/documents/{docId}/Content`.
SOURCE_PLATFORM_SPELLINGS: tuple[dict[str, str], ...] = (
    {
        "workitems": "WorkItems",
        "workgroups": "WorkGroups",
        "templates": "Templates",
        "versions": "Versions",
        "documents": "Documents",
        "content": "Content",
        "complete": "Complete",
        "interviews": "Interviews",
        "answers": "Answers",
        "events": "Events",
        "finish": "Finish",
    },
    {"workitems": "Workitems", "content": "Content"},
)


def add_source_platform_aliases(router: APIRouter) -> None:
    """Serve each of the router's routes under the source platform's spellings too, so a
    receiver written for it works unchanged. The aliases stay out of the OpenAPI document."""
    for route in list(router.routes):
        if not isinstance(route, APIRoute):
            continue
        path = route.path.removeprefix(router.prefix)
        aliases = {
            "/".join(spelling.get(part, part) for part in path.split("/"))
            for spelling in SOURCE_PLATFORM_SPELLINGS
        } - {path}
        for alias in sorted(aliases):
            router.add_api_route(
                alias,
                route.endpoint,
                methods=sorted(route.methods or ()),
                response_model=route.response_model,
                status_code=route.status_code,
                response_class=route.response_class,
                name=f"{route.name} (source platform spelling)",
                include_in_schema=False,
            )


def query_param(request: Request, *names: str) -> str | None:
    """A query parameter under any of `names`, in any letter case (`fileName`, `filename`)."""
    wanted = {name.lower() for name in names}
    for key, value in request.query_params.multi_items():
        if key.lower() in wanted:
            return value
    return None


def int_param(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValidationFailed.of([FieldError(field, f"{value!r} is not a whole number")]) from None


def attachment(file_name: str) -> str:
    """A Content-Disposition for a download: an ASCII fallback name and the exact UTF-8 one
    (RFC 6266), so no file name can break the header."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in file_name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"
