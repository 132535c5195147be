"""Garbage-collector pauses while the largest interview pages render, and what they cost every
other request of the process.

    .venv/bin/python bench/gc_pauses.py [--seconds 20] [--quiet-seconds 5] [--renderers 2]
                                        [--rounds 2] [--templates 0] [--configs current …]

One SQLite installation holds a site, a User who signs in to the web UI, and the interview of
the largest template the catalog allows (5,000 variables, a repeated multiple choice of 1,000
options, multiple choices whose options alone pass a page, 500 event elements, names of 255
characters) with the largest answer set the limits allow (10,000 rows in two repeats, the
rest of the 5 MiB in long answers): the worst case of `tests/ui/test_interview_page_bound.py`.
Each of its pages is about 1–4 MB of HTML and tenths of a second of rendering.

Before the load, the first pages of `--templates` other interviews are rendered once, each of
a template of the catalog's most variables (5,000): their variables are then in the
process's cache (`answers.validate`), as in a server whose sites have used many large
templates. Every one is an object each full collection walks.

For each configuration (`--configs`, below), `docuhooks serve` runs in a process of its own
(the CLI's command: uvicorn, uvloop, the worker and every other component), with the
configuration's changes. The server process records every collection (`gc.callbacks`:
generation, duration, the thread's CPU time) and the lag of its event loop (a task that
sleeps 5 ms, and how late it wakes). A client in this process, with its own event loop:

1. signs in, finds every page of the interview (each page of fields, and the repeats' last
   windows) and renders each once, after the other templates' pages (warm-up, not counted);
2. **quiet**: `GET /healthz` every 10 ms for `--quiet-seconds`: the baseline of this server;
3. **load**: the same probe while `--renderers` clients render the interview's pages in turn,
   as fast as they are answered, for `--seconds`.

The configurations run in turn, `--rounds` times (so drift shows as a difference between
rounds, not between configurations). The table: per phase, the full (generation 2)
collections (count, longest, the longest one's CPU time, total), the longest young one, the
loop's lag (p99, longest, time lagging over 50 ms) and `GET /healthz` (p50, p99, longest);
and the pages rendered a second under load. A collection holds the interpreter lock: its
time is a stall of every thread, the event loop's too. On a busy machine its time is more
than its CPU time (the machine's other processes had the core meanwhile).

Configurations are parts joined by `+`: `current` (the code's own set-up once start-up is
over: `memory.freeze_long_lived`) or `none` (nothing: the collector as CPython starts it,
thresholds 700, 10, 10), then any of

- `freeze`: `gc.collect()` and `gc.freeze()` once start-up is over;
- `threshold`: `gc.set_threshold(50_000, 20, 100)` once start-up is over;
- `switch`: `sys.setswitchinterval(0.001)` (CPython's is 5 ms): how long a thread waiting for
  the interpreter lock waits before asking for it;
- `unbounded`: the template-variable cache bound by its 512 templates only, not by the
  variables it holds (as before the bound).

The default compares `none+unbounded` (no freeze, no bound), `current+unbounded` and
`current`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

SECRET_KEY = "bench-secret-key-0123456789"
PASSWORD = "correct horse battery staple"
LOGIN = "user@bench.example"

#: Escaped, each of these is five bytes in the page (as the page-bound test builds its worst).
Q = "'"
NAME = 255


# --- collector configurations (run in the server process) -------------------------------------


def _freeze() -> None:
    gc.collect()
    gc.freeze()


def _threshold() -> None:
    gc.set_threshold(50_000, 20, 100)


def _switch() -> None:
    sys.setswitchinterval(0.001)


def _unbounded() -> None:
    from docuhooks.answers import validate

    validate._TEMPLATE_VARIABLES_MOST = 10**12  # only the bound of 512 templates, as before


#: What a configuration's parts do, once start-up is over; `current` is the code's own
#: set-up (`memory.freeze_long_lived`), `none` nothing.
PARTS: dict[str, Callable[[], None]] = {
    "none": lambda: None,
    "freeze": _freeze,
    "threshold": _threshold,
    "switch": _switch,
}
#: Parts that change the app from the start.
AT_START: dict[str, Callable[[], None]] = {"unbounded": _unbounded}


def configuration(name: str) -> str:
    """Parts joined by `+` (`current+switch`): one of `current` and `none`, and any others."""
    parts = name.split("+")
    if (
        not all(p in PARTS or p in AT_START or p == "current" for p in parts)
        or len({"current", "none"} & set(parts)) != 1
    ):
        raise argparse.ArgumentTypeError(
            f"{name!r}: current or none, then any of {', '.join([*PARTS, *AT_START][1:])}, "
            "joined by +"
        )
    return name


def _set_up(name: str) -> None:
    """Apply the configuration's parts: those `AT_START` now, the others in place of the
    code's start-up set-up (`memory.freeze_long_lived`, which `start_frozen` calls once
    start-up is over)."""
    import docuhooks.memory as memory

    own = memory.freeze_long_lived
    parts = name.split("+")
    for part in parts:
        if part in AT_START:
            AT_START[part]()

    def set_up() -> None:
        for part in parts:
            if part == "current":
                own()
            elif part in PARTS:
                PARTS[part]()

    memory.freeze_long_lived = set_up


# --- the server process -----------------------------------------------------------------------


class _Recorder:
    """Every collection (start on the wall clock, generation, seconds, the thread's CPU
    seconds) and the loop's lag samples (wall clock, seconds late). A collection holds the
    interpreter lock throughout: its seconds are a stall of every thread, the event loop's
    too; its CPU seconds are its own work (less when the machine's other processes took the
    core meanwhile)."""

    def __init__(self) -> None:
        self.collections: list[tuple[float, int, float, float]] = []
        self.lags: list[tuple[float, float]] = []
        self._started: dict[int, tuple[float, float, float]] = {}

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._started[ident] = (time.time(), time.perf_counter(), time.thread_time())
            return
        began = self._started.pop(ident, None)
        if began is not None:
            self.collections.append(
                (
                    began[0],
                    info["generation"],
                    time.perf_counter() - began[1],
                    time.thread_time() - began[2],
                )
            )

    async def probe(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append((time.time(), time.perf_counter() - started - 0.005))


def serve_child(config: str, stats: Path, data_dir: Path, port: int) -> None:
    """`docuhooks serve` with `config`'s changes, its collections and its loop's lag written
    to `stats` once it has stopped."""
    import docuhooks.server as server
    from docuhooks.cli import main

    recorder = _Recorder()
    gc.callbacks.append(recorder.on_gc)
    _set_up(config)
    build = server.components
    facts: dict[str, Any] = {}

    async def recording(_ctx: Any) -> Callable[[], Any]:
        task = asyncio.create_task(recorder.probe())

        async def stop() -> None:
            task.cancel()
            facts.update(
                threshold=gc.get_threshold(),
                switch=sys.getswitchinterval(),
                frozen=gc.get_freeze_count(),
                tracked=len(gc.get_objects()),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )

        return stop

    def components(settings: Any) -> list[Any]:
        parts = build(settings)
        return [recording, *parts]  # the recorder first: it stops last, after the others

    server.components = components
    # uvicorn raises the signal again once it has shut down: let it end `main` normally.
    signal.signal(signal.SIGTERM, lambda *_: None)
    main.main(["serve", "--data-dir", str(data_dir), "--port", str(port)], standalone_mode=False)
    stats.write_text(
        json.dumps({"collections": recorder.collections, "lags": recorder.lags, **facts})
    )


# --- set-up -----------------------------------------------------------------------------------


def _name(label: str) -> str:
    return label + Q * (NAME - len(label))


def _options(count: int, length: int) -> list[str]:
    return [f"{n:04d}" + Q * (length - 4) for n in range(count)]


def worst_case() -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """(variables, event elements, answers): the catalog's and the answer limits' worst."""
    from docuhooks.platform.catalog import MAX_EVENT_ELEMENTS, MAX_OPTIONS, MAX_VARIABLES

    choices = _options(MAX_OPTIONS, 40)
    huge_choices = _options(MAX_OPTIONS, 1_000)
    picks: dict[str, Any] = {"name": _name("Picks"), "type": "multiplechoice", "repeatDepth": 1}
    huge: dict[str, Any] = {"name": _name("Huge"), "type": "multiplechoice", "repeatDepth": 0}
    huge_rows: dict[str, Any] = {**huge, "name": _name("Huge rows"), "repeatDepth": 1}
    parties: dict[str, Any] = {"name": _name("Parties"), "type": "text", "repeatDepth": 1}
    grid: dict[str, Any] = {"name": _name("Grid"), "type": "text", "repeatDepth": 2}
    special = [
        {**picks, "options": choices},
        {**huge, "options": huge_choices},
        {**huge_rows, "options": huge_choices},
        parties,
        grid,
    ]
    notes: list[dict[str, Any]] = [
        {"name": _name(f"Note {n}"), "type": "text", "repeatDepth": 0}
        for n in range(MAX_VARIABLES - len(special))
    ]
    events = [f"{n:03d}" + Q * 197 for n in range(MAX_EVENT_ELEMENTS)]
    answers: dict[str, Any] = {
        picks["name"]: [[choices[n % MAX_OPTIONS]] for n in range(10_000)],
        huge_rows["name"]: [[huge_choices[0]]] * 30,
        parties["name"]: [Q * 20] * 9_999 + [Q * 60_000],
        grid["name"]: [[Q * 100] * 100] * 20,
        **{note["name"]: Q * 600 for note in notes[:2_400]},
    }
    return [*special, *notes], events, answers


async def set_up(data_dir: Path, templates: int) -> tuple[str, list[str]]:
    """The installation, its User, the worst interview and `templates` more of a template of
    the catalog's most variables each (plain text, no answers); (the worst interview's id,
    the others')."""
    from docuhooks.context import AppContext
    from docuhooks.identity import service as identity
    from docuhooks.identity.secrets import SecretBox
    from docuhooks.platform import interviews
    from docuhooks.platform.catalog import MAX_VARIABLES
    from docuhooks.settings import Settings
    from docuhooks.store.database import Database
    from docuhooks.store.schema import templates as templates_table
    from docuhooks.store.schema import work_groups, work_items

    settings = Settings(data_dir=data_dir, secret_key=SECRET_KEY)
    db = Database.from_url(settings.resolved_database_url)
    await db.upgrade()
    ctx = AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))
    variables, events, answers = worst_case()
    plain = [
        {"name": _name(f"Field {n}"), "type": "text", "repeatDepth": 0}
        for n in range(MAX_VARIABLES)
    ]
    now = ctx.now()
    try:
        async with ctx.db.transaction() as conn:
            site_id = await identity.create_site(
                conn, name="Bench", base_url="https://bench.example", now=now
            )
            await identity.create_user(
                conn,
                site_id=site_id,
                login_name=LOGIN,
                name="Bench user",
                roles=["User"],
                password=PASSWORD,
                now=now,
            )
            token = await identity.create_token(conn, login_name=LOGIN, now=now)
            user = await identity.authenticate_token(conn, token, now=now)
            assert user is not None
            group_id = str(uuid.uuid4())
            await conn.execute(
                work_groups.insert().values(id=group_id, site_id=site_id, name="G", created_at=now)
            )
            items: list[str] = []
            for index in range(templates + 1):
                template_id, item_id = str(uuid.uuid4()), str(uuid.uuid4())
                content = f"template {index}: no page reads the document".encode()
                defined = variables if index == 0 else plain
                await conn.execute(
                    templates_table.insert().values(
                        id=template_id,
                        site_id=site_id,
                        name=f"Template {index}",
                        file_name="t.docx",
                        content=content,
                        sha256=hashlib.sha256(content).hexdigest(),
                        variables=defined,
                        variable_count=len(defined),
                        event_elements=events if index == 0 else [],
                        created_at=now,
                    )
                )
                await conn.execute(
                    work_items.insert().values(
                        id=item_id,
                        site_id=site_id,
                        work_group_id=group_id,
                        template_id=template_id,
                        name=f"W{index}",
                        created_at=now,
                    )
                )
                items.append(item_id)
        opened = [(await interviews.open_interview(ctx, user, item))["id"] for item in items]
        body = json.dumps(answers).encode()
        assert len(body) <= settings.max_answer_set_bytes
        saved = await interviews.update_answers(
            ctx, user, opened[0], body=body, content_type="application/json"
        )
        assert not saved["warnings"], saved["warnings"][:3]
        return str(opened[0]), [str(i) for i in opened[1:]]
    finally:
        await ctx.close()


