"""Hostile input against a live `docuhooks serve` (a real process, SQLite, a temp data dir),
while another site's requests run in a background loop the whole time.

Each case in `CASES` is one hostile request (after whatever set-up it needs); the suite
asserts that every case is answered 4xx with the limit it hit (or, for heavy work that is
allowed, served), that the other site's
requests stay under 1 s at the 99th percentile throughout, that the server's memory (its
processes and their children) stays under the render memory limit per worker plus a
margin, and that the server exits within 10 s of SIGTERM afterwards, even with a render in
flight. To add a case (an answer set, say), add one `Case` to `CASES`. A second test holds
the render workers' fairness: one site's queue of looping renders does not delay another
site's render.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tests.platform.hostile_docx import (
    CONTENT_TYPES,
    LOOPING,
    OUTPUT_BLOW_UP,
    RANGE_OVERFLOW,
    RECURSION,
    directory_only,
    document_bomb,
    lying_directory,
    template,
)
from tests.support import SiteUsers, make_site

from docuhooks.context import AppContext
from docuhooks.settings import Settings

MiB = 1024 * 1024
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TIME_LIMIT_SECONDS = 3
MEMORY_LIMIT_BYTES = 512 * MiB
RENDER_WORKERS = 2
#: The server process itself (Python, the app, SQLite) on top of its render workers.
MEMORY_MARGIN_BYTES = 512 * MiB
VARIABLES = [{"name": "Client Name", "type": "text"}, {"name": "Fee", "type": "number"}]
BLOW_UP_ANSWERS = {"Client Name": "n" * 1000, "Fee": 500000}
#: The largest answer set the default limits let one interview hold, about 3.4 MB of JSON:
#: one repeated text answer of `max_answer_values_per_answer` values.
LARGEST_ANSWERS = {"Child Name": ["c" * 330] * 10_000}
#: Concurrent clients of the hostile site, each reading its largest answer set in a loop.
HEAVY_CLIENTS = 8
HEAVY_ROUNDS = 4


def unique(name: str) -> str:
    return f"{name} {uuid.uuid4().hex[:8]}"


def whitespace_gigabyte() -> bytes:
    """A zip of about 1 MB holding 1 GB of whitespace as `word/document.xml`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", CONTENT_TYPES)
        with zf.open("word/document.xml", "w", force_zip64=True) as entry:
            chunk = b" " * MiB
            for _ in range(1024):
                entry.write(chunk)
    return out.getvalue()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    hostile: SiteUsers
    other: SiteUsers
    log: Path

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


