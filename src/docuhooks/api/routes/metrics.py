"""Prometheus metrics: delivery outcomes and latency, queue depth, the worker fleet."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter
from fastapi.responses import Response

from docuhooks.api.deps import Ctx
from docuhooks.delivery import metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(ctx: Ctx) -> Response:
    """Prometheus text exposition. Queue gauges are read from the database on each scrape."""
    # During a database outage a scrape still reports this process's counters; the queue
    # gauges keep their last values, and /readyz tells the outage.
    with contextlib.suppress(Exception):
        await metrics.refresh_queue_gauges(
            ctx.db,
            now=ctx.now(),
            lease_seconds=ctx.settings.worker_lease_seconds,
            per_webhook=ctx.settings.metrics_per_webhook,
        )
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)
