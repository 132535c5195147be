"""The upkeep that announces secret rotations whose grace period is about to end
(`WebhookSecretGraceEnding`, `delivery.operational.announce_grace_endings`).

Every process that runs a worker runs it, once a minute: the announcement is marked on the
webhook in the transaction that queues it, so however many processes look, each rotation is
announced once. A minute is soon enough for a lead time of hours, and a grace period shorter
than the lead time is announced within a minute of its rotation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from docuhooks.core.tasks import stop_task
from docuhooks.delivery import operational
from docuhooks.delivery.interfaces import DeliveryContext

__all__ = ["CHECK_INTERVAL_SECONDS", "start_grace_notices"]

log = structlog.get_logger(__name__)

CHECK_INTERVAL_SECONDS = 60.0


async def start_grace_notices(ctx: DeliveryContext) -> Callable[[], Awaitable[None]]:
    """Look now and then every minute, in the background; returns the stop function."""
    lead = timedelta(hours=ctx.settings.secret_grace_notice_hours)

    async def loop() -> None:
        while True:
            try:
                announced = await operational.announce_grace_endings(ctx, now=ctx.now(), lead=lead)
                if announced:
                    log.info("secrets.grace_endings_announced", rotations=announced)
            except Exception as exc:
                log.warning("secrets.grace_notice_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(CHECK_INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="docuhooks-grace-notices")

    async def stop() -> None:
        await stop_task(task)

    return stop
