"""What webhook administration and matching need from the running application: a narrow
view of `context.AppContext`, which sits above this package and satisfies it structurally.

Each layer below the composition root names the parts it uses in a `Protocol` of its own
(`delivery.interfaces`, `interview_hooks.interfaces`, `platform.interfaces` extend this
one), so no layer imports the context that is built from them."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from docuhooks.core.clock import Clock
from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings
from docuhooks.webhooks.targets import TargetCache


class WebhookContext(Protocol):
    @property
    def settings(self) -> Settings:
        """The installation's settings (`site_max_webhooks`, …)."""
        ...

    @property
    def box(self) -> SecretBox:
        """Decrypts webhook secrets and access tokens."""
        ...

    @property
    def clock(self) -> Clock:
        """The one clock (`core.clock`); tests replace it to move time."""
        ...

    def now(self) -> datetime:
        """`clock.now()`: the wall clock's time now."""
        ...

    @property
    def webhook_targets(self) -> TargetCache:
        """The interview match cache, told of every change."""
        ...

    def events_committed(self) -> None:
        """Runs the hooks that follow a commit of new events or due deliveries."""
        ...
