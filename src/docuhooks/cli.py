"""The `docuhooks` command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from docuhooks import __version__
from docuhooks.context import AppContext
from docuhooks.core.clock import SystemClock
from docuhooks.errors import DocuhooksError
from docuhooks.identity.installation_key import KeyMismatch, check_installation_key
from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings, SettingsError, unknown_variables
from docuhooks.store.database import DirectConnectionNeeded

T = TypeVar("T")

#: A port, as `--port` options take it.
PORT = click.IntRange(1, 65535)


class _Commands(click.Group):
    """The `docuhooks` group. A setting that cannot be used, found when the settings load or
    when a command starts with them, ends any command here with one line naming it (and
    status 1), never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None


def _settings(config: str | None, **overrides: Any) -> Settings:
    return Settings.load(config, **overrides)


def _warn_about_unknown_variables(*, logged: bool) -> None:
    """A misspelt setting (`DOCUHOOKS_ALLOWED_NETWORK`) would be ignored without a word: say
    so, once per variable, in the log (`logged`) or on standard error."""
    import structlog

    for variable, closest in unknown_variables(os.environ).items():
        hint = f"; did you mean {closest}?" if closest else ""
        text = f"{variable} is not a docuhooks setting, and is ignored{hint}"
        if logged:
            structlog.get_logger("docuhooks").warning(
                "settings.unknown_variable", variable=variable, closest=closest, message=text
            )
        else:
            click.echo(f"Warning: {text}", err=True)


def _start_tracing() -> Callable[[], None]:
    """Spans on when the `otel` extra is installed and `OTEL_*` asks for them."""
    from docuhooks import tracing

    return tracing.configure()


#: SQLSTATEs (or their classes) of a database that cannot be used at all: no connection
#: (08), a user it refuses (28), a database that does not exist (3D), a server starting up
#: (57P03) or with no connection left (53300).
_UNAVAILABLE_STATES = ("08", "28", "3D", "57P03", "53300")
#: What PgBouncer says of a start-up parameter it does not take (`?options=…` in the URL).
_POOLER_REFUSED_PARAMETER = re.compile(r"unsupported startup parameter")


@contextlib.contextmanager
def _database_reachable(settings: Settings) -> Iterator[None]:
    """Turn a database the command cannot connect to into one line saying which, why, and
    what to check, instead of the driver's traceback."""
    from sqlalchemy import exc as sa_exc

    from docuhooks.store.database import display_url, sqlstate

    try:
        yield
    except (OSError, sa_exc.DBAPIError) as exc:
        # A server that refuses the session itself (no statement was sent yet): an option
        # in the URL it does not know, or a value it does not take.
        refused_session = False
        if isinstance(exc, sa_exc.DBAPIError):
            unavailable = (sqlstate(exc) or "").startswith(_UNAVAILABLE_STATES)
            refused_session = exc.statement is None and not unavailable
            if not (unavailable or refused_session):
                raise
            reason = str(exc.orig)
        else:
            reason = re.sub(r"^\[Errno -?\d+\] ", "", str(exc))
        if not settings.database_url:
            where = f"the SQLite database in {settings.data_dir.resolve()}"
            advice = "Check that the directory can be written (or give another --data-dir)."
        else:
            named = [
                f"DOCUHOOKS_{name.upper()}"
                for name in ("database_url", "database_direct_url", "database_listen_url")
                if getattr(settings, name)
            ]
            where = f"the database {display_url(settings.database_url)} ({', '.join(named)})"
            advice = (
                "Check that the database server is running and reachable there, that the "
                "database exists (`createdb`), and that the URL's user may connect."
            )
            if refused_session:
                advice = "Check the URL's parameters (options, application_name, …)."
            elif _POOLER_REFUSED_PARAMETER.search(reason):
                # PgBouncer takes few start-up parameters (`options` and most server
                # settings are not among them): the server is there, the URL is the problem.
                advice = (
                    "A connection pooler such as PgBouncer refuses that parameter at start-up: "
                    "remove it from the URL and set it on the role or the database instead "
                    "(ALTER ROLE … SET, ALTER DATABASE … SET), which the pooler's server "
                    "connections then get."
                )
        raise click.ClickException(f"cannot use {where}: {reason}. {advice}") from None


