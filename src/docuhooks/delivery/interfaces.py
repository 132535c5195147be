"""What the delivery layer needs from the running application: a narrow view of
`context.AppContext` (which satisfies it structurally), so delivery never imports the
composition root that builds its transports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from docuhooks.delivery.transport import Transport
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.webhooks.interfaces import WebhookContext


class DeliveryContext(WebhookContext, Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def transport(self) -> Transport:
        """Notification deliveries: the worker's pooled transport."""
        ...

    @property
    def interactive_transport(self) -> Transport:
        """Calls someone waits for (interview hooks, post-processing, test sends)."""
        ...

    @property
    def on_events_committed(self) -> list[Callable[[], Any]]:
        """Where the worker registers its wake-up after events commit."""
        ...
