"""A receiver running in its own process (another venv, another language), driven over real
HTTP with requests signed by docuhooks' own signer (`core.signing.build_request`, what the
delivery worker sends).

The receivers it drives share one small protocol: their first line on stdout is
`{"listening": "<url>"}`, and each request then prints one JSON line saying what was verified
(`{"verified": true, "authMethod", "eventType", "eventId"}`) or why it was refused
(`{"verified": false, "code", "message"}`) before it is answered, so a test reads the
receiver's own account of each call right after the call."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from receiver_samples import sample_event

from docuhooks.core.events import EventType
from docuhooks.core.signing import OutboundRequest, WebhookTarget, build_request


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    #: The receiver's own line about this call.
    log: dict[str, Any]

    def json(self) -> Any:
        return json.loads(self.body)


class LiveReceiver:
    def __init__(self, command: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        #: The receiver's first line: where it listens, and whatever else it reports.
        self.started = self._line()
        self.url: str = self.started["listening"]

    def _line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            assert self.process.stderr is not None
            raise AssertionError(
                f"the receiver exited with {self.process.returncode}: {self.process.stderr.read()}"
            )
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    def at(self, webhook: WebhookTarget) -> WebhookTarget:
        """`webhook`, pointed at this receiver."""
        return dataclasses.replace(webhook, url=self.url)

    def send(self, request: OutboundRequest) -> Reply:
        outbound = urllib.request.Request(
            request.url, data=request.body, headers=dict(request.headers), method=request.method
        )
        try:
            with urllib.request.urlopen(outbound, timeout=60) as response:
                status, content_type, body = (
                    response.status,
                    response.headers.get("Content-Type", ""),
                    response.read(),
                )
        except urllib.error.HTTPError as refused:
            status, content_type, body = (
                refused.code,
                refused.headers.get("Content-Type", ""),
                refused.read(),
            )
        return Reply(status, content_type, body, self._line())

    def deliver(self, event_type: EventType, webhook: WebhookTarget) -> Reply:
        """Sign a sample event of `event_type` for `webhook` as the worker does, and send it."""
        request = build_request(
            sample_event(event_type),
            self.at(webhook),
            delivery_id="dlv-1",
            attempt=1,
            now=datetime.now(UTC),
            user_agent="docuhooks/test",
        )
        return self.send(request)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
