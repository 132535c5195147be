"""A receiver for the two interview events: prefill on InterviewLoadEvent, look up on
CustomInterviewEvent. Standard library and `docuhooks_receiver` only, so it runs anywhere.

    DOCUHOOKS_WEBHOOK_SECRETS=<secret>[,<secret>...] \\
    DOCUHOOKS_WEBHOOK_AUTH_METHOD=HMAC \\
    DOCUHOOKS_WEBHOOK_IDS=<webhook id>[,<webhook id>...] \\
    INTERVIEW_DATA=examples/interview_data.json \\
    PORT=8003 python examples/interview_lookup_receiver.py

Point InterviewLoadEvent and CustomInterviewEvent webhooks at http://127.0.0.1:8003/hooks.

`INTERVIEW_DATA` names a JSON file (see `interview_data.json`):

- `"prefill"`: shorthand answers returned to every InterviewLoadEvent (`{}` → 204);
- `"lookups"`: per interview event name, `{"key": <answer name>, "rows": {<value>: {answers}}}`:
  the CustomInterviewEvent reads the answer the user typed into `key` and returns that row.
  No row for the value (or no such event name) → 204, so the user's answers stay as they are.

`REPLY_DELAY` (seconds) makes every reply wait, to try the platform's timeouts and budget.
(Replies may also be HotDocs answer XML: see `AnswerSetBuilder.to_xml()` in the other examples.)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from docuhooks_receiver import (
    AuthMethod,
    CustomInterviewEvent,
    InterviewLoadEvent,
    VerificationError,
    Verifier,
    WebhookEvent,
    shorthand,
)

log = logging.getLogger("interview-receiver")

#: Where the webhooks point, as for the other examples.
PATH = "/hooks"


class Answers:
    """What the receiver knows: the prefill and the lookup tables."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.prefill: dict[str, Any] = dict(data.get("prefill") or {})
        self.lookups: dict[str, Any] = dict(data.get("lookups") or {})

    def reply_to(self, event: WebhookEvent) -> dict[str, Any] | None:
        """Shorthand answers for `event`, or None for "no answers" (204)."""
        if isinstance(event, InterviewLoadEvent):
            return self.prefill or None
        if isinstance(event, CustomInterviewEvent):
            lookup = self.lookups.get(event.interview_event_name)
            if lookup is None:
                return None
            typed = _answer_value(event.answers, lookup["key"])
            if typed is None:
                return None
            return lookup["rows"].get(str(typed))
        return None


def _answer_value(answer_json: Mapping[str, Any], name: str) -> Any:
    for answer in answer_json.get("answers", []):
        if answer.get("name") == name:
            return answer.get("value")
    return None


def make_handler(
    verifier: Verifier, answers: Answers, *, delay: float = 0.0
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.split("?", 1)[0] != PATH:
                # Said plainly, as a webhook pointed elsewhere logs it beside its delivery.
                self._send(404, "text/plain", f"this receiver answers at {PATH}".encode())
                return
            try:
                event = verifier.verify(self.command, self.path, dict(self.headers), body)
            except VerificationError as exc:
                self._send(401, "text/plain", str(exc).encode())
                return
            log.info("%s %s received", event.__class__.__name__, event.event_id)
            if delay:
                time.sleep(delay)
            reply = answers.reply_to(event)
            log.info("%s %s -> %s", event.__class__.__name__, event.event_id, reply)
            if reply is None:
                self._send(204, "", b"")
                return
            # Shorthand answer JSON: the platform types each value by the template's variables.
            self._send(200, "application/json", json.dumps(shorthand(reply)).encode())

        def _send(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return Handler


def serve(
    verifier: Verifier,
    answers: Answers,
    *,
    host: str = "127.0.0.1",
    port: int = 8003,
    delay: float = 0.0,
) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(verifier, answers, delay=delay))
    server.daemon_threads = True
    return server


def auth_method_from_environment() -> AuthMethod:
    """DOCUHOOKS_WEBHOOK_AUTH_METHOD, in any letter case (`hmac`, `access_token` too)."""
    try:
        return AuthMethod.named(os.environ.get("DOCUHOOKS_WEBHOOK_AUTH_METHOD", "HMAC"))
    except ValueError as exc:
        raise SystemExit(f"DOCUHOOKS_WEBHOOK_AUTH_METHOD {exc}") from None


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    secrets = [s for s in os.environ.get("DOCUHOOKS_WEBHOOK_SECRETS", "").split(",") if s]
    if not secrets:
        raise SystemExit("set DOCUHOOKS_WEBHOOK_SECRETS to the webhooks' secrets or tokens")
    ids = [i for i in os.environ.get("DOCUHOOKS_WEBHOOK_IDS", "").split(",") if i]
    # The secrets are all of this one method, so none can verify a request of another.
    method = auth_method_from_environment()
    default_data = Path(__file__).with_name("interview_data.json")
    data_file = os.environ.get("INTERVIEW_DATA", str(default_data))
    answers = Answers(json.loads(Path(data_file).read_text(encoding="utf-8")))
    host = os.environ.get("HOST", "127.0.0.1")
    server = serve(
        Verifier(secrets=secrets, audience=ids or None, auth_method=method),
        answers,
        host=host,
        port=int(os.environ.get("PORT", "8003")),
        delay=float(os.environ.get("REPLY_DELAY", "0")),
    )
    # The first line on stdout is the address, so scripts (and tests) can wait for it.
    print(f"listening on http://{host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
