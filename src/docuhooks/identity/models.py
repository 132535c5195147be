"""Identity types: roles and the authenticated principal every service call carries."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from docuhooks.core.events import Actor


class Role(StrEnum):
    SITE_ADMINISTRATOR = "SiteAdministrator"
    INTEGRATION_ADMINISTRATOR = "IntegrationAdministrator"
    USER = "User"


#: Roles that may view and manage webhooks, deliveries, events and the audit log.
WEBHOOK_ADMIN_ROLES = frozenset({Role.SITE_ADMINISTRATOR, Role.INTEGRATION_ADMINISTRATOR})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user or service principal of exactly one site."""

    user_id: str
    site_id: str
    login_name: str
    name: str
    email: str
    account_type: str
    roles: frozenset[Role]

    @property
    def can_admin_webhooks(self) -> bool:
        return bool(self.roles & WEBHOOK_ADMIN_ROLES)

    @property
    def is_site_admin(self) -> bool:
        return Role.SITE_ADMINISTRATOR in self.roles

    def as_actor(self) -> Actor:
        return Actor(
            id=self.user_id,
            login_name=self.login_name,
            name=self.name,
            email=self.email,
            account_type=self.account_type,
        )
