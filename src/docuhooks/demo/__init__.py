"""`docuhooks demo`: a ready site, a sample template and a local receiver, so a newcomer sees
all four event types work within a minute.

One process runs the server (API and delivery worker, on SQLite, in development mode so
webhooks may call loopback) and the `docuhooks listen` receiver on another port. The demo sets
up a site through the REST API (`bootstrap`), walks an interview through to a delivered
document (`walkthrough`), and then leaves both running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import uvicorn

from docuhooks.context import AppContext, outbound_proxies
from docuhooks.demo import bootstrap
from docuhooks.demo.bootstrap import SECRETS_FILE, Api, DemoError, DemoState
from docuhooks.demo.walkthrough import ReceiverLog, WalkThrough
from docuhooks.listen import AnswerFile, Listener, ListenServer
from docuhooks.receiver import Verifier
from docuhooks.server import BindError, bind
from docuhooks.settings import Settings
from docuhooks.store.private_files import write_private_file

__all__ = ["DemoError", "DemoOptions", "run"]

DEFAULT_PORT = 8000
DEFAULT_RECEIVER_PORT = 9000
HOST = "127.0.0.1"


@dataclass(frozen=True)
class DemoOptions:
    data_dir: Path = Path("docuhooks-demo")
    #: None: the port of an earlier run in `data_dir`, else the default.
    port: int | None = None
    receiver_port: int | None = None
    auth_method: str | None = None
    reset: bool = False
    #: Keep the server and receiver running after the walk-through, until Ctrl-C.
    wait: bool = True


def run(options: DemoOptions, write: Callable[[str], None] | None = None) -> bool:
    """Run the demo; True when every step of the walk-through worked."""
    out = write or _printer()
    outcome: list[bool] = []
    try:
        asyncio.run(_main(options, out, outcome))
    except KeyboardInterrupt:
        out("stopped")
    return bool(outcome) and outcome[0]


def _printer() -> Callable[[str], None]:
    lock = threading.Lock()

    def write(text: str) -> None:
        with lock:
            print(text, flush=True)

    return write


def _state(options: DemoOptions) -> DemoState:
    """What this run starts from: the earlier run's state (its ports kept across --reset
    unless new ones are given), with `options` applied. Reads, creates nothing."""
    data_dir = options.data_dir
    earlier = DemoState.read(data_dir) if data_dir.is_dir() else None
    server_port = options.port or (earlier.server_port if earlier else DEFAULT_PORT)
    receiver_port = options.receiver_port or (
        earlier.receiver_port if earlier else DEFAULT_RECEIVER_PORT
    )
    if earlier is None or options.reset:
        return DemoState(
            server_port=server_port,
            receiver_port=receiver_port,
            auth_method=options.auth_method or "HMAC",
        )
    if options.auth_method is not None and options.auth_method != earlier.auth_method:
        raise DemoError(
            f"the demo in {data_dir} uses {earlier.auth_method}; start over with --reset "
            "to try another authentication method"
        )
    # Another --port moves the site with it (`_set_up`), as --receiver-port moves the webhooks.
    earlier.server_port = server_port
    earlier.receiver_port = receiver_port
    return earlier


def _bind(port: int, what: str, flag: str) -> socket.socket:
    try:
        return bind(HOST, port)
    except BindError as exc:
        raise DemoError(f"{what} {exc}; try {flag}") from None


async def _main(options: DemoOptions, write: Callable[[str], None], outcome: list[bool]) -> None:
    from docuhooks.logs import configure
    from docuhooks.server import build_app

    state = _state(options)
    data_dir = options.data_dir
    base_url = f"http://{HOST}:{state.server_port}"
    # Every setting, and then both ports, first: a value that cannot be used or a busy port
    # must not cost the demo's data (--reset) or create any.
    settings = Settings.load(
        None,
        data_dir=data_dir,
        database_url="",  # the embedded store, whatever the environment says
        dev_mode=True,
        host=HOST,
        port=state.server_port,
        base_url=base_url,
        worker_enabled=True,
        log_level="warning",
        log_json=False,
    )
    outbound_proxies(settings)  # the one start-up check the settings cannot make alone
    server_socket = _bind(state.server_port, "the server", "--port")
    try:
        receiver = ListenServer(HOST, state.receiver_port)
    except OSError as exc:
        server_socket.close()
        raise DemoError(
            f"the receiver cannot listen on {HOST}:{state.receiver_port} ({exc.strerror}); "
            "try --receiver-port"
        ) from None
    try:
        bootstrap.prepare_data_dir(data_dir, reset=options.reset)
    except BaseException:
        server_socket.close()
        receiver.server_close()
        raise
    configure(settings.log_level, json=False)
    ctx = AppContext.from_settings(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(settings, ctx), log_level="warning", log_config=None, access_log=False
        )
    )
    serving = asyncio.create_task(server.serve(sockets=[server_socket]))
    log = ReceiverLog(write)
    receiver_thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if serving.done():
                    raise DemoError("the server did not start; see the messages above")
                await asyncio.sleep(0.02)
        write(f"docuhooks demo: server {base_url}, receiver {receiver.url}, data in {data_dir}")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            api = await _set_up(ctx, session, state, data_dir, base_url, receiver.url, write)
            answers_path = bootstrap.write_receiver_answers(data_dir, ctx.now().date())
            receiver.listener = _listener(state, answers_path, log)
            receiver_thread.start()
            _introduce(state, data_dir, answers_path, receiver.url, write)
            walking = asyncio.create_task(WalkThrough(api, state, log, data_dir, write).run())
            await asyncio.wait({walking, serving}, return_when=asyncio.FIRST_COMPLETED)
            if not walking.done():  # the server stopped first: Ctrl-C
                walking.cancel()
                return
            ok = walking.result()
        outcome.append(ok)
        _summarise(ok, log, write)
        if options.wait:
            _how_to_try(state, base_url, answers_path, write)
            log.live = True
            await serving
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await serving
        if receiver_thread.is_alive():
            receiver.shutdown()
        receiver.server_close()


async def _set_up(
    ctx: AppContext,
    session: aiohttp.ClientSession,
    state: DemoState,
    data_dir: Path,
    base_url: str,
    receiver_url: str,
    write: Callable[[str], None],
) -> Api:
    if state.bootstrapped:
        api = Api(session, base_url, state.token)
        await bootstrap.move_site(ctx, state, base_url)
        await bootstrap.point_webhooks_at(api, state, receiver_url)
        write(f"continuing the demo set up earlier in {data_dir} (--reset starts over)")
    else:
        write("setting up: a site, an administrator, a template, a work item, four webhooks")
        await bootstrap.create_site_and_admin(ctx, state, base_url)
        api = Api(session, base_url, state.token)
        await bootstrap.create_platform_objects(api, state)
        await bootstrap.create_webhooks(api, state, receiver_url)
    state.write(data_dir)
    secrets_path = data_dir / SECRETS_FILE
    write_private_file(secrets_path, "".join(f"{hook.secret}\n" for hook in state.webhooks))
    return api


def _listener(state: DemoState, answers_path: Path, log: ReceiverLog) -> Listener:
    verifier = Verifier(
        secrets=[hook.secret for hook in state.webhooks],
        audience=[hook.id for hook in state.webhooks],
        auth_method=state.auth_method,
    )
    return Listener(
        verifier=verifier,
        answers=AnswerFile.load(answers_path),
        on_request=log.received,
        on_note=log.note,
    )


def _introduce(
    state: DemoState,
    data_dir: Path,
    answers_path: Path,
    receiver_url: str,
    write: Callable[[str], None],
) -> None:
    write(f"  site           Demo  {state.site_id}")
    write(f"  administrator  {bootstrap.ADMIN_LOGIN} / {state.password}")
    write(f"  API token      {state.token}")
    for hook in state.webhooks:
        write(f"  webhook        {hook.event_type:<27} {hook.id}  ({state.auth_method})")
    ids = " ".join(f"--webhook-id {hook.id}" for hook in state.webhooks)
    write(
        f"  the receiver   is `docuhooks listen` running in this process; on its own:\n"
        f"                 docuhooks listen --port {state.receiver_port} "
        f"--auth-method {state.auth_method} --secret-file {data_dir / SECRETS_FILE} {ids} "
        f"--answers {answers_path}"
    )
    write("")


def _summarise(ok: bool, log: ReceiverLog, write: Callable[[str], None]) -> None:
    seen: dict[str, list[str]] = {}
    for record in log.all():
        if record.event is not None:
            label = "test event" if record.event.test else "verified"
            seen.setdefault(record.event_type or "?", []).append(f"{label} -> {record.status}")
    write("")
    write("the receiver saw:")
    for event_type, outcomes in seen.items():
        write(f"  {event_type:<27} {', '.join(outcomes)}")
    write("every step worked" if ok else "some steps FAILED: see above")


def _how_to_try(
    state: DemoState, base_url: str, answers_path: Path, write: Callable[[str], None]
) -> None:
    api = f"{base_url}/api/v1"
    completion = next(h for h in state.webhooks if h.event_type == "NewWorkItemVersionComplete")
    write(
        f"""
The server and the receiver keep running; Ctrl-C stops both. Try:

  export TOKEN={state.token}
  # open another interview: the receiver prefills it
  curl -s -X POST {api}/workitems/{state.work_item_id}/interviews -H "Authorization: Bearer $TOKEN"
  # the webhooks, and the deliveries of the completion webhook with every attempt
  curl -s {api}/webhooks -H "Authorization: Bearer $TOKEN"
  curl -s {api}/webhooks/{completion.id}/deliveries -H "Authorization: Bearer $TOKEN"
  # send a test event
  curl -s -X POST {api}/webhooks/{completion.id}/test -H "Authorization: Bearer $TOKEN"

In a browser: {base_url}/ui/ (sign in as {bootstrap.ADMIN_LOGIN} with the password above) for the
webhooks and their deliveries, and the work items, where an interview opens prefilled.

The API is documented at {base_url}/docs. What the receiver answers is in {answers_path}
(edit it and run the demo again). Requests the receiver gets from now on are printed below.
"""
    )
