"""The per-site limit on interactive calls (`delivery.site_slots`): one site calling receivers
that never answer cannot take the interactive pool from the others.

A call past its site's limit waits for one of its site's calls to finish, within its own
timeout; when none finishes in time it fails as `timeout` naming the limit. Everything is
shown by order (who held what when another call went through), never by how long it took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import httpx
import pytest
from aiohttp import web
from tests.delivery.isolation_support import eventually
from tests.interview_hooks.hooks_support import (
    answer_json,
    hook_over_api,
    open_over_api,
    serve,
    values_of,
    work_item_over_api,
)
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.site_slots import SiteLimitReached, SiteSlots
from docuhooks.delivery.transport import ErrorClass, MockTransport, TransportResult

API = "/api/v1"
LIMIT = "interactive call limit"


def request() -> OutboundRequest:
    return OutboundRequest(method="POST", url="http://receiver.test/hook", headers={}, body=b"{}")


# --- the slots alone -----------------------------------------------------------------------


async def test_a_site_at_its_limit_waits_in_turn_and_other_sites_do_not() -> None:
    slots = SiteSlots(2)
    order: list[str] = []
    release = {name: asyncio.Event() for name in ("a1", "a2", "a3", "a4", "b1")}

    async def call(site: str, name: str) -> None:
        async with slots.slot(site, 60):
            order.append(f"{name} in")
            await release[name].wait()

    tasks = [asyncio.create_task(call("A", name)) for name in ("a1", "a2", "a3", "a4")]
    await eventually(lambda: slots.waiting("A") == 2, 10, "a3 and a4 to wait")
    assert order == ["a1 in", "a2 in"] and slots.in_flight("A") == 2
    b1 = asyncio.create_task(call("B", "b1"))
    await eventually(lambda: "b1 in" in order, 10, "site B's call to start")
    release["b1"].set()
    await b1
    release["a2"].set()
    await eventually(lambda: len(order) == 4, 10, "a3 to take a2's slot")
    assert order[-1] == "a3 in" and slots.waiting("A") == 1 and slots.in_flight("A") == 2
    for name in ("a1", "a3", "a4"):
        release[name].set()
    await asyncio.gather(*tasks)
    assert order[-1] == "a4 in"
    assert len(slots) == 0, "an idle site holds no entry"


async def test_a_call_that_finds_no_slot_in_its_timeout_fails_naming_the_limit() -> None:
    slots = SiteSlots(1)
    transport = MockTransport(lambda _request: TransportResult.response(200))
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with slots.slot("A", 60):
            held.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await held.wait()
    result = await slots.send(transport, "A", request(), timeout=0.05)
    assert result.error_class is ErrorClass.TIMEOUT and result.status is None
    assert LIMIT in (result.error or "") and "(1 calls in flight)" in (result.error or "")
    assert transport.sent == [], "a call without a slot is not sent"
    # Another site is not limited by A's.
    assert (await slots.send(transport, "B", request(), timeout=5)).ok
    release.set()
    await holder
    # Once A's call finished, A's next one goes out.
    assert (await slots.send(transport, "A", request(), timeout=5)).ok
    assert len(transport.sent) == 2 and len(slots) == 0


async def test_a_cancelled_or_timed_out_waiter_leaks_no_slot() -> None:
    slots = SiteSlots(1)
    async with slots.slot("A", 60):
        waiter = asyncio.create_task(slots._acquire("A", 60))
        await eventually(lambda: slots.waiting("A") == 1, 10, "the waiter to queue")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        with pytest.raises(SiteLimitReached):
            async with slots.slot("A", 0.01):
                pass
        assert slots.waiting("A") == 0 and slots.in_flight("A") == 1
    assert len(slots) == 0
    async with slots.slot("A", 0.01):
        assert slots.in_flight("A") == 1


def test_the_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="interactive_calls_per_site"):
        SiteSlots(0)


# --- over the API, with real sockets -------------------------------------------------------

PREFILL = {"Client Name": "Jane Smith", "Fee": 1500}


async def test_a_site_holding_its_limit_leaves_another_sites_interview_its_call(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    """Site A fills its 50 slots with test sends to a receiver that answers only when let
    through; site B's interview still connects and gets its answers; A's 51st test send
    waits for one of A's calls and, when none finishes within its timeout, fails naming the
    limit without reaching the receiver; A's interview in that state gets a warning naming
    it; once one of A's calls finishes, A's next call goes through."""
    per_site = ctx.settings.interactive_calls_per_site
    assert per_site == 50
    # Enough connections per host for all of A's calls to one receiver: the site limit, not
    # the per-host limit, is what holds A here. The calls are test sends, more than a site
    # may make in a minute (`webhook_tests_per_minute`): that limit is not the one tested.
    ctx.settings = dataclasses.replace(
        ctx.settings,
        connections_per_host=100,
        interview_budget_seconds=2.0,
        webhook_tests_per_minute=0,
    )
    gate = asyncio.Semaphore(0)
    held = [0]

    async def blackhole(_: web.Request) -> web.Response:
        held[0] += 1
        await gate.acquire()
        return web.Response(status=200, body=b"{}", content_type="application/json")

    async def test_send(hook_id: str) -> dict[str, Any]:
        response = await client.post(f"{API}/webhooks/{hook_id}/test", headers=site.auth())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    sends: list[asyncio.Task[dict[str, Any]]] = []
    try:
        async with serve() as receiver_a, serve() as receiver_b:
            stuck = await hook_over_api(client, site, f"{receiver_a.base}/a", timeoutSeconds=60)
            receiver_a.route("/a", stuck.verifier(), blackhole)
            sends = [asyncio.create_task(test_send(stuck.id)) for _ in range(per_site)]
            await eventually(lambda: held[0] == per_site, 60, "site A to hold its limit")
            assert ctx.interactive_slots.in_flight(site.site_id) == per_site

            # Site B: its interview call connects and answers.
            item_b = await work_item_over_api(client, other_site)
            hook_b = await hook_over_api(client, other_site, f"{receiver_b.base}/load")
            receiver_b.route("/load", hook_b.verifier(), answer_json(PREFILL))
            interview = await open_over_api(client, other_site, item_b)
            assert interview["warnings"] == []
            assert values_of(interview) == PREFILL

            # Site A's 51st: waits its 1 s timeout for a slot, then fails naming the limit.
            short = await hook_over_api(client, site, f"{receiver_a.base}/a", timeoutSeconds=1)
            over = await test_send(short.id)
            assert over["status"] == "failed"
            assert over["call"]["errorClass"] == "timeout", over["call"]
            assert LIMIT in over["call"]["error"], over["call"]
            logged = (await client.get(over["link"], headers=site.auth())).json()
            assert json.dumps(logged).count(LIMIT) >= 1, "recorded like any failed call"
            # A's own interview step calls both hooks: neither finds a slot, the 60 s one
            # within the step's budget, the 1 s one within its timeout.
            item_a = await work_item_over_api(client, site)
            warnings = [
                w
                for w in (await open_over_api(client, site, item_a))["warnings"]
                if w["source"] == "webhook"
            ]
            assert {w["webhookId"] for w in warnings} == {stuck.id, short.id}, warnings
            for warning in warnings:
                assert warning["code"] == "timeout" and LIMIT in warning["message"], warning
            assert held[0] == per_site, "no call of A's past its limit reached a receiver"

            # One of A's calls finishes: A's next call, waiting for it, goes through.
            waiting = asyncio.create_task(test_send(stuck.id))
            await eventually(
                lambda: ctx.interactive_slots.waiting(site.site_id) == 1, 10, "A's call to wait"
            )
            assert held[0] == per_site
            gate.release()
            await eventually(lambda: held[0] == per_site + 1, 10, "A's next call to go out")
            for _ in range(per_site):
                gate.release()
            assert (await waiting)["status"] == "succeeded"
            done = await asyncio.gather(*sends)
            assert {body["status"] for body in done} == {"succeeded"}
            assert receiver_a.rejected == [] and receiver_b.rejected == []
    finally:
        for _ in range(per_site + 2):
            gate.release()
        for task in sends:
            task.cancel()
        await ctx.close_transports()
    assert len(ctx.interactive_slots) == 0


async def test_a_site_holding_its_limit_on_a_shared_host_leaves_another_sites_call_there(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    """One host serving both sites, each on its own path: site A holds all its slots with
    calls that its path never answers; site B's interview call to its own path on the same
    host still gets a connection (the interactive pool does not hold a host to
    `CONNECTIONS_PER_HOST`, fewer than a site's slots), and B's interview gets its answers."""
    per_site = ctx.settings.interactive_calls_per_site
    assert per_site > ctx.settings.connections_per_host  # the defaults, 50 and 20
    # More test sends than a site may make in a minute: that limit is not the one tested.
    ctx.settings = dataclasses.replace(
        ctx.settings, interview_budget_seconds=5.0, webhook_tests_per_minute=0
    )
    gate = asyncio.Semaphore(0)
    order: list[str] = []

    async def held(_: web.Request) -> web.Response:
        order.append("A")
        await gate.acquire()
        return web.Response(status=200, body=b"{}", content_type="application/json")

    async def test_send(hook_id: str) -> dict[str, Any]:
        response = await client.post(f"{API}/webhooks/{hook_id}/test", headers=site.auth())
        body: dict[str, Any] = response.json()
        return body

    sends: list[asyncio.Task[dict[str, Any]]] = []
    try:
        async with serve() as shared:
            stuck = await hook_over_api(client, site, f"{shared.base}/a", timeoutSeconds=60)
            shared.route("/a", stuck.verifier(), held)
            sends = [asyncio.create_task(test_send(stuck.id)) for _ in range(per_site)]
            await eventually(lambda: len(order) == per_site, 60, "A's calls to hold the host")
            item_b = await work_item_over_api(client, other_site)
            hook_b = await hook_over_api(client, other_site, f"{shared.base}/load")
            answer = answer_json(PREFILL)

            async def load(request: web.Request) -> web.StreamResponse:
                order.append("B")
                return await answer(request)

            shared.route("/load", hook_b.verifier(), load)
            interview = await open_over_api(client, other_site, item_b)
            assert order == ["A"] * per_site + ["B"]
            assert interview["warnings"] == []
            assert values_of(interview) == PREFILL
    finally:
        for _ in range(per_site):
            gate.release()
        for task in sends:
            task.cancel()
        await asyncio.gather(*sends, return_exceptions=True)
        await ctx.close_transports()
