"""The demo's scripted walk-through: an interview from open to finished document, through the
public REST API, showing after each step what the receiver saw and answered."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from docx import Document

from docuhooks.demo import template
from docuhooks.demo.bootstrap import Api, DemoError, DemoState
from docuhooks.listen import Received
from docuhooks.receiver import NewWorkItemVersionComplete, PostProcessingEvent
from docuhooks.store.private_files import write_private_file

#: How long the worker may take to deliver NewWorkItemVersionComplete (it is woken at commit).
DELIVERY_WAIT_SECONDS = 30.0
INDENT = "      "
COMPLETION = "NewWorkItemVersionComplete"


class ReceiverLog:
    """Every request the demo's receiver answered, gathered from the listener's threads."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._records: list[Received] = []
        self._lock = threading.Lock()
        self._write = write
        #: After the walk-through, requests are printed as they come.
        self.live = False

    def received(self, record: Received) -> None:
        with self._lock:
            self._records.append(record)
        if self.live:
            self._write("receiver: " + record.pretty())

    def note(self, text: str) -> None:
        if self.live:
            self._write(f"receiver: {text}")

    def mark(self) -> int:
        with self._lock:
            return len(self._records)

    def since(self, mark: int) -> list[Received]:
        with self._lock:
            return self._records[mark:]

    def all(self) -> list[Received]:
        return self.since(0)

    async def wait_for(
        self, mark: int, wanted: Callable[[Received], bool], seconds: float
    ) -> Received | None:
        deadline = time.monotonic() + seconds
        while True:
            found = next((r for r in self.since(mark) if wanted(r)), None)
            if found is not None or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


@dataclass
class Step:
    title: str
    ok: bool = False
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)


def _is(event_type: str) -> Callable[[Received], bool]:
    return lambda record: record.event_type == event_type


def _answers_text(answer_json: dict[str, Any]) -> str:
    return ", ".join(
        f"{a['name']}={json.dumps(a['value'], ensure_ascii=False)}"
        for a in answer_json.get("answers", [])
    )


def _receiver_saw(record: Received) -> str:
    return "receiver: " + record.pretty().replace("\n", "\n" + INDENT)