# --- the client -------------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_NEXT = re.compile(r'value="fields:(\d+)">Next fields')


async def _sign_in(http: aiohttp.ClientSession, base: str) -> None:
    async with http.get(f"{base}/ui/login") as form:
        found = _CSRF.search(await form.text())
    assert found, "the login page has no CSRF field"
    data = {"csrf_token": found.group(1), "login_name": LOGIN, "password": PASSWORD, "next": "/"}
    async with http.post(f"{base}/ui/login", data=data, allow_redirects=False) as done:
        assert done.status == 303, await done.text()


async def _pages(http: aiohttp.ClientSession, url: str) -> list[str]:
    """Every page of the interview (each page of fields, then the repeats' last windows)."""
    pages: list[str] = []
    first: int | None = 0
    while first is not None:
        page = f"{url}?first={first}"
        async with http.get(page) as response:
            assert response.status == 200, (await response.text())[:300]
            found = _NEXT.search(await response.text())
        pages.append(page)
        first = int(found.group(1)) if found else None
    return [*pages, f"{url}?start.0=9999", f"{url}?first=3&start.3=9999"]


@dataclass
class Phase:
    started: float = 0.0
    ended: float = 0.0
    healthz_ms: list[float] = field(default_factory=list)
    pages: int = 0
    page_bytes: int = 0


