"""The `docuhooks` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from docuhooks import __version__
from docuhooks.context import AppContext
from docuhooks.errors import DocuhooksError
from docuhooks.settings import Settings, SettingsError

T = TypeVar("T")


def _settings(config: str | None, **overrides: Any) -> Settings:
    try:
        return Settings.load(config, **overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def _run_with_db(
    settings: Settings,
    work: Callable[[AppContext], Awaitable[T]],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    async def main() -> T:
        ctx = AppContext.from_settings(settings)
        try:
            await ctx.db.upgrade()
            return await work(ctx)
        finally:
            await ctx.db.dispose()

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())
    except DocuhooksError as exc:
        details = "".join(f"\n  {d.field}: {d.message}" for d in exc.details)
        raise click.ClickException(f"{exc.message}{details}") from exc


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), default=None, help="A TOML settings file."
)


@click.group()
@click.version_option(__version__, prog_name="docuhooks")
def main() -> None:
    """docuhooks: webhooks for document automation."""


@main.command()
@config_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8000).")
@click.option(
    "--dev", is_flag=True, default=None, help="Development mode: webhooks may call loopback."
)
@click.option(
    "--no-worker", is_flag=True, help="Serve the API only; deliveries wait for `docuhooks worker`."
)
def serve(
    config: str | None, host: str | None, port: int | None, dev: bool | None, no_worker: bool
) -> None:
    """Run the API and admin UI, with a delivery worker in the same process."""
    import uvicorn

    from docuhooks.logs import configure

    settings = _settings(
        config, host=host, port=port, dev_mode=dev, worker_enabled=False if no_worker else None
    )
    configure(settings.log_level, json=settings.log_json)
    from docuhooks.server import build_app

    app = build_app(settings)
    ctx = app.state.ctx

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Stop renders at once: uvicorn waits for requests in flight before shutting
            # down, and a render may otherwise run to its time limit. Those requests then
            # answer 503 (see `RenderPool.abort`).
            if ctx.render_pool_override is not None:
                ctx.render_pool_override.abort()
            super().handle_exit(sig, frame)

    server = Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            log_level=settings.log_level,
            access_log=False,
        )
    )
    server.run()
    if not server.started:
        sys.exit(3)  # what uvicorn.run exits with when start-up fails


@main.command()
@config_option
@click.option(
    "--concurrency", type=int, default=None, help="Deliveries in flight at once (default 64)."
)
@click.option(
    "--metrics-port",
    type=int,
    default=None,
    help="Serve this worker's Prometheus metrics on 127.0.0.1 at this port.",
)
def worker(config: str | None, concurrency: int | None, metrics_port: int | None) -> None:
    """Run a delivery worker alone; start as many as you like against one PostgreSQL."""
    import signal

    from docuhooks.delivery import metrics
    from docuhooks.delivery.pruning import start_pruner
    from docuhooks.delivery.worker import Worker
    from docuhooks.logs import configure
    from docuhooks.memory import freeze_long_lived

    settings = _settings(config, worker_concurrency=concurrency)
    configure(settings.log_level, json=settings.log_json)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.REGISTRY)

    async def run(ctx: AppContext) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        delivery_worker = Worker(ctx)
        await delivery_worker.start()
        stop_pruner = await start_pruner(ctx)
        freeze_long_lived()
        click.echo(f"worker {delivery_worker.id} running", err=True)
        try:
            await stop.wait()
        finally:
            # Finish or hand back what this worker holds, so nothing waits out a lease.
            await stop_pruner()
            await delivery_worker.stop()
            await ctx.close()

    import uvloop

    # The same loop `docuhooks serve` runs its in-process worker on (uvicorn's uvloop).
    _run_with_db(settings, run, loop_factory=uvloop.new_event_loop)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=9000, show_default=True, help="Port to listen on.")
@click.option(
    "--hmac-secret",
    "hmac_secrets",
    multiple=True,
    help="An HMAC webhook's secret; repeat during a rotation or for several webhooks.",
)
@click.option(
    "--whsec-secret",
    "whsec_secrets",
    multiple=True,
    help="A Standard Webhooks webhook's whsec_ secret; repeatable.",
)
@click.option(
    "--access-token",
    "access_tokens",
    multiple=True,
    help="An AccessToken webhook's token; repeatable.",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    help="A secret of the method --auth-method names (or a whsec_ secret); repeatable.",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="A file of --secret values, one a line (keeps them off the command line).",
)
@click.option(
    "--webhook-id",
    "webhook_ids",
    multiple=True,
    help="Accept HMAC tokens made for this webhook (the audience); repeatable. "
    "Without it the audience is not checked.",
)
@click.option(
    "--auth-method",
    type=click.Choice(["HMAC", "StandardWebhooks", "AccessToken"]),
    default=None,
    help="Accept only this method (default: recognise it from each request).",
)
@click.option("--issuer", default=None, help="Accept HMAC tokens only from this site base URL.")
@click.option(
    "--answers",
    "answers_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Answer interview events from this file: answer JSON (canonical or shorthand), "
    "HotDocs answer XML, or JSON keyed by event name (see docs/receiving.md).",
)
@click.option(
    "--status",
    type=click.IntRange(100, 599),
    default=204,
    show_default=True,
    help="Answer NewWorkItemVersionComplete with this status (e.g. 500 to watch retries).",
)
@click.option(
    "--retry-after", type=click.IntRange(0), default=None, help="Send Retry-After with --status."
)
@click.option(
    "--post-processing",
    type=click.Choice(["passthrough", "callback"]),
    default="passthrough",
    show_default=True,
    help="passthrough: 200, documents kept; callback: 202, then PUT completeUrl.",
)
@click.option(
    "--api-token",
    envvar="DOCUHOOKS_API_TOKEN",
    default=None,
    help="API token for the callback mode's PUT completeUrl (or DOCUHOOKS_API_TOKEN).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per request.")
def listen(
    host: str,
    port: int,
    hmac_secrets: tuple[str, ...],
    whsec_secrets: tuple[str, ...],
    access_tokens: tuple[str, ...],
    secrets: tuple[str, ...],
    secret_file: str | None,
    webhook_ids: tuple[str, ...],
    auth_method: str | None,
    issuer: str | None,
    answers_file: str | None,
    status: int,
    retry_after: int | None,
    post_processing: str,
    api_token: str | None,
    as_json: bool,
) -> None:
    """Receive webhook calls locally: verify, print, and answer them."""
    from docuhooks import listen as listening

    try:
        listener = listening.build_listener(
            secrets=secrets,
            secret_file=secret_file,
            hmac_secrets=hmac_secrets,
            whsec_secrets=whsec_secrets,
            access_tokens=access_tokens,
            webhook_ids=webhook_ids,
            auth_method=auth_method,
            issuer=issuer,
            answers_file=answers_file,
            notification_status=status,
            retry_after=retry_after,
            post_processing="callback" if post_processing == "callback" else "passthrough",
            api_token=api_token,
        )
    except ValueError as exc:  # ListenError, or a secret the SDK's Verifier cannot use
        raise click.UsageError(str(exc)) from exc
    try:
        listening.run(listener, host=host, port=port, as_json=as_json)
    except listening.ListenError as exc:
        raise click.ClickException(str(exc)) from exc


#: What the `demo` extra adds to the server's dependencies (pyproject.toml), by module name.
_DEMO_EXTRA = frozenset({"aiohttp", "docx"})


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("docuhooks-demo"),
    show_default=True,
    help="Where the demo keeps its SQLite database and state.",
)
@click.option("--port", type=int, default=None, help="The server's port (default 8000).")
@click.option(
    "--receiver-port", type=int, default=None, help="The local receiver's port (default 9000)."
)
@click.option(
    "--auth-method",
    type=click.Choice(["HMAC", "StandardWebhooks", "AccessToken"]),
    default=None,
    help="How the demo's webhooks authenticate (default HMAC).",
)
@click.option("--reset", is_flag=True, help="Delete the demo's data and start over.")
@click.option("--no-wait", is_flag=True, help="Exit after the walk-through.")
def demo(
    data_dir: Path,
    port: int | None,
    receiver_port: int | None,
    auth_method: str | None,
    reset: bool,
    no_wait: bool,
) -> None:
    """A ready site, a sample template and a local receiver: watch all four event types."""
    try:
        from docuhooks import demo as demonstration
    except ModuleNotFoundError as exc:
        if exc.name not in _DEMO_EXTRA:
            raise
        raise click.ClickException(
            f"the demo needs {exc.name}, which the server alone does not install: "
            "pip install 'docuhooks[demo]'"
        ) from None

    options = demonstration.DemoOptions(
        data_dir=data_dir,
        port=port,
        receiver_port=receiver_port,
        auth_method=auth_method,
        reset=reset,
        wait=not no_wait,
    )
    try:
        ok = demonstration.run(options)
    except demonstration.DemoError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(0 if ok else 1)


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option
def db_upgrade(config: str | None) -> None:
    """Apply pending migrations."""

    async def work(ctx: AppContext) -> str | None:
        return await ctx.db.current_revision()

    revision = _run_with_db(_settings(config), work)
    click.echo(f"database at revision {revision}", err=True)


@main.group()
def admin() -> None:
    """Bootstrap sites, users and tokens. Each command prints only the new id or token."""


@admin.command("create-site")
@click.argument("name")
@click.option("--base-url", required=True, help="The site's public base URL (JWT issuer).")
@config_option
def create_site(name: str, base_url: str, config: str | None) -> None:
    from docuhooks.identity import service

    async def work(ctx: AppContext) -> str:
        async with ctx.db.transaction() as conn:
            return await service.create_site(conn, name=name, base_url=base_url)

    click.echo(_run_with_db(_settings(config), work))


@admin.command("create-user")
@click.option("--site", "site_id", required=True, help="Site id (from create-site).")
@click.option("--login", "login_name", required=True, help="Login name: an email address.")
@click.option("--name", required=True, help="Display name.")
@click.option("--email", default=None, help="Email, if not the login name.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["SiteAdministrator", "IntegrationAdministrator", "User"]),
)
@click.option(
    "--password", default=None, help="Password (argon2-hashed). Omit for token-only users."
)
@click.option("--service-principal", is_flag=True, help="A machine user for receivers.")
@click.option(
    "--client-name",
    default=None,
    help="Service principal's client name (required with --service-principal).",
)
@config_option
def create_user(
    site_id: str,
    login_name: str,
    name: str,
    email: str | None,
    roles: tuple[str, ...],
    password: str | None,
    service_principal: bool,
    client_name: str | None,
    config: str | None,
) -> None:
    from docuhooks.identity import service

    async def work(ctx: AppContext) -> str:
        async with ctx.db.transaction() as conn:
            return await service.create_user(
                conn,
                site_id=site_id,
                login_name=login_name,
                name=name,
                email=email,
                roles=list(roles),
                password=password,
                account_type="ServicePrincipal" if service_principal else "UserAccount",
                client_name=client_name,
            )

    click.echo(_run_with_db(_settings(config), work))


@admin.command("create-token")
@click.option("--login", "login_name", required=True)
@click.option("--name", default="cli", help="A label for the token.")
@config_option
def create_token(login_name: str, name: str, config: str | None) -> None:
    from docuhooks.identity import service

    async def work(ctx: AppContext) -> str:
        async with ctx.db.transaction() as conn:
            return await service.create_token(conn, login_name=login_name, name=name)

    click.echo(_run_with_db(_settings(config), work))


@admin.command("set-password")
@click.option("--login", "login_name", required=True, help="The user's login name.")
@click.option(
    "--password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    help="The new password (asked for, unseen, when omitted).",
)
@config_option
def set_password(login_name: str, password: str, config: str | None) -> None:
    """Set a user's password (a reset: the current one is not needed). Their admin UI
    sessions end; their API tokens stay valid. Prints the user's id."""
    from docuhooks.identity import admin as identity_admin

    async def work(ctx: AppContext) -> str:
        async with ctx.db.transaction() as conn:
            return await identity_admin.reset_password(conn, login_name, password)

    click.echo(_run_with_db(_settings(config), work))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
