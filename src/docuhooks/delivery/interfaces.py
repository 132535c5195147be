"""What the delivery layer needs from the running application: a narrow view of
`context.AppContext` (which satisfies it structurally), so delivery never imports the
composition root that builds its transports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.site_slots import SiteSlots
from docuhooks.delivery.transport import DEFAULT_MAX_BODY, Transport, TransportResult
from docuhooks.store.database import Database
from docuhooks.webhooks.interfaces import WebhookContext


class DeliveryContext(WebhookContext, Protocol):
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
    def interactive_slots(self) -> SiteSlots:
        """Each site's interactive calls in flight, limited per site."""
        ...

    async def interactive_send(
        self,
        site_id: str,
        request: OutboundRequest,
        *,
        timeout: float,  # noqa: ASYNC109 - the call's own timeout, a wait for a slot included
        verify_tls: bool = True,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> TransportResult:
        """An interactive call of `site_id`'s, sent once one of the site's slots is free."""
        ...

    @property
    def on_events_committed(self) -> list[Callable[[], Any]]:
        """Where the worker registers its wake-up after events commit."""
        ...
