"""A receiver run by an interpreter that has only the `docuhooks-receiver` distribution and
PyJWT (tests/receiver/test_standalone.py installs them into a new venv): standard library HTTP
server, the SDK's `Verifier`, and the line protocol of `live_receivers.py`.

Before listening it refuses to start if any part of the server could be imported, so a
passing test proves the SDK verified the calls with nothing else installed."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from docuhooks_receiver import (
    AccessToken,
    HmacSecret,
    StandardWebhooksSecret,
    VerificationError,
    Verifier,
)

#: What the server brings; none of it may be importable here.
SERVER_MODULES = ("docuhooks", "fastapi", "sqlalchemy", "aiohttp", "starlette", "alembic")


def _secrets(name: str) -> list[str]:
    return [value for value in os.environ.get(name, "").split(",") if value]


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    present = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is not None]
    if present:
        sys.exit(f"the server's modules are importable here: {present}")
    distributions = sorted(
        dist.metadata["Name"].lower() for dist in importlib.metadata.distributions()
    )
    verifier = Verifier(
        secrets=[
            *(HmacSecret(s) for s in _secrets("DOCUHOOKS_HMAC_SECRETS")),
            *(StandardWebhooksSecret(s) for s in _secrets("DOCUHOOKS_WHSEC_SECRETS")),
            *(AccessToken(s) for s in _secrets("DOCUHOOKS_ACCESS_TOKENS")),
        ],
        audience=_secrets("DOCUHOOKS_WEBHOOK_IDS") or None,
    )

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            try:
                event = verifier.verify(self.command, self.path, dict(self.headers), body)
            except VerificationError as refused:
                code = type(refused).__name__
                print(json.dumps({"verified": False, "code": code, "message": str(refused)}))
                answer = json.dumps({"error": {"code": code, "message": str(refused)}}).encode()
                self.send_response(refused.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            method = (
                "StandardWebhooks"
                if "webhook-signature" in self.headers
                else "AccessToken"
                if "Authorization" in self.headers
                else "HMAC"
            )
            print(
                json.dumps(
                    {
                        "verified": True,
                        "authMethod": method,
                        "eventType": type(event).__name__,
                        "eventId": event.event_id,
                    }
                )
            )
            self.send_response(204)
            self.end_headers()

        do_GET = do_POST = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass  # stdout carries the protocol's lines only

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    print(json.dumps({"listening": url, "distributions": distributions}))
    server.serve_forever()


if __name__ == "__main__":
    main()
