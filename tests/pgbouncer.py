"""A real PgBouncer (Debian's package) in transaction pooling mode, started by a test in
front of the PostgreSQL server the tests use.

Without pgbouncer the tests that need it skip, or fail with ``DOCUHOOKS_REQUIRE_POSTGRES=1``
(CI, which installs it), as the other helper programs do.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from tests.support import debian_program, free_loopback_port


@dataclass(frozen=True)
class PgBouncer:
    port: int
    log: Path

    def url_for(self, direct_url: str) -> str:
        """`direct_url` (a database on the server) through this pooler instead."""
        return (
            make_url(direct_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )


@contextmanager
def running_pgbouncer(server_url: str, *, pool_size: int = 8) -> Iterator[PgBouncer]:
    """A pgbouncer on a free loopback port, `pool_mode = transaction`, passing every database
    through to `server_url`'s host and port, with trust authentication (as the test server
    has). PgBouncer refuses to run as root, so as root it drops to the `postgres` user."""
    binary = debian_program("pgbouncer")
    server = make_url(server_url)
    folder = Path(tempfile.mkdtemp(prefix="docuhooks-pgbouncer-"))
    port = free_loopback_port()
    user = server.username or "postgres"
    (folder / "userlist.txt").write_text(f'"{user}" ""\n')
    config = folder / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {folder / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 500",
                f"logfile = {folder / 'pgbouncer.log'}",
                f"pidfile = {folder / 'pgbouncer.pid'}",
                "",
            ]
        )
    )
    command = [binary]
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres", "postgres")
        command += ["-u", "postgres"]
    process = subprocess.Popen(
        [*command, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        for _ in range(200):
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                log = folder / "pgbouncer.log"
                pytest.fail(
                    f"pgbouncer exited at start: {error}"
                    + (log.read_text(errors="replace") if log.exists() else "")
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            break
        else:
            pytest.fail("pgbouncer did not start listening")
        yield PgBouncer(port, folder / "pgbouncer.log")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()  # read only if it failed to start; left open, a ResourceWarning
        shutil.rmtree(folder, ignore_errors=True)
