"""The application context: the long-lived parts every service needs, built once at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings
from docuhooks.store.database import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    box: SecretBox
    #: The wall clock; tests replace it to move time without sleeping.
    now: Callable[[], datetime] = utcnow
    #: Hooks other parts register at start-up (e.g. "wake the worker after an event commits").
    on_events_committed: list[Callable[[], Any]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> AppContext:
        db = Database.from_url(settings.resolved_database_url)
        box = SecretBox.for_data_dir(settings.secret_key, settings.data_dir)
        return cls(settings=settings, db=db, box=box)

    def events_committed(self) -> None:
        for hook in self.on_events_committed:
            hook()
