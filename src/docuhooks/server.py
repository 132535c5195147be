"""Assembles the running server from settings: context, app, and background components."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from docuhooks.app import Component, create_app
from docuhooks.context import AppContext
from docuhooks.settings import Settings


class BindError(Exception):
    """An address the server cannot listen on; the message says which and why."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, for uvicorn to serve on (`Server.serve(sockets=...)`).

    Bound before anything is created, so a busy port fails with a sentence, not a traceback
    after a data directory has appeared."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn binds: a restart need not wait out the old connections' TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        raise BindError(f"cannot listen on {shown}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def components(settings: Settings) -> list[Component]:
    """Background parts `serve` runs beside the API (the delivery worker and its grace
    notices, the pruner, the interview log writer, the post-processing driver, the token
    revocation listener, the recovery jobs' runner)."""
    from docuhooks.delivery.grace_notices import start_grace_notices
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
        parts.append(start_grace_notices)
    # Last: everything start-up built is in place, and none of it will be garbage.
    parts.append(start_frozen)
    return parts


def build_app(settings: Settings, ctx: AppContext | None = None) -> FastAPI:
    ctx = ctx or AppContext.from_settings(settings)
    return create_app(ctx, components=components(settings))


async def announce_start(ctx: AppContext, url: str) -> None:
    """The start banner: where the server answers, where its data is, what runs in it, and,
    on an installation nobody can sign in to yet, the commands that make the first
    administrator. Readable lines on a terminal, one `server.started` event in JSON."""
    from docuhooks import __version__
    from docuhooks.identity import service as identity
    from docuhooks.logs import announce
    from docuhooks.store.database import display_url

    settings = ctx.settings
    async with ctx.db.read() as conn:
        no_user_yet = not await identity.has_users(conn)
    data_dir = settings.data_dir.resolve()
    facts: dict[str, Any] = {
        "version": __version__,
        "url": url,
        "data_dir": str(data_dir),
        "database": display_url(settings.resolved_database_url),
        "worker": settings.worker_enabled,
        "dev_mode": settings.dev_mode,
    }
    lines = [f"docuhooks {__version__} is serving {url}  (web UI /ui/, API reference /docs)"]
    if settings.database_url:
        lines.append(f"  database  {facts['database']}")
        lines.append(f"  data      {data_dir}  (the secret key, unless secret_key is set)")
    else:
        lines.append(f"  data      {data_dir}  (SQLite database docuhooks.db, secret key)")
    if settings.worker_enabled:
        lines.append(f"  worker    on: up to {settings.worker_concurrency} deliveries at once")
    else:
        lines.append("  worker    off: deliveries wait for `docuhooks worker`")
    if settings.dev_mode:
        lines.append("  dev mode  on: webhooks may call loopback addresses")
        if not settings.worker_enabled:
            # Each process reads its own settings: a worker started without it blocks
            # loopback, and its deliveries fail as `blocked`.
            lines.append(
                "            workers too only with `docuhooks worker --dev` "
                "(or DOCUHOOKS_DEV_MODE=true)"
            )
    if no_user_yet:
        commands = first_administrator_commands(settings.data_dir, url)
        facts["next"] = " && ".join(commands)
        if settings.database_url:
            where = "with the same DOCUHOOKS_DATABASE_URL"
        elif settings.data_dir == Path("docuhooks-data"):
            where = "in another terminal, from this directory"
        else:
            where = "in another terminal"
        lines.append(f"  no user yet: make the first administrator ({where}), then sign in:")
        lines.extend(f"    {command}" for command in commands)
    announce("server.started", lines, **facts)


def first_administrator_commands(data_dir: Path, url: str) -> list[str]:
    """The commands that make a site and its first administrator on this installation
    (`--password` alone asks for the password, unseen)."""
    import shlex

    # The default is found from the same directory; any other is named whole, so the
    # commands work from anywhere.
    option = (
        ""
        if data_dir == Path("docuhooks-data")
        else f" --data-dir {shlex.quote(str(data_dir.resolve()))}"
    )
    return [
        f'SITE=$(docuhooks admin create-site "My site" --base-url {url}{option})',
        f'docuhooks admin create-user --site "$SITE" --login you@example.com --name "Your Name"'
        f" --role SiteAdministrator --password{option}",
    ]
