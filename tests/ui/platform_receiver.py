"""A receiver process for the interview journey's last steps: it answers each
PostProcessingEvent by adding a PDF cover page (inline), once the file named by
`RELEASE_FILE` exists, so a test can see the version in PostProcessing before it completes;
and it writes every NewWorkItemVersionComplete event it gets, one JSON line each, to
`EVENTS_FILE`. Every call is verified with `docuhooks.receiver` (HMAC secrets in
`DOCUHOOKS_WEBHOOK_SECRETS`, addressed to `DOCUHOOKS_WEBHOOK_IDS`, comma-separated).

Prints `listening on http://127.0.0.1:PORT` once it is ready."""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from docuhooks.receiver import (
    NewWorkItemVersionComplete,
    PostProcessingEvent,
    PostProcessingResult,
    VerificationError,
    Verifier,
)

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
#: How long a post-processing call waits for its release at most (the test fails first).
RELEASE_WAIT_SECONDS = 60


def main() -> None:
    verifier = Verifier(
        secrets=os.environ["DOCUHOOKS_WEBHOOK_SECRETS"].split(","),
        audience=os.environ["DOCUHOOKS_WEBHOOK_IDS"].split(","),
        auth_method="HMAC",
    )
    events_file = Path(os.environ["EVENTS_FILE"])
    release = Path(os.environ["RELEASE_FILE"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            url = f"http://{self.headers.get('Host')}{self.path}"
            try:
                event = verifier.verify("POST", url, dict(self.headers), body)
            except VerificationError as exc:
                self._send(401, {"error": str(exc)})
                return
            if isinstance(event, PostProcessingEvent):
                deadline = time.monotonic() + RELEASE_WAIT_SECONDS
                while not release.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                result = PostProcessingResult().add("Cover", "cover.pdf", "application/pdf", PDF)
                self._send(200, result.to_dict())
            elif isinstance(event, NewWorkItemVersionComplete):
                line = {
                    "eventType": "NewWorkItemVersionComplete",
                    "workItemId": event.work_item.id,
                    "versionNumber": event.work_item.version_number,
                    "documents": [d.file_name for d in event.documents],
                }
                with events_file.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(line) + "\n")
                self.send_response(204)
                self.end_headers()
            else:
                self.send_response(204)
                self.end_headers()

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
