"""Assembles the running server from settings: context, app, and background components."""

from __future__ import annotations

from fastapi import FastAPI

from docuhooks.app import Component, create_app
from docuhooks.context import AppContext
from docuhooks.settings import Settings


def components(settings: Settings) -> list[Component]:
    """Background parts `serve` runs beside the API (the delivery worker, the pruner, the
    interview log writer, the post-processing driver, the token revocation listener, the
    recovery jobs' runner)."""
    from docuhooks.delivery.pruning import start_pruner
    from docuhooks.delivery.recovery import start_recoveries
    from docuhooks.delivery.worker import start_worker
    from docuhooks.identity.revocations import start_revocation_listener
    from docuhooks.interview_hooks import start_log_writer
    from docuhooks.memory import start_frozen
    from docuhooks.platform.postprocessing.driver import start_post_processor
    from docuhooks.platform.renderpool import start_render_pool

    parts: list[Component] = [
        start_pruner,
        start_log_writer,
        start_post_processor,
        start_render_pool,
        start_revocation_listener,
        start_recoveries,
    ]
    if settings.worker_enabled:
        parts.append(start_worker)
    # Last: everything start-up built is in place, and none of it will be garbage.
    parts.append(start_frozen)
    return parts


def build_app(settings: Settings, ctx: AppContext | None = None) -> FastAPI:
    from docuhooks.delivery.claims import Caps

    # The API reads the caps too (a webhook's health): refuse bad ones at start, not per call.
    Caps.from_settings(settings)
    ctx = ctx or AppContext.from_settings(settings)
    return create_app(ctx, components=components(settings))
