"""Time comes from one place: the services read the time their caller gives them, which the
app takes from `AppContext.clock`, so a test that puts a `FakeClock` there sees every
timestamp a request writes move with it; and nothing under `src/` reads the wall clock but
`core/clock.py`."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.support import SiteUsers

import docuhooks
from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.store.schema import api_tokens, audit_log, users, work_groups

SOURCE = Path(docuhooks.__file__).parent
#: Where the wall clock may be read: the clock seam itself, and the receiver SDK, which
#: imports nothing of the server (its `Verifier` takes a `clock` callable instead).
ALLOWED = {SOURCE / "core" / "clock.py"}
ALLOWED_PACKAGES = {SOURCE / "receiver"}
#: Calls that read the wall clock. Monotonic timers (`time.monotonic`, `perf_counter`,
#: `loop.time`) measure durations and bound waits on real I/O, and are not on this list.
WALL_CLOCK = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
}


def wall_clock_reads(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "utcnow":
            found.append(f"{path.relative_to(SOURCE)}:{node.lineno} utcnow()")
        elif (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and (func.value.id, func.attr) in WALL_CLOCK
        ):
            found.append(f"{path.relative_to(SOURCE)}:{node.lineno} {func.value.id}.{func.attr}()")
    return found


def test_only_the_clock_seam_reads_the_wall_clock() -> None:
    reads = [
        read
        for path in sorted(SOURCE.rglob("*.py"))
        if path not in ALLOWED and not any(package in path.parents for package in ALLOWED_PACKAGES)
        for read in wall_clock_reads(path)
    ]
    assert reads == [], "take the time from the caller (`now`, or a `Clock`)"


def test_the_scan_finds_a_wall_clock_read() -> None:
    sample = SOURCE / "core" / "clock.py"
    assert wall_clock_reads(sample), "core/clock.py reads the clock, and the scan sees it"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_what_a_request_writes_is_dated_by_the_contexts_clock(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    moment = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)
    ctx.clock = FakeClock(moment)
    admin = site.auth("SiteAdministrator")
    group = await client.post("/api/v1/workgroups", json={"name": "Dated"}, headers=admin)
    assert group.status_code == 201, group.text
    user = await client.post(
        "/api/v1/users",
        json={"loginName": "dated@example.com", "name": "Dated", "roles": ["User"]},
        headers=admin,
    )
    assert user.status_code == 201, user.text
    token = await client.post("/api/v1/tokens", json={"name": "dated"}, headers=admin)
    assert token.status_code == 201, token.text
    async with ctx.db.read() as conn:
        dated = [
            await conn.scalar(
                sa.select(work_groups.c.created_at).where(work_groups.c.name == "Dated")
            ),
            await conn.scalar(
                sa.select(users.c.created_at).where(users.c.login_name == "dated@example.com")
            ),
            await conn.scalar(
                sa.select(api_tokens.c.created_at).where(api_tokens.c.name == "dated")
            ),
            await conn.scalar(
                sa.select(audit_log.c.created_at).where(audit_log.c.action == "user.created")
            ),
        ]
    assert [aware(value) for value in dated] == [moment] * 4


def aware(value: object) -> datetime:
    assert isinstance(value, datetime)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