class WalkThrough:
    def __init__(
        self,
        api: Api,
        state: DemoState,
        log: ReceiverLog,
        data_dir: Path,
        write: Callable[[str], None],
    ) -> None:
        self.api = api
        self.state = state
        self.log = log
        self.data_dir = data_dir
        self.write = write
        self.interview: dict[str, Any] = {}
        self.version: dict[str, Any] = {}
        self.completion: NewWorkItemVersionComplete | None = None
        self.finish_mark = 0

    async def run(self) -> bool:
        """Every step in turn, each printed with what the receiver saw; True if all went well."""
        steps = (
            ("Open an interview: the InterviewLoadEvent webhook prefills it", self.open_interview),
            (
                f"Press {template.LOOKUP_BUTTON!r}: a CustomInterviewEvent looks the client up",
                self.look_up,
            ),
            ("Finish: assemble the letter, post-process, complete the version", self.finish),
            ("The worker delivers NewWorkItemVersionComplete", self.delivered),
            ("Fetch the letter by the event's document URL", self.fetch_document),
            ("PostProcessingEvent", self.post_processing),
        )
        all_ok = True
        for number, (title, action) in enumerate(steps, start=1):
            step = Step(f"[{number}/{len(steps)}] {title}")
            self.write(step.title)
            mark = self.log.mark()
            try:
                await action(step, mark)
            except DemoError as exc:
                step.ok = False
                step.say(f"failed: {exc}")
            # The worker may deliver the completion while step 3 is still printing: step 4
            # shows it, as it is that step's subject.
            shown = [r for r in self.log.since(mark) if not _is(COMPLETION)(r)]
            step.lines[:0] = [_receiver_saw(record) for record in shown]
            for line in step.lines:
                self.write(INDENT + line)
            self.write(f"{INDENT}{'OK' if step.ok else 'FAILED'}")
            all_ok = all_ok and step.ok
        return all_ok

    async def open_interview(self, step: Step, mark: int) -> None:
        self.interview = await self.api.call(
            "POST", f"/workitems/{self.state.work_item_id}/interviews", expect=201
        )
        seen = await self.log.wait_for(mark, _is("InterviewLoadEvent"), 5)
        step.say(f"interview {self.interview['id']}, version {self.interview['versionNumber']}")
        step.say(f"answers now: {_answers_text(self.interview['answers'])}")
        self._warnings(step, self.interview)
        names = {a["name"] for a in self.interview["answers"]["answers"]}
        step.ok = bool(seen and seen.status == 200 and "Client Name" in names)
        step.ok = step.ok and not self.interview["warnings"]

    async def look_up(self, step: Step, mark: int) -> None:
        button = quote(template.LOOKUP_BUTTON, safe="")
        self.interview = await self.api.call(
            "POST", f"/interviews/{self.interview['id']}/events/{button}"
        )
        seen = await self.log.wait_for(mark, _is("CustomInterviewEvent"), 5)
        step.say(f"answers now: {_answers_text(self.interview['answers'])}")
        self._warnings(step, self.interview)
        names = {a["name"] for a in self.interview["answers"]["answers"]}
        step.ok = bool(seen and seen.status == 200 and {"Fee", "Contact Name"} <= names)
        step.ok = step.ok and not self.interview["warnings"]

    async def finish(self, step: Step, mark: int) -> None:
        self.finish_mark = mark
        self.version = await self.api.call("POST", f"/interviews/{self.interview['id']}/finish")
        if self.version["status"] == "PostProcessing":
            step.say("the version waits in PostProcessing for the receiver")
            self.version = await self._until_settled(self.version)
        documents = self.version.get("documents") or []
        step.say(
            f"version {self.version['versionNumber']} is {self.version['status']}, "
            f"{len(documents)} document(s): " + ", ".join(d["fileName"] for d in documents)
        )
        step.ok = self.version["status"] == "Completed" and bool(documents)

    async def delivered(self, step: Step, mark: int) -> None:
        version_id = self.version["id"]
        seen = await self.log.wait_for(
            self.finish_mark,
            lambda r: (
                isinstance(r.event, NewWorkItemVersionComplete)
                and r.event.work_item.version_id == version_id
            ),
            DELIVERY_WAIT_SECONDS,
        )
        if seen is None or not isinstance(seen.event, NewWorkItemVersionComplete):
            step.say(f"nothing arrived within {DELIVERY_WAIT_SECONDS:.0f} s")
            return
        self.completion = seen.event
        step.say(_receiver_saw(seen))
        announced = {d.id: d.sha256 for d in seen.event.documents}
        stored = {d["id"]: d["sha256"] for d in self.version["documents"]}
        step.say(
            "the event names the version's documents with their sha256: "
            + ("yes" if announced == stored else f"no: {announced} != {stored}")
        )
        step.ok = 200 <= seen.status < 300 and announced == stored

    async def fetch_document(self, step: Step, mark: int) -> None:
        if self.completion is None or not self.completion.documents:
            step.say("skipped: no NewWorkItemVersionComplete event to follow")
            return
        document = self.completion.documents[0]
        content = await self.api.call("GET", document.url)
        digest = hashlib.sha256(content).hexdigest()
        number = self.completion.work_item.version_number
        saved = self.data_dir / f"letter-v{number}.docx"
        write_private_file(saved, content)
        step.say(f"GET {document.url}")
        verdict = "matches" if digest == document.sha256 else "DIFFERS"
        step.say(f"{len(content)} bytes, sha256 {verdict}; saved as {saved}")
        for paragraph in Document(io.BytesIO(content)).paragraphs[1:5]:
            step.say(f"| {paragraph.text}")
        step.ok = digest == document.sha256

    async def post_processing(self, step: Step, mark: int) -> None:
        called = [
            r
            for r in self.log.since(self.finish_mark)
            if isinstance(r.event, PostProcessingEvent) and not r.event.test
        ]
        if called:
            step.say("the webhook was called when the interview finished (above) and answered")
            step.ok = all(r.status in (200, 202) for r in called)
            return
        hook = next(h for h in self.state.webhooks if h.event_type == "PostProcessingEvent")
        step.say(
            "finishing did not call it (is the webhook inactive, or scoped to other "
            "templates?). Its test event goes down the same signing path instead:"
        )
        sent = await self.api.call("POST", f"/webhooks/{hook.id}/test")
        seen = await self.log.wait_for(mark, _is("PostProcessingEvent"), 5)
        call = sent.get("call") or {}
        step.say(f"POST /webhooks/{hook.id}/test -> the receiver answered {call.get('statusCode')}")
        step.ok = bool(seen and seen.event is not None and call.get("statusCode") == 200)

    async def _until_settled(self, version: dict[str, Any]) -> dict[str, Any]:
        """The version once post-processing has ended, by the receiver or by its deadline."""
        path = f"/workitems/{self.state.work_item_id}/versions/{version['id']}"
        deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
        while version["status"] == "PostProcessing" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            version = await self.api.call("GET", path)
        return version

    def _warnings(self, step: Step, interview: dict[str, Any]) -> None:
        for warning in interview["warnings"]:
            step.say(f"warning ({warning['code']}): {warning['message']}")
