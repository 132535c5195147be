"""End to end over the HTTP API with real receiver processes:
`examples/interview_lookup_receiver.py` runs as a script, one process per webhook (each
verifies with its own secret). The template is uploaded and the webhooks created through the
API; interviews are opened and events fired with `POST /api/v1/workitems/{id}/interviews`
and `POST /api/v1/interviews/{id}/events/{name}`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.interview_hooks.hooks_support import (
    Hook,
    hook_over_api,
    open_over_api,
    values_of,
    work_item_over_api,
)
from tests.support import SiteUsers

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
    hook: Hook, data: dict[str, Any], tmp_path: Path, delay: float = 0, log: Path | None = None
) -> Iterator[str]:
    """Runs the example receiver for `hook`; with `log`, its log lines are appended there
    (receivers sharing one file write it in the order things happened)."""
    data_file = tmp_path / f"{hook.id}.json"
    data_file.write_text(json.dumps(data), encoding="utf-8")
    secret = hook.secret or hook.access_token
    assert secret is not None
    env = {
        **os.environ,
        "DOCUHOOKS_WEBHOOK_SECRETS": secret,
        "DOCUHOOKS_WEBHOOK_AUTH_METHOD": hook.auth_method,
        "DOCUHOOKS_WEBHOOK_IDS": hook.id,
        "INTERVIEW_DATA": str(data_file),
        "PORT": "0",
        "REPLY_DELAY": str(delay),
    }
    stderr = log.open("a", encoding="utf-8") if log is not None else None
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "listening on http://127.0.0.1:PORT"
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield line.split()[-1] + "/hooks"
    finally:
        process.terminate()
        process.wait(timeout=5)
        if stderr is not None:
            stderr.close()


async def point(http: httpx.AsyncClient, site: SiteUsers, hook: Hook, url: str) -> None:
    moved = await http.patch(f"/api/v1/webhooks/{hook.id}", json={"url": url}, headers=site.auth())
    assert moved.status_code == 200, moved.text


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
    client: httpx.AsyncClient, site: SiteUsers, tmp_path: Path, method: str, verb: str
) -> None:
    item = await work_item_over_api(client, site)
    extra = {"accessToken": "token-" + "y" * 30} if method == "AccessToken" else {}
    hook = await hook_over_api(
        client,
        site,
        "http://127.0.0.1:9/unused",
        authenticationMethod=method,
        requestVerb=verb,
        **extra,
    )
    with receiver_process(hook, DATA, tmp_path) as url:
        await point(client, site, hook, url)
        opened = await open_over_api(client, site, item)
    assert opened["warnings"] == []
    assert values_of(opened) == {"Client Name": "Jane Smith", "Fee": 1500}


async def test_custom_event_lookup_and_order_across_processes(
    client: httpx.AsyncClient, site: SiteUsers, tmp_path: Path
) -> None:
    item = await work_item_over_api(client, site)
    # Three load hooks; the lowest order replies slowest, the highest fastest: order wins.
    loads = [
        await hook_over_api(client, site, "http://127.0.0.1:9/unused", order=order)
        for order in (1, 2, 3)
    ]
    lookup = await hook_over_api(
        client,
        site,
        "http://127.0.0.1:9/unused",
        event_type="CustomInterviewEvent",
        interviewEventName="Look up client",
        requestVerb="POST",
    )
    user = site.auth("User")
    log = tmp_path / "receivers.log"
    with (
        receiver_process(
            loads[0], {"prefill": {"Client Name": "one", "Fee": 1}}, tmp_path, 1.0, log
        ) as u1,
        receiver_process(loads[1], {"prefill": {"Client Name": "two"}}, tmp_path, 0.5, log) as u2,
        receiver_process(loads[2], {"prefill": {"Client Name": "three"}}, tmp_path, 0, log) as u3,
        receiver_process(lookup, DATA, tmp_path) as u4,
    ):
        for hook, url in zip([*loads, lookup], (u1, u2, u3, u4), strict=True):
            await point(client, site, hook, url)
        started = time.perf_counter()
        opened = await open_over_api(client, site, item)
        elapsed = time.perf_counter() - started
        assert opened["warnings"] == []
        assert values_of(opened) == {"Client Name": "three", "Fee": 1}
        assert elapsed >= 1.0, elapsed  # the step waited for the slowest receiver
        # Concurrent, shown by order rather than by a clock a busy machine can stretch: all
        # three calls reached their receivers before either delayed one replied. Called one
        # after another, some call would start only after a delayed receiver's reply.
        lines = log.read_text(encoding="utf-8").splitlines()
        first_delayed_reply = next(
            n for n, line in enumerate(lines) if "->" in line and "'three'" not in line
        )
        received = [line for line in lines[:first_delayed_reply] if line.endswith(" received")]
        assert len(received) == 3, lines
        typed = await client.put(  # the user types a customer number
            f"/api/v1/interviews/{opened['id']}/answers",
            json={"Customer Number": "C-42"},
            headers=user,
        )
        assert typed.status_code == 200, typed.text
        fired = await client.post(
            f"/api/v1/interviews/{opened['id']}/events/Look up client", headers=user
        )
    assert fired.status_code == 200, fired.text
    assert fired.json()["warnings"] == []
    values = values_of(fired.json())
    assert values["Client Address"] == "9 Low Road"
    assert values["Client Name"] == "Omar Haddad"
    assert values["Customer Number"] == "C-42" and values["Fee"] == 1
    # The answers stay with the interview: reading it back gives the same.
    read = await client.get(f"/api/v1/interviews/{opened['id']}", headers=user)
    assert values_of(read.json()) == values