async def _probe(http: aiohttp.ClientSession, base: str, phase: Phase, until: float) -> None:
    while time.monotonic() < until:
        started = time.perf_counter()
        async with http.get(f"{base}/healthz") as response:
            await response.read()
        phase.healthz_ms.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)


async def _render(
    http: aiohttp.ClientSession, pages: list[str], offset: int, phase: Phase, until: float
) -> None:
    index = offset
    while time.monotonic() < until:
        async with http.get(pages[index % len(pages)]) as response:
            body = await response.read()
            assert response.status == 200, body[:300]
        phase.pages += 1
        phase.page_bytes += len(body)
        index += 1


async def drive(
    base: str,
    interview_id: str,
    others: list[str],
    quiet_seconds: float,
    seconds: float,
    renderers: int,
) -> tuple[Phase, Phase, int]:
    """(quiet, load, pages) against the server at `base`. The other interviews' first pages
    are rendered once first: their templates' variables are then in the process's cache, as
    in a server whose sites have used many large templates."""
    jar = aiohttp.CookieJar(unsafe=True)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as http:
        await _sign_in(http, base)
        pages = await _pages(http, f"{base}/ui/interviews/{interview_id}")
        others_first = [f"{base}/ui/interviews/{other}" for other in others]
        for page in [*others_first, *pages]:  # warm-up: every page once
            async with http.get(page) as response:
                assert response.status == 200, (await response.text())[:300]
                await response.read()
        quiet, load = Phase(), Phase()
        quiet.started = time.time()
        await _probe(http, base, quiet, time.monotonic() + quiet_seconds)
        quiet.ended = load.started = time.time()
        until = time.monotonic() + seconds
        await asyncio.gather(
            _probe(http, base, load, until),
            *(_render(http, pages, n * 3, load, until) for n in range(renderers)),
        )
        load.ended = time.time()
    return quiet, load, len(pages)


