"""A receiver in a process of its own for the reliability tests.

Every request it gets is appended to a log file as one line, written whole with O_APPEND:
`<event id> <delivery id> <arrival> <departure>` (monotonic-free wall times, seconds), after it
has answered 200 (the departure is when the answer was ready). `--slow-share` of requests are
held `--slow-seconds` before answering; the rest `--delay` seconds.

    python tests/delivery/receiver_process.py PORT LOG [--delay S] [--slow-share F --slow-seconds S]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--slow-share", type=float, default=0.0)
    parser.add_argument("--slow-seconds", type=float, default=0.0)
    args = parser.parse_args()
    log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            arrival = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            slow = random.random() < args.slow_share
            time.sleep(args.slow_seconds if slow else args.delay)
            departure = time.time()
            line = (
                f"{self.headers['X-Docuhooks-Event-Id']} {self.headers['X-Docuhooks-Delivery-Id']}"
                f" {arrival:.6f} {departure:.6f}\n"
            )
            os.write(log, line.encode())
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
