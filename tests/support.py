"""Helpers the tests share (importable as `tests.support`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from docuhooks.context import AppContext
from docuhooks.identity import service as identity


@dataclass(frozen=True)
class SiteUsers:
    """A site with one user per role, and each user's API token."""

    site_id: str
    tokens: dict[str, str]
    user_ids: dict[str, str]

    def auth(self, role: str = "SiteAdministrator") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


ROLES = ("SiteAdministrator", "IntegrationAdministrator", "User")


async def make_site(ctx: AppContext, name: str = "Acme") -> SiteUsers:
    tag = uuid.uuid4().hex[:8]
    async with ctx.db.transaction() as conn:
        site_id = await identity.create_site(
            conn, name=f"{name} {tag}", base_url=f"https://{tag}.example"
        )
        tokens, users = {}, {}
        for role in ROLES:
            login = f"{role.lower()}-{tag}@example.com"
            users[role] = await identity.create_user(
                conn,
                site_id=site_id,
                login_name=login,
                name=f"{role} {tag}",
                roles=[role],
                password="correct horse battery" if role == "SiteAdministrator" else None,
            )
            tokens[role] = await identity.create_token(conn, login_name=login)
    return SiteUsers(site_id, tokens, users)