# --- running and reporting --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _wait_listening(base: str, process: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            try:
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the server did not start")


@dataclass
class Run:
    config: str
    round: int
    quiet: Phase
    load: Phase
    stats: dict[str, Any]
    pages: int


def one_run(
    config: str,
    round_: int,
    data_dir: Path,
    interviews: tuple[str, list[str]],
    args: argparse.Namespace,
) -> Run:
    port = _free_port()
    stats = data_dir.parent / f"stats-{config}-{round_}.json"
    env = {**os.environ, "DOCUHOOKS_SECRET_KEY": SECRET_KEY, "DOCUHOOKS_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            config,
            "--stats",
            str(stats),
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        uvloop.run(_wait_listening(base, process))
        quiet, load, pages = uvloop.run(
            drive(base, *interviews, args.quiet_seconds, args.seconds, args.renderers)
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return Run(config, round_, quiet, load, json.loads(stats.read_text()), pages)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _row(run: Run, name: str, phase: Phase) -> str:
    inside = [c for c in run.stats["collections"] if phase.started <= c[0] < phase.ended]
    full = [c for c in inside if c[1] == 2]
    young = [c[2] * 1000 for c in inside if c[1] < 2]
    lags = [lag * 1000 for at, lag in run.stats["lags"] if phase.started <= at < phase.ended]
    seconds = phase.ended - phase.started
    late = sum(lag for lag in lags if lag > 50)
    rate = f"{phase.pages / seconds:.2f}" if phase.pages else "—"
    return (
        f"{run.config:<22}{run.round:>2} {name:<6}"
        f"{len(full):>5}{max((c[2] * 1000 for c in full), default=0):>8.1f}"
        f"{max((c[3] * 1000 for c in full), default=0):>8.1f}"
        f"{sum(c[2] * 1000 for c in full):>8.0f}{max(young, default=0):>8.1f}"
        f"{_percentile(lags, 0.99):>8.1f}{max(lags, default=0):>8.1f}{late:>8.0f}"
        f"{statistics.median(phase.healthz_ms):>8.1f}{_percentile(phase.healthz_ms, 0.99):>8.1f}"
        f"{max(phase.healthz_ms):>8.1f}{rate:>8}"
    )


def report(runs: list[Run], args: argparse.Namespace, pages: int) -> None:
    print(
        f"\nthe worst interview: {pages} pages, {args.templates} more templates used first; "
        f"load: {args.renderers} renderers for "
        f"{args.seconds:g} s; quiet: {args.quiet_seconds:g} s; times in ms"
    )
    print(
        f"{'':<22}{'':>2} {'':<6}{'full collections':^29}{'young':>8}"
        f"{'event loop lag':^24}{'GET /healthz':^24}"
    )
    print(
        f"{'configuration':<22}{'':>2} {'phase':<6}{'count':>5}{'longest':>8}{'its CPU':>8}"
        f"{'total':>8}{'longest':>8}{'p99':>8}{'longest':>8}{'> 50 ms':>8}"
        f"{'p50':>8}{'p99':>8}{'longest':>8}{'pages/s':>8}"
    )
    for run in runs:
        print(_row(run, "quiet", run.quiet))
        print(_row(run, "load", run.load))
    print(
        "\nat stop: thresholds, switch interval, objects frozen, objects the collector walks, "
        "peak RSS (MB)"
    )
    for run in runs:
        s = run.stats
        print(
            f"{run.config:<22}{run.round:>2} {s['threshold']} {s['switch']:g} "
            f"{s['frozen']:>9} {s['tracked']:>9} {s['peak_mb']:>6.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="of rendering under load")
    parser.add_argument("--quiet-seconds", type=float, default=5.0)
    parser.add_argument("--renderers", type=int, default=2, help="clients rendering pages")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--templates",
        type=int,
        default=0,
        help="more templates of 5,000 variables whose pages are rendered once first",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        type=configuration,
        default=["none+unbounded", "current+unbounded", "current"],
        help="current or none, then any of freeze, threshold, switch, unbounded, joined by +",
    )
    # The server process (this script, started by itself).
    parser.add_argument("--serve", type=configuration, help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_child(args.serve, args.stats, args.data_dir, args.port)
        return
    with tempfile.TemporaryDirectory(prefix="docuhooks-bench-") as folder:
        data_dir = Path(folder) / "data"
        interviews = uvloop.run(set_up(data_dir, args.templates))
        runs: list[Run] = []
        for round_ in range(1, args.rounds + 1):
            for config in args.configs:
                runs.append(one_run(config, round_, data_dir, interviews, args))
                print(f"  {config} round {round_}: done", flush=True)
    report(runs, args, pages=runs[0].pages)


if __name__ == "__main__":
    main()
