"""What the platform's routers share: paths matched without regard to case, and a caller
authenticated outside the request's transaction."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from docuhooks.api.deps import Ctx, principal
from docuhooks.errors import FieldError, ValidationFailed
from docuhooks.identity.models import Principal

_bearer = HTTPBearer(auto_error=False, description="An API token from POST /api/v1/auth/tokens")


class AnyCaseRoute(APIRoute):
    """Matches its path in any letter case.

    Receivers written for the source platform call `/WorkItems/{id}/Versions/{vid}/
    Documents/{docId}/Content` (and mixed spellings such as `/Workitems/…/versions/…`);
    matching without case serves every spelling with the one handler the OpenAPI document
    lists, instead of a registered alias per spelling.
    """

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.path_regex = re.compile(self.path_regex.pattern, re.IGNORECASE)


async def _caller_outside_transaction(
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    async with ctx.db.read() as conn:
        return await principal(conn, credentials)


#: The caller, for routes whose service runs its own transactions (because it calls
#: receivers, or must act after its commit): no transaction stays open for the request.
StandaloneCaller = Annotated[Principal, Depends(_caller_outside_transaction)]


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