class Hostile:
    """What a case uses: the hostile site's users on the live server."""

    def __init__(self, server: Server, http: httpx.Client) -> None:
        self.http = http
        self.site = server.hostile

    def upload(self, content: bytes) -> httpx.Response:
        return self.http.post(
            "/api/v1/templates",
            files={"file": ("hostile.docx", content, DOCX)},
            data={"definition": json.dumps({"name": unique("Hostile"), "variables": VARIABLES})},
            headers=self.site.auth(),
        )

    def template_id(self, text: str) -> str:
        uploaded = self.upload(template(text))
        assert uploaded.status_code == 201, uploaded.text
        template_id: str = uploaded.json()["id"]
        return template_id

    def quick(self, text: str, answers: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(
            f"/api/v1/templates/{self.template_id(text)}/assemble",
            json=answers or {},
            headers=self.site.auth("User"),
        )

    def work_item(self, template_id: str) -> str:
        group = self.http.post(
            "/api/v1/workgroups", json={"name": unique("G")}, headers=self.site.auth()
        )
        item = self.http.post(
            "/api/v1/workitems",
            json={"workGroupId": group.json()["id"], "templateId": template_id, "name": "W"},
            headers=self.site.auth("User"),
        )
        assert item.status_code == 201, item.text
        work_item_id: str = item.json()["id"]
        return work_item_id

    def finish(self, text: str) -> httpx.Response:
        item = self.work_item(self.template_id(text))
        opened = self.http.post(
            f"/api/v1/workitems/{item}/interviews", headers=self.site.auth("User")
        )
        assert opened.status_code == 201, opened.text
        return self.http.post(
            f"/api/v1/interviews/{opened.json()['id']}/finish", headers=self.site.auth("User")
        )

    def test_post_processing(self, reply: bytes) -> httpx.Response:
        """`POST /webhooks/{id}/test` of a PostProcessingEvent webhook whose receiver (on
        loopback, here) answers 200 with `reply`."""
        with replying(reply) as url:
            hook = self.http.post(
                "/api/v1/webhooks",
                json={"name": unique("PP"), "url": url, "eventType": "PostProcessingEvent"},
                headers=self.site.auth(),
            )
            assert hook.status_code == 201, hook.text
            return self.http.post(
                f"/api/v1/webhooks/{hook.json()['id']}/test", headers=self.site.auth()
            )

    def heavy_answer_reads(self) -> httpx.Response:
        """Eight clients at once, each reading an interview's largest answer set again and
        again (the answers are encoded in the parsing threads, a few at a time per site);
        the last response."""
        uploaded = self.http.post(
            "/api/v1/templates",
            files={"file": ("repeat.docx", template("{{ Child_Name | length }}"), DOCX)},
            data={
                "definition": json.dumps(
                    {
                        "name": unique("Repeat"),
                        "variables": [{"name": "Child Name", "type": "text", "repeatDepth": 1}],
                    }
                )
            },
            headers=self.site.auth(),
        )
        assert uploaded.status_code == 201, uploaded.text
        item = self.work_item(uploaded.json()["id"])
        opened = self.http.post(
            f"/api/v1/workitems/{item}/interviews", headers=self.site.auth("User")
        )
        assert opened.status_code == 201, opened.text
        url = f"/api/v1/interviews/{opened.json()['id']}/answers"
        put = self.http.put(url, json=LARGEST_ANSWERS, headers=self.site.auth("User"))
        assert put.status_code == 200, put.text
        responses: list[httpx.Response] = []

        def client() -> None:
            with httpx.Client(base_url=str(self.http.base_url), timeout=120) as http:
                for _ in range(HEAVY_ROUNDS):
                    responses.append(http.get(url, headers=self.site.auth("User")))

        clients = [threading.Thread(target=client) for _ in range(HEAVY_CLIENTS)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(300)
        assert len(responses) == HEAVY_CLIENTS * HEAVY_ROUNDS
        assert {r.status_code for r in responses} == {200}
        assert len(responses[-1].json()["answers"][0]["value"]) == 10_000
        return responses[-1]

    def add_document(self, content: bytes) -> httpx.Response:
        item = self.work_item(self.template_id("{{ Client_Name }}"))
        return self.http.post(
            f"/api/v1/workitems/{item}/versions/active/documents?fileName=bomb.docx",
            content=content,
            headers={**self.site.auth("User"), "Content-Type": DOCX},
        )


@contextlib.contextmanager
def replying(body: bytes) -> Iterator[str]:
    """A receiver on loopback answering every POST with 200 and `body` (JSON); its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    finally:
        receiver.shutdown()
        receiver.server_close()


def directory_reply(entries: int) -> bytes:
    """A post-processing reply adding two DOCX documents of `entries` bare zip-directory
    records each."""
    content = base64.b64encode(directory_only(entries)).decode()
    document = {
        "action": "add",
        "name": "Signed",
        "fileName": "signed.docx",
        "contentType": DOCX,
        "content": content,
    }
    return json.dumps({"documents": [document, document]}).encode()


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Hostile], httpx.Response]
    status: int
    #: The error's code; for a webhook test send (answered 200), the attempt's status.
    code: str
    #: Words the answer must contain (the limit's setting).
    says: str = ""


CASES = [
    Case("looping template", lambda h: h.quick(LOOPING), 422, "render_time_limit"),
    Case("range overflow", lambda h: h.quick(RANGE_OVERFLOW), 422, "validation_failed"),
    Case("recursion", lambda h: h.quick(RECURSION), 422, "validation_failed"),
    Case(
        "output blow-up",
        lambda h: h.quick(OUTPUT_BLOW_UP, BLOW_UP_ANSWERS),
        413,
        "render_output_too_large",
    ),
    Case("finishing a looping interview", lambda h: h.finish(LOOPING), 422, "render_time_limit"),
    Case(
        "120 MB document.xml template",
        lambda h: h.upload(document_bomb(120 * MiB)),
        413,
        "docx_too_large_uncompressed",
    ),
    Case(
        "1 GB of whitespace template",
        lambda h: h.upload(whitespace_gigabyte()),
        413,
        "docx_too_large_uncompressed",
    ),
    Case(
        "120 MB document.xml document",
        lambda h: h.add_document(document_bomb(120 * MiB)),
        413,
        "docx_too_large_uncompressed",
    ),
    Case(
        "lying zip directory",
        lambda h: h.upload(lying_directory(3 * MiB, 2000)),
        422,
        "docx_size_mismatch",
    ),
    Case(
        "post-processing reply of 2 x 200,000 zip directory entries",
        lambda h: h.test_post_processing(directory_reply(200_000)),
        200,
        "failed",
        "docx_max_entries",
    ),
    # Not refused: served, a few at a time, while every other site is served too.
    Case("8 clients reading the largest answer set", Hostile.heavy_answer_reads, 200, ""),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = free_port()
    env = {
        **os.environ,
        "DOCUHOOKS_DATA_DIR": str(data_dir),
        "DOCUHOOKS_SECRET_KEY": "hostile-suite-secret-key-0123",
        "DOCUHOOKS_PORT": str(port),
        "DOCUHOOKS_LOG_LEVEL": "warning",
        "DOCUHOOKS_RENDER_WORKERS": str(RENDER_WORKERS),
        "DOCUHOOKS_RENDER_TIME_LIMIT_SECONDS": str(TIME_LIMIT_SECONDS),
        "DOCUHOOKS_RENDER_MEMORY_LIMIT_BYTES": str(MEMORY_LIMIT_BYTES),
        # The post-processing case's receiver listens on loopback.
        "DOCUHOOKS_ALLOWED_NETWORKS": "127.0.0.1/32",
    }
    log = data_dir / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "docuhooks", "serve"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start: " + log.read_text())


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("hostile")
    settings = Settings(data_dir=data_dir, secret_key="hostile-suite-secret-key-0123")

    async def sites() -> tuple[SiteUsers, SiteUsers]:
        ctx = AppContext.from_settings(settings)
        await ctx.db.upgrade()
        try:
            return await make_site(ctx, "Hostile"), await make_site(ctx, "Other")
        finally:
            await ctx.close()

    hostile, other = asyncio.run(sites())
    process, url, log = start_server(data_dir)
    yield Server(process, url, hostile, other, log)
    stop(process)


@dataclass
class Watch:
    """The other site's requests and the server's memory, sampled until stopped."""

    server: Server
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    peak_rss: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)

    def other_site(self) -> None:
        with self.server.client(timeout=30) as http:
            while not self.stopped.is_set():
                for path in ("/healthz", "/api/v1/templates", "/api/v1/workgroups"):
                    started = time.perf_counter()
                    response = http.get(path, headers=self.server.other.auth())
                    self.latencies.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        self.failures.append(f"{path}: {response.status_code}")
                time.sleep(0.02)

    def memory(self) -> None:
        root = psutil.Process(self.server.process.pid)
        while not self.stopped.is_set():
            total = 0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak_rss = max(self.peak_rss, total)
            time.sleep(0.05)

    def __enter__(self) -> Watch:
        self.threads = [
            threading.Thread(target=self.other_site, daemon=True),
            threading.Thread(target=self.memory, daemon=True),
        ]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(60)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def test_every_hostile_case_is_a_4xx_while_other_sites_are_served(server: Server) -> None:
    outcomes: dict[str, tuple[int, str]] = {}
    unsaid: list[str] = []
    with Watch(server) as watch, server.client() as http:
        hostile = Hostile(server, http)
        for case in CASES:
            response = case.run(hostile)
            answer = response.json() if response.content else {}
            code = answer.get("error", {}).get("code", "") or answer.get("status", "")
            outcomes[case.name] = (response.status_code, code)
            if case.says not in response.text:
                unsaid.append(f"{case.name}: {response.text[:300]}")
    expected = {case.name: (case.status, case.code) for case in CASES}
    assert outcomes == expected
    assert not unsaid
    assert not watch.failures
    assert len(watch.latencies) > 50
    assert p99(watch.latencies) < 1.0, sorted(watch.latencies)[-10:]
    assert watch.peak_rss < RENDER_WORKERS * MEMORY_LIMIT_BYTES + MEMORY_MARGIN_BYTES


def test_one_site_looping_renders_do_not_delay_another_sites_render(server: Server) -> None:
    """The hostile site sends six looping quick documents at once (each stopped at the
    time limit, one at a time: a site holds at most all but one worker); the other site's
    quick document is answered while at least four of them are still waiting."""
    with server.client() as http:
        looping = Hostile(server, http).template_id(LOOPING)
        normal = http.post(
            "/api/v1/templates",
            files={"file": ("letter.docx", template("Dear {{ Client_Name }}"), DOCX)},
            data={"definition": json.dumps({"name": unique("Letter"), "variables": VARIABLES})},
            headers=server.other.auth(),
        )
        assert normal.status_code == 201, normal.text

    def render() -> int:
        with server.client() as http:
            return http.post(
                f"/api/v1/templates/{looping}/assemble",
                json={},
                headers=server.hostile.auth("User"),
            ).status_code

    with ThreadPoolExecutor(6) as threads, server.client() as http:
        hostile = [threads.submit(render) for _ in range(6)]
        time.sleep(0.5)  # let them queue (the test holds whether or not they have)
        other = http.post(
            f"/api/v1/templates/{normal.json()['id']}/assemble",
            json={"Client Name": "Jane"},
            headers=server.other.auth("User"),
        )
        done = sum(future.done() for future in hostile)
        assert other.status_code == 200, other.text
        assert done <= 2, done
        assert [future.result() for future in hostile] == [422] * 6


def test_sigterm_stops_the_server_promptly_during_a_render(server: Server) -> None:
    with server.client() as http:
        looping = Hostile(server, http).template_id(LOOPING)
    answered: list[int] = []

    def render() -> None:
        with server.client() as http:
            response = http.post(
                f"/api/v1/templates/{looping}/assemble",
                json={},
                headers=server.hostile.auth("User"),
            )
            answered.append(response.status_code)

    thread = threading.Thread(target=render, daemon=True)
    thread.start()
    root = psutil.Process(server.process.pid)
    workers = root.children(recursive=True)
    time.sleep(0.5)  # let the render start (the test holds whether or not it has)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) is not None
    thread.join(10)
    assert answered in ([], [503])
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, alive


def test_a_server_killed_during_a_render_leaves_nothing_that_blocks_the_next(
    tmp_path: Path, server: Server
) -> None:
    # After the module's server: a second server on its data directory starts and serves.
    stop(server.process)
    process, url, _ = start_server(Path(server.log).parent)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            looping = Hostile(Server(process, url, server.hostile, server.other, server.log), http)
            template_id = looping.template_id(LOOPING)

        def render() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
                httpx.post(
                    f"{url}/api/v1/templates/{template_id}/assemble",
                    json={},
                    headers=server.hostile.auth("User"),
                    timeout=30,
                )

        thread = threading.Thread(target=render, daemon=True)
        thread.start()
        workers = psutil.Process(process.pid).children(recursive=True)
        assert workers
        time.sleep(0.5)
        process.kill()
        process.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, alive
    finally:
        stop(process)
    third, url, _ = start_server(Path(server.log).parent)
    try:
        assert httpx.get(url + "/healthz", timeout=10).status_code == 200
    finally:
        stop(third)