def _run_with_db(
    settings: Settings,
    work: Callable[[AppContext], Awaitable[T]],
    *,
    create: bool = True,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run `work` on the installation `settings` name, migrated to the current schema.

    With `create=False` (the admin commands, `worker`) a missing installation is an error
    naming where it was looked for: run from the wrong directory, such a command would
    otherwise make a second, empty installation and report success (or work on it)."""

    async def main() -> T:
        if not create:
            with _database_reachable(settings):
                problem = await _missing_installation(settings)
            if problem is not None:
                raise click.ClickException(problem)
        ctx = AppContext.from_settings(settings)
        try:
            try:
                with _database_reachable(settings):
                    await ctx.db.upgrade()
            except DirectConnectionNeeded as exc:
                raise click.ClickException(str(exc)) from exc
            await check_installation_key(ctx.db, ctx.box, now=ctx.now())
            return await work(ctx)
        finally:
            await ctx.db.dispose()

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(main())
    except DocuhooksError as exc:
        details = "".join(f"\n  {d.field}: {d.message}" for d in exc.details)
        raise click.ClickException(f"{exc.message}{details}") from exc


async def _missing_installation(settings: Settings) -> str | None:
    """Why `settings` name no installation yet, or None when they do. Creates nothing."""
    from docuhooks.context import database_of
    from docuhooks.store.database import display_url, sqlite_file

    url = settings.resolved_database_url
    path = sqlite_file(url)
    if settings.database_url:
        where = f"the database {display_url(url)} (DOCUHOOKS_DATABASE_URL)"
        flag = ""
    else:
        where = f"{settings.data_dir.resolve()} (the data directory)"
        flag = f" --data-dir {settings.data_dir}"
    advice = (
        "Run the command where `docuhooks serve` runs, or name the installation with "
        "--data-dir (or DOCUHOOKS_DATA_DIR, DOCUHOOKS_DATABASE_URL). "
        f"To create a new one there, run `docuhooks db upgrade{flag}` once "
        "(`docuhooks serve` also creates it on first start)."
    )
    if path is not None and not path.exists():
        return f"no docuhooks installation in {where}: {path} does not exist. {advice}"
    db = database_of(settings)
    try:
        revision = await db.current_revision()
    finally:
        await db.dispose()
    if revision is None:
        return f"no docuhooks installation in {where}: it holds no docuhooks tables. {advice}"
    key = settings.data_dir / "secret.key"
    if not settings.secret_key and not key.exists():
        # A new key would encrypt what this command stores (tokens) so the server cannot
        # read it back.
        return (
            f"the installation's secret key is neither set (DOCUHOOKS_SECRET_KEY) nor in "
            f"{key.resolve()}: give this command the key the server uses."
        )
    return None


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), default=None, help="A TOML settings file."
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The installation's data directory: its SQLite database and secret key "
    "(default ./docuhooks-data, or DOCUHOOKS_DATA_DIR).",
)


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="docuhooks")
def main() -> None:
    """docuhooks: webhooks for document automation.

    An installation keeps its data in one directory, ./docuhooks-data unless --data-dir or
    DOCUHOOKS_DATA_DIR says otherwise (or in the database DOCUHOOKS_DATABASE_URL names).
    Start with `docuhooks serve`, or `docuhooks demo` to see every event type at work."""


@main.command()
@config_option
@data_dir_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=PORT, default=None, help="Port to listen on (default 8000).")
@click.option(
    "--dev", is_flag=True, default=None, help="Development mode: webhooks may call loopback."
)
@click.option(
    "--no-worker", is_flag=True, help="Serve the API only; deliveries wait for `docuhooks worker`."
)
def serve(
    config: str | None,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    dev: bool | None,
    no_worker: bool,
) -> None:
    """Run the server: API, admin UI and a delivery worker.

    The data (an SQLite database and the secret key) lives in ./docuhooks-data, or the
    directory --data-dir or DOCUHOOKS_DATA_DIR names, created on first start; with
    DOCUHOOKS_DATABASE_URL set, in that database. The first lines printed say where, and
    what to run next."""
    import uvicorn

    from docuhooks.logs import configure

    settings = _settings(
        config,
        data_dir=data_dir,
        host=host,
        port=port,
        dev_mode=dev,
        worker_enabled=False if no_worker else None,
    )
    configure(settings.log_level, json=settings.log_json)
    _warn_about_unknown_variables(logged=True)
    stop_tracing = _start_tracing()
    from docuhooks.server import BindError, announce_start, bind, build_app

    try:  # before the data directory is created, as `docuhooks demo` checks its ports
        listening = bind(settings.host, settings.port)
    except BindError as exc:
        raise click.ClickException(f"the server {exc}; try --port") from None
    try:
        app = build_app(settings)
        _migrate_before_serving(settings)
    except BaseException:
        listening.close()  # stopped before serving: the port is free again at once
        raise
    ctx = app.state.ctx
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[Any] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                await announce_start(ctx, url)

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
            # uvicorn's records go through the handler `configure` set up: one format.
            log_config=None,
            access_log=False,
        )
    )
    try:
        server.run(sockets=[listening])
    except KeyboardInterrupt:  # uvicorn raises Ctrl-C again once it has shut down cleanly
        sys.exit(130)
    finally:
        stop_tracing()  # the spans still batched go out
    if not server.started:
        sys.exit(3)  # what uvicorn.run exits with when start-up fails


def _migrate_before_serving(settings: Settings) -> None:
    """Migrate before uvicorn starts, so that a migration that cannot run through the pooler,
    or a secret key that is not the installation's, stops `serve` with the same message as
    `db upgrade` and `worker` (inside the app's start-up it would show only in uvicorn's
    traceback). Any other failure is left to the app's start-up, which migrates again (a
    no-op after this) and reports it as before."""
    from docuhooks.context import database_of

    async def upgrade() -> None:
        db = database_of(settings)
        try:
            await db.upgrade()
            await check_installation_key(
                db,
                SecretBox.for_data_dir(settings.secret_key, settings.data_dir),
                now=SystemClock().now(),
            )
        finally:
            await db.dispose()

    try:
        with _database_reachable(settings):
            asyncio.run(upgrade())
    except (DirectConnectionNeeded, KeyMismatch) as exc:
        raise click.ClickException(str(exc)) from None
    except click.ClickException:
        raise
    except Exception:
        pass  # the app's start-up meets it again, and reports it


@main.command()
@config_option
@data_dir_option
@click.option(
    "--concurrency", type=int, default=None, help="Deliveries in flight at once (default 64)."
)
@click.option(
    "--metrics-port",
    type=PORT,
    default=None,
    help="Serve this worker's Prometheus metrics on 127.0.0.1 at this port.",
)
@click.option(
    "--dev",
    is_flag=True,
    default=None,
    help="Development mode, as `serve --dev`: webhooks may call loopback.",
)
def worker(
    config: str | None,
    data_dir: Path | None,
    concurrency: int | None,
    metrics_port: int | None,
    dev: bool | None,
) -> None:
    """Run a delivery worker on its own.

    It works on an existing installation (--data-dir, or DOCUHOOKS_DATABASE_URL) and never
    creates one. Start as many as you like against one PostgreSQL database. Development
    mode is each process's own: a worker beside `serve --dev --no-worker` needs --dev (or
    DOCUHOOKS_DEV_MODE=true) too."""
    import signal

    import structlog

    from docuhooks.delivery import metrics
    from docuhooks.delivery.grace_notices import start_grace_notices
    from docuhooks.delivery.pruning import start_pruner
    from docuhooks.delivery.worker import Worker
    from docuhooks.logs import configure
    from docuhooks.memory import freeze_long_lived

    settings = _settings(config, data_dir=data_dir, worker_concurrency=concurrency, dev_mode=dev)
    configure(settings.log_level, json=settings.log_json)
    _warn_about_unknown_variables(logged=True)
    if settings.dev_mode:
        structlog.get_logger("docuhooks").warning("worker.dev_mode", loopback_allowed=True)
    # The fleet gauges are read on the worker's loop before each scrape, once it runs.
    scraped = metrics.RefreshedOnScrape(
        lease_seconds=settings.worker_lease_seconds, per_webhook=settings.metrics_per_webhook
    )
    if metrics_port is not None:
        from prometheus_client import start_http_server

        try:
            start_http_server(metrics_port, addr="127.0.0.1", registry=scraped)
        except OSError as exc:
            raise click.ClickException(
                f"the worker's metrics cannot listen on 127.0.0.1:{metrics_port} "
                f"({exc.strerror}); try another --metrics-port"
            ) from None
    stop_tracing = _start_tracing()

    async def run(ctx: AppContext) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        delivery_worker = Worker(ctx)
        await delivery_worker.start()
        scraped.attach(loop, ctx.db, ctx.now)
        stop_pruner = await start_pruner(ctx)
        stop_grace_notices = await start_grace_notices(ctx)
        freeze_long_lived()  # it has logged `worker.started`, in the one log format
        try:
            await stop.wait()
        finally:
            # Finish or hand back what this worker holds, so nothing waits out a lease.
            await stop_pruner()
            await stop_grace_notices()
            await delivery_worker.stop()
            await ctx.close()
            stop_tracing()

    import uvloop

    # The same loop `docuhooks serve` runs its in-process worker on (uvicorn's uvloop).
    _run_with_db(settings, run, create=False, loop_factory=uvloop.new_event_loop)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9000,
    show_default=True,
    help="Port to listen on.",
)
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
    """Receive webhook calls locally: verify, print, answer.

    A stand-in for your application while you set webhooks up; it keeps no data."""
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
@click.option("--port", type=PORT, default=None, help="The server's port (default 8000).")
@click.option(
    "--receiver-port", type=PORT, default=None, help="The local receiver's port (default 9000)."
)
@click.option(
    "--auth-method",
    type=click.Choice(["HMAC", "StandardWebhooks", "AccessToken"]),
    default=None,
    help="How the demo's webhooks authenticate (default HMAC).",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Delete the demo's data and start over (on the same ports, unless given others).",
)
@click.option("--no-wait", is_flag=True, help="Exit after the walk-through.")
def demo(
    data_dir: Path,
    port: int | None,
    receiver_port: int | None,
    auth_method: str | None,
    reset: bool,
    no_wait: bool,
) -> None:
    """Watch all four event types work, in one command.

    Sets up a site, a sample template and a local receiver in its own data directory
    (./docuhooks-demo), walks an interview through, and keeps running until Ctrl-C."""
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
    _warn_about_unknown_variables(logged=False)
    try:
        ok = demonstration.run(options)
    except demonstration.DemoError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(0 if ok else 1)


@main.group()
def db() -> None:
    """Database maintenance: create or migrate the schema."""


@db.command("upgrade")
@config_option
@data_dir_option
def db_upgrade(config: str | None, data_dir: Path | None) -> None:
    """Create the database, or apply pending migrations.

    Creates a new installation where none is (the data directory, or the database
    DOCUHOOKS_DATABASE_URL names); `serve` and `worker` also migrate at start."""

    async def work(ctx: AppContext) -> str | None:
        return await ctx.db.current_revision()

    settings = _settings(config, data_dir=data_dir)
    _warn_about_unknown_variables(logged=False)
    revision = _run_with_db(settings, work)
    click.echo(f"database at revision {revision}", err=True)


@main.group()
@config_option
@data_dir_option
def admin(config: str | None, data_dir: Path | None) -> None:
    """Bootstrap sites, users and tokens.

    Each command prints only the new id or token, so they compose in scripts. They work on
    an existing installation (--data-dir, given here or to the command) and never create one:
    start `docuhooks serve` (or run `docuhooks db upgrade`) there once first."""


def _admin_settings(config: str | None, data_dir: Path | None) -> Settings:
    """An admin command's settings: its own --config and --data-dir, else the `admin` group's."""
    group = click.get_current_context().parent
    given = group.params if group is not None else {}
    settings = _settings(config or given.get("config"), data_dir=data_dir or given.get("data_dir"))
    _warn_about_unknown_variables(logged=False)
    return settings


@admin.command("create-site")
@click.argument("name")
@click.option("--base-url", required=True, help="The site's public base URL (JWT issuer).")
@config_option
@data_dir_option
def create_site(name: str, base_url: str, config: str | None, data_dir: Path | None) -> None:
    """Create a site (a tenant) called NAME.

    Prints the site's id, for `create-user --site`."""
    from docuhooks.identity import service

    async def work(ctx: AppContext) -> str:
        async with ctx.db.transaction() as conn:
            return await service.create_site(conn, name=name, base_url=base_url, now=ctx.now())

    click.echo(_run_with_db(_admin_settings(config, data_dir), work, create=False))


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
    help="A role; repeat for several.",
)
@click.option(
    "--password",
    default=None,
    prompt="Password",
    prompt_required=False,
    hide_input=True,
    confirmation_prompt=True,
    help="Password (argon2-hashed); --password alone asks for it, unseen. "
    "Omit for a token-only user.",
)
@click.option("--service-principal", is_flag=True, help="A machine user for receivers.")
@click.option(
    "--client-name",
    default=None,
    help="Service principal's client name (required with --service-principal).",
)
@config_option
@data_dir_option
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
    data_dir: Path | None,
) -> None:
    """Create a user of a site, or a service principal.

    A SiteAdministrator with a password can sign in to the admin UI (/ui/) and create
    everything else there or through the API. Prints the user's id."""
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
                now=ctx.now(),
            )

    click.echo(_run_with_db(_admin_settings(config, data_dir), work, create=False))


@admin.command("create-token")
@click.option("--login", "login_name", required=True, help="The user's login name.")
@click.option("--name", default="cli", show_default=True, help="A label for the token.")
@config_option
@data_dir_option
def create_token(login_name: str, name: str, config: str | None, data_dir: Path | None) -> None:
    """Create an API token for a user.

    Prints the token (shown only this once), for `Authorization: Bearer <token>`."""
    from docuhooks.identity import service

    async def work(ctx: AppContext) -> str:
        async with ctx.db.transaction() as conn:
            return await service.create_token(conn, login_name=login_name, name=name, now=ctx.now())

    click.echo(_run_with_db(_admin_settings(config, data_dir), work, create=False))


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
@data_dir_option
def set_password(login_name: str, password: str, config: str | None, data_dir: Path | None) -> None:
    """Set a user's password, without the current one.

    Their admin UI sessions end; their API tokens stay valid. Prints the user's id."""
    from docuhooks.identity import admin as identity_admin

    async def work(ctx: AppContext) -> str:
        async with ctx.db.transaction() as conn:
            return await identity_admin.reset_password(conn, login_name, password, now=ctx.now())

    click.echo(_run_with_db(_admin_settings(config, data_dir), work, create=False))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
