"""End to end with real receiver processes: `examples/interview_lookup_receiver.py` runs as a
script, one process per webhook (each verifies with its own secret), and the platform's
interview service opens interviews and fires events against them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.interview_hooks.hooks_support import Hook, make_hook, make_platform
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.platform import interviews
from docuhooks.webhooks import service as webhooks

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "interview_lookup_receiver.py"
DATA = {
    "prefill": {"Client Name": "Jane Smith", "Fee": 1500},
    "lookups": {
        "Look up client": {
            "key": "Customer Number",
            "rows": {"C-42": {"Client Name": "Omar Haddad", "Client Address": "9 Low Road"}},
        }
    },
}


@contextmanager
def receiver_process(
    hook: Hook, data: dict[str, Any], tmp_path: Path, delay: float = 0
) -> Iterator[str]:
    data_file = tmp_path / f"{hook.id}.json"
    data_file.write_text(json.dumps(data), encoding="utf-8")
    secret = hook.secret or hook.access_token
    assert secret is not None
    env = {
        **os.environ,
        "DOCUHOOKS_WEBHOOK_SECRETS": secret,
        "DOCUHOOKS_WEBHOOK_IDS": hook.id,
        "INTERVIEW_DATA": str(data_file),
        "PORT": "0",
        "REPLY_DELAY": str(delay),
    }
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "listening on http://127.0.0.1:PORT"
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield line.split()[-1] + "/interview"
    finally:
        process.terminate()
        process.wait(timeout=5)


async def point(ctx: AppContext, site: SiteUsers, hook: Hook, url: str) -> None:
    async with ctx.db.transaction() as conn:
        admin = await identity.authenticate_token(conn, site.tokens["SiteAdministrator"])
        assert admin is not None
        await webhooks.update(ctx, conn, admin, hook.id, {"url": url})


@pytest.mark.parametrize(
    ("method", "verb"),
    [
        ("HMAC", "GET"),
        ("HMAC", "POST"),
        ("AccessToken", "GET"),
        ("AccessToken", "POST"),
        ("StandardWebhooks", "POST"),
    ],
)
async def test_load_prefills_from_a_receiver_process(
    ctx: AppContext, site: SiteUsers, tmp_path: Path, method: str, verb: str
) -> None:
    platform = await make_platform(ctx, site)
    extra = {"accessToken": "token-" + "y" * 30} if method == "AccessToken" else {}
    hook = await make_hook(
        ctx,
        site,
        "http://127.0.0.1:9/unused",
        authenticationMethod=method,
        requestVerb=verb,
        **extra,
    )
    with receiver_process(hook, DATA, tmp_path) as url:
        await point(ctx, site, hook, url)
        opened = await interviews.open_interview(ctx, platform.principal, platform.work_item["id"])
    assert opened["warnings"] == []
    values = {a["name"]: a["value"] for a in opened["answers"]["answers"]}
    assert values == {"Client Name": "Jane Smith", "Fee": 1500}


async def test_custom_event_lookup_and_order_across_processes(
    ctx: AppContext, site: SiteUsers, tmp_path: Path
) -> None:
    platform = await make_platform(ctx, site)
    # Three load hooks; the lowest order replies slowest, the highest fastest: order wins.
    loads = [
        await make_hook(ctx, site, "http://127.0.0.1:9/unused", order=order) for order in (1, 2, 3)
    ]
    lookup = await make_hook(
        ctx,
        site,
        "http://127.0.0.1:9/unused",
        event_type="CustomInterviewEvent",
        interviewEventName="Look up client",
        requestVerb="POST",
    )
    with (
        receiver_process(
            loads[0], {"prefill": {"Client Name": "one", "Fee": 1}}, tmp_path, 0.6
        ) as u1,
        receiver_process(loads[1], {"prefill": {"Client Name": "two"}}, tmp_path, 0.3) as u2,
        receiver_process(loads[2], {"prefill": {"Client Name": "three"}}, tmp_path, 0) as u3,
        receiver_process(lookup, DATA, tmp_path) as u4,
    ):
        for hook, url in zip([*loads, lookup], (u1, u2, u3, u4), strict=True):
            await point(ctx, site, hook, url)
        opened = await interviews.open_interview(ctx, platform.principal, platform.work_item["id"])
        values = {a["name"]: a["value"] for a in opened["answers"]["answers"]}
        assert values == {"Client Name": "three", "Fee": 1}
        async with ctx.db.transaction() as conn:  # the user types a customer number
            await interviews.update_answers(
                conn,
                platform.principal,
                opened["id"],
                body=b'{"Customer Number": "C-42"}',
                content_type="application/json",
            )
        fired = await interviews.fire_event(ctx, platform.principal, opened["id"], "Look up client")
    assert fired["warnings"] == []
    values = {a["name"]: a["value"] for a in fired["answers"]["answers"]}
    assert values["Client Address"] == "9 Low Road"
    assert values["Client Name"] == "Omar Haddad"
