"""Rules every platform service shares: ids from URLs, the site boundary, and roles."""

from __future__ import annotations

import uuid

from docuhooks.errors import Forbidden, NotFound
from docuhooks.identity.models import Principal


def parse_id(value: str, what: str) -> str:
    """The canonical form of a UUID from a URL; anything else is an object that does not exist.

    Receivers written for .NET platforms send upper-case or braced GUIDs; `uuid.UUID` reads
    them all, and the canonical lower-case form is what the database holds.
    """
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        raise NotFound(f"{what} {value} does not exist") from None


def require_site_admin(principal: Principal, action: str) -> None:
    if not principal.is_site_admin:
        raise Forbidden(f"{action} needs the SiteAdministrator role")
