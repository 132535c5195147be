"""What identity services need from the running application: a narrow view of
`context.AppContext` (which satisfies it structurally; nothing here imports it)."""

from __future__ import annotations

from typing import Protocol

from docuhooks.identity.service import TokenCache
from docuhooks.store.database import Database


class IdentityContext(Protocol):
    @property
    def db(self) -> Database: ...

    @property
    def tokens(self) -> TokenCache:
        """Principals of recently used API tokens, dropped when one is revoked."""
        ...
