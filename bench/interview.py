"""What opening an interview costs on top of its webhooks' receivers.

    .venv/bin/python bench/interview.py [--iterations 300] [--delay-ms 20]

Five InterviewLoadEvent webhooks (HMAC, GET, the default) point at a receiver process whose
five routes wait `delay`, 2×, 3×, 4× and 5× `delay` before answering a shorthand answer set.
Each iteration measures, in the same run:

- the receivers' own latency: the five calls made directly with a plain aiohttp client,
  concurrently (so about the slowest receiver);
- the full open-interview call (`platform.interviews.open_interview` on SQLite: the write
  that opens it, matching, signing, the five calls, the overlay, the delivery log, the write
  that applies the answers).

It prints the added overhead (open − direct) at p50 and p99. Targets: the step costs about the
slowest receiver, not the sum; overhead p50 ≤ 2 ms, p99 ≤ 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from docuhooks.answers import AnswerSet
from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.identity import service as identity
from docuhooks.identity.secrets import SecretBox
from docuhooks.interview_hooks import run_interview_hooks
from docuhooks.platform import interviews
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.store.schema import templates, work_groups, work_items
from docuhooks.webhooks import service as webhooks

HOOKS = 5
VARIABLES = [
    {"name": f"Answer {i}", "type": "text", "repeatDepth": 0, "options": []} for i in range(HOOKS)
]


def _receiver(port: int, delay: float) -> None:
    def route(index: int) -> web.RequestHandler:  # type: ignore[name-defined]
        async def handler(request: web.Request) -> web.Response:
            await asyncio.sleep(delay * (index + 1))
            return web.json_response({f"Answer {index}": f"from receiver {index}"})

        return handler

    app = web.Application()
    for index in range(HOOKS):
        app.router.add_get(f"/hook/{index}", route(index))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _setup(ctx: AppContext, base: str) -> tuple[object, str]:
    now = ctx.now()
    async with ctx.db.transaction() as conn:
        site_id = await identity.create_site(conn, name="Bench", base_url="https://bench.example")
        for login, role in (
            ("admin@bench.example", "SiteAdministrator"),
            ("u@bench.example", "User"),
        ):
            await identity.create_user(
                conn, site_id=site_id, login_name=login, name=login, roles=[role], password=None
            )
        admin = await identity.authenticate_token(
            conn, await identity.create_token(conn, login_name="admin@bench.example")
        )
        user = await identity.authenticate_token(
            conn, await identity.create_token(conn, login_name="u@bench.example")
        )
        assert admin is not None and user is not None
        group_id, template_id, item_id = (str(uuid.uuid4()) for _ in range(3))
        await conn.execute(
            work_groups.insert().values(id=group_id, site_id=site_id, name="G", created_at=now)
        )
        await conn.execute(
            templates.insert().values(
                id=template_id,
                site_id=site_id,
                name="T",
                file_name="t.docx",
                content=b"x",
                sha256=hashlib.sha256(b"x").hexdigest(),
                variables=VARIABLES,
                event_elements=[],
                created_at=now,
            )
        )
        await conn.execute(
            work_items.insert().values(
                id=item_id,
                site_id=site_id,
                work_group_id=group_id,
                template_id=template_id,
                name="W",
                created_at=now,
            )
        )
        for index in range(HOOKS):
            await webhooks.create(
                ctx,
                conn,
                admin,
                {
                    "name": f"hook {index}",
                    "url": f"{base}/hook/{index}",
                    "eventType": "InterviewLoadEvent",
                    "order": index,
                },
            )
    return user, item_id


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _run(iterations: int, delay: float, base: str, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, dev_mode=True, secret_key="bench-key-0123456789")
    db = Database.from_url(settings.resolved_database_url)
    await db.upgrade()
    ctx = AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))
    user, item_id = await _setup(ctx, base)
    async with ctx.db.read() as conn:
        item = (await conn.execute(sa.select(work_items).where(work_items.c.id == item_id))).one()
        template = (
            await conn.execute(sa.select(templates).where(templates.c.id == item.template_id))
        ).one()
    direct_ms: list[float] = []
    open_ms: list[float] = []
    engine_ms: list[float] = []
    async with aiohttp.ClientSession() as client:

        async def direct() -> None:
            async def one(index: int) -> None:
                async with client.get(f"{base}/hook/{index}") as response:
                    await response.read()

            await asyncio.gather(*(one(i) for i in range(HOOKS)))

        for _ in range(5):  # warm up: connections, pools, caches
            await direct()
            await interviews.open_interview(ctx, user, item_id)  # type: ignore[arg-type]
        for _ in range(iterations):
            started = time.perf_counter()
            await direct()
            direct_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            opened = await interviews.open_interview(ctx, user, item_id)  # type: ignore[arg-type]
            open_ms.append((time.perf_counter() - started) * 1000)
            assert not opened["warnings"], opened["warnings"]
            assert len(opened["answers"]["answers"]) == HOOKS
            started = time.perf_counter()
            await run_interview_hooks(
                ctx,
                principal=user,  # type: ignore[arg-type]
                event_type=EventType.INTERVIEW_LOAD_EVENT,
                interview_id=opened["id"],
                work_item=item,
                version_id=opened["workItemVersionId"],
                template=template,
                current_answers=AnswerSet(),
            )
            engine_ms.append((time.perf_counter() - started) * 1000)
    await ctx.close()
    overhead = [o - d for o, d in zip(open_ms, direct_ms, strict=True)]
    engine_overhead = [e - d for e, d in zip(engine_ms, direct_ms, strict=True)]
    slowest = delay * HOOKS * 1000
    total = sum(delay * (i + 1) for i in range(HOOKS)) * 1000
    print(
        f"{HOOKS} webhooks, receiver delays {delay * 1000:g}..{slowest:g} ms "
        f"(sum {total:g} ms), {iterations} iterations, SQLite"
    )
    print(
        f"receivers direct   p50 {statistics.median(direct_ms):7.2f} ms  "
        f"p99 {_percentile(direct_ms, 0.99):7.2f} ms"
    )
    print(
        f"open interview     p50 {statistics.median(open_ms):7.2f} ms  "
        f"p99 {_percentile(open_ms, 0.99):7.2f} ms"
    )
    print(
        f"added overhead     p50 {statistics.median(overhead):7.2f} ms  "
        f"p99 {_percentile(overhead, 0.99):7.2f} ms"
    )
    print(
        f"hook engine alone  p50 {statistics.median(engine_overhead):7.2f} ms  "
        f"p99 {_percentile(engine_overhead, 0.99):7.2f} ms  (run_interview_hooks - direct)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    port = _free_port()
    process = multiprocessing.Process(target=_receiver, args=(port, delay), daemon=True)
    process.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(_run(args.iterations, delay, base, Path(folder)))
    finally:
        process.terminate()
        process.join()


if __name__ == "__main__":
    main()
