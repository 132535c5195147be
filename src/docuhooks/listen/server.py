"""The standard library's threading HTTP server, carrying requests to a `Listener`."""

from __future__ import annotations

import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from docuhooks.listen.listener import JSON_CONTENT, Listener, Reply, redacted

#: Post-processing events carry documents inline, so bodies can be large; beyond this, 413.
MAX_BODY_BYTES = 64 * 1024 * 1024


class ListenServer(ThreadingHTTPServer):
    """The standard library's threading server, bound at construction; `listener` may be set
    after binding (the demo learns its webhooks' secrets only once its port is known)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, listener: Listener | None = None) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.listener = listener

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else host
        shown = f"[{text}]" if self.address_family == socket.AF_INET6 else text
        return f"http://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ListenServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        listener = self.server.listener
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if listener is None or not 0 <= length <= MAX_BODY_BYTES:
            status = 503 if listener is None else 413
            self._send(Reply(status, JSON_CONTENT, b'{"error": {"message": "not accepted"}}'))
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        try:
            reply, _ = listener.handle(self.command, self.path, dict(self.headers.items()), body)
        except Exception as exc:  # a bug here must still answer, and say what happened
            listener.on_note(f"{self.command} {redacted(self.path)}: answered 500, {exc!r}")
            error = {"error": {"code": "ListenerError", "message": repr(exc)}}
            reply = Reply(500, JSON_CONTENT, json.dumps(error).encode("utf-8"))
        self._send(reply)
        if reply.then is not None:
            reply.then()

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        # Every request is already reported by the listener, in a better form.
        pass
