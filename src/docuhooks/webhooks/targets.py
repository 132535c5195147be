"""Matched interview webhooks, ready to sign, kept per process for a few seconds.

An interview step is on a person's waiting path: matching its webhooks (a query with scope
subqueries, the site's base URL) and decrypting their secrets on every step cost more than
the step's own work. So the result of one match is kept here for `ttl_seconds`, keyed by
everything matching depends on (site, event type, work group, template, interview event name).

Freshness:

- A change made through this process (`webhooks.service`: create, update, activate,
  deactivate, resume, delete, rotate) drops the site's entries at once, and again when its
  transaction ends, so the next step after the commit matches afresh.
- A change made through another process (another server, the CLI, the worker deactivating
  a webhook that answered 410) is seen within `ttl_seconds`.

The notification path (the outbox) never reads this cache: it matches inside the
transaction that writes the event. Decrypted secrets live only in this process's memory and
never in a `repr` (see `core.signing.SigningSecret`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.clock import Clock, SystemClock
from docuhooks.core.events import AuthMethod, Verb
from docuhooks.core.signing import SigningSecret, WebhookTarget

#: How long a match is used before the store is asked again: a change made through another
#: process reaches interview steps within this bound.
TTL_SECONDS = 5.0
#: After a change through this process, matches read during this long are used but not
#: kept: the change's commit may still be on its way to the store when they are read.
SETTLE_SECONDS = 1.0
MAX_ENTRIES = 4096

MatchKey = tuple[str, str, str | None, str | None, str | None]


@dataclass(frozen=True, slots=True)
class PreparedWebhook:
    """A matched webhook with its secrets decrypted: what a call needs, and nothing to read.

    `unusable` says why no request can be signed for it (its secret cannot be decrypted,
    say): that webhook fails alone, the others still run."""

    id: str
    name: str
    url: str
    verb: Verb
    auth_method: AuthMethod
    timeout_seconds: int
    accept_untrusted_ssl: bool
    secret: SigningSecret | None = None
    previous_secret: SigningSecret | None = None
    previous_secret_expires_at: datetime | None = None
    access_token: str | None = field(default=None, repr=False)
    unusable: str | None = None

    def target(self, issuer: str, now: datetime) -> WebhookTarget:
        """The signing target at `now`: the previous secret only while its grace lasts."""
        if self.unusable is not None:
            raise ValueError(self.unusable)
        previous = None
        if self.previous_secret_expires_at is not None and self.previous_secret_expires_at > now:
            previous = self.previous_secret
        return WebhookTarget(
            webhook_id=self.id,
            url=self.url,
            verb=self.verb,
            auth_method=self.auth_method,
            issuer=issuer,
            secret=self.secret,
            previous_secret=previous,
            access_token=self.access_token,
        )


@dataclass(frozen=True, slots=True)
class MatchedWebhooks:
    """The webhooks a step calls, in overlay order (order, then creation), and the issuer
    their tokens name (the site's base URL)."""

    webhooks: tuple[PreparedWebhook, ...]
    issuer: str


@dataclass(frozen=True, slots=True)
class _Entry:
    value: MatchedWebhooks
    stored_at: float


class TargetCache:
    """Matches by key for `ttl_seconds`; `site_changed` forgets a site's at once.

    Time is the `clock`'s monotonic seconds; tests pass a `FakeClock` to move it."""

    def __init__(
        self,
        ttl_seconds: float = TTL_SECONDS,
        *,
        settle_seconds: float = SETTLE_SECONDS,
        max_entries: int = MAX_ENTRIES,
        clock: Clock | None = None,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.settle_seconds = settle_seconds
        self.max_entries = max_entries
        self.clock: Clock = clock or SystemClock()
        self._entries: dict[MatchKey, _Entry] = {}
        self._changed_at: dict[str, float] = {}

    def get(self, key: MatchKey) -> MatchedWebhooks | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock.monotonic() - entry.stored_at >= self.ttl_seconds:
            del self._entries[key]
            return None
        return entry.value

    def put(self, key: MatchKey, value: MatchedWebhooks, *, read_at: float) -> None:
        """Keep `value`, read from the store at `read_at` (this cache's clock), unless the
        site changed shortly before or since: that read may predate the change's commit."""
        changed_at = self._changed_at.get(key[0])
        if changed_at is not None and read_at < changed_at + self.settle_seconds:
            return
        if len(self._entries) >= self.max_entries:
            # The oldest entry goes: dicts keep insertion order.
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Entry(value, self.clock.monotonic())

    def site_changed(self, site_id: str) -> None:
        """A webhook of the site changed (or is about to commit a change): forget its matches."""
        self._changed_at[site_id] = self.clock.monotonic()
        for key in [key for key in self._entries if key[0] == site_id]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def forget_site(cache: TargetCache, conn: AsyncConnection, site_id: str) -> None:
    """Forget the site's cached interview matches now (a change to its webhooks is under
    way), and again when `conn`'s transaction commits or rolls back: a step that matched in
    between read the old rows."""
    cache.site_changed(site_id)
    sync = conn.sync_connection
    assert sync is not None
    ended = False

    def again(_conn: Any) -> None:
        nonlocal ended
        if ended:
            return
        ended = True
        cache.site_changed(site_id)
        # The connection outlives the transaction (the store keeps connections between
        # transactions), so the listeners come off once it ends; not from inside the
        # dispatch that is calling them.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_soon(unlisten)

    def unlisten() -> None:
        for name in ("commit", "rollback"):
            if sa.event.contains(sync, name, again):
                sa.event.remove(sync, name, again)

    sa.event.listen(sync, "commit", again)
    sa.event.listen(sync, "rollback", again)
