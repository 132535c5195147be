"""Rules every platform service shares: ids from URLs, the site boundary, and roles."""

from __future__ import annotations

from docuhooks.errors import Forbidden
from docuhooks.identity.models import Principal
from docuhooks.store.scoped import parse_id

__all__ = ["parse_id", "require_site_admin"]


def require_site_admin(principal: Principal, action: str) -> None:
    if not principal.is_site_admin:
        raise Forbidden(f"{action} needs the SiteAdministrator role")
