"""One trace from the request that finishes an interview to every receiver it reaches, on
both stores and without OpenTelemetry: the post-processing call made after the finish, and
the NewWorkItemVersionComplete delivery a worker sends once post-processing completed the
version, carry the finishing request's trace id, each with a parent id of its own; without
an incoming `traceparent` (or with a broken one) a new trace starts and runs through all of
them just the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
import sqlalchemy as sa
import structlog
from tests.platform.trace_support import (
    Receivers,
    run_interview,
    running_receivers,
    webhooks_for_every_step,
)
from tests.support import SiteUsers

from docuhooks import tracing
from docuhooks.context import AppContext
from docuhooks.core.tracecontext import parse_traceparent
from docuhooks.delivery.worker import Worker
from docuhooks.store.schema import events

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
NOTIFICATION = "NewWorkItemVersionComplete"


@pytest.fixture
async def receivers(ctx: AppContext) -> AsyncIterator[Receivers]:
    assert not tracing.enabled(), "these tests are about propagation without OpenTelemetry"
    async with running_receivers() as running:
        yield running
    await ctx.close_transports()


async def deliver(ctx: AppContext) -> None:
    worker = Worker(ctx)
    assert len(await worker.run_once()) == 1


async def test_the_finishing_requests_trace_reaches_post_processing_and_the_notification(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receivers: Receivers
) -> None:
    item = await webhooks_for_every_step(client, site, receivers)
    opening = "0af7651916cd43dd8448eb211c80319c"
    await run_interview(
        client,
        site,
        item,
        opening={"traceparent": f"00-{opening}-b7ad6b7169203331-01"},
        finishing={
            "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01",
            "tracestate": "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE",
        },
    )
    await deliver(ctx)

    (opened,) = receivers.of("InterviewLoadEvent")
    assert opened.trace.trace_id == opening
    (post_processing,) = receivers.of("PostProcessingEvent")
    (notification,) = receivers.of(NOTIFICATION)
    for call in (post_processing, notification):
        assert call.trace.trace_id == TRACE_ID
        assert call.trace.sampled
        assert call.tracestate == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    # Each call is a span of its own: its id is new, never the caller's.
    span_ids = {call.trace.span_id for call in receivers.calls}
    assert len(span_ids) == 3 and CALLER_SPAN not in span_ids

    async with ctx.db.read() as conn:
        kept = dict(
            (await conn.execute(sa.select(events.c.event_type, events.c.traceparent))).all()
        )
    assert {kind: parse_traceparent(value).trace_id for kind, value in kept.items()} == {  # type: ignore[union-attr]
        "InterviewLoadEvent": opening,
        "PostProcessingEvent": TRACE_ID,
        NOTIFICATION: TRACE_ID,
    }


async def test_an_unsampled_caller_stays_unsampled(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receivers: Receivers
) -> None:
    item = await webhooks_for_every_step(client, site, receivers)
    await run_interview(
        client, site, item, finishing={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-00"}
    )
    with structlog.testing.capture_logs() as logged:
        await deliver(ctx)
    (attempted,) = [line for line in logged if line["event"] == "delivery.attempted"]
    assert attempted["trace_id"] == TRACE_ID  # logs and traces meet on it
    (notification,) = receivers.of(NOTIFICATION)
    assert notification.trace.trace_id == TRACE_ID and not notification.trace.sampled
    assert notification.tracestate is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": f"00-{TRACE_ID.upper()}-{CALLER_SPAN}-01"},
        {"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"},
        {"traceparent": f"ff-{TRACE_ID}-{CALLER_SPAN}-01"},
        {"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01-extra", "tracestate": "a=b"},
        {"traceparent": "garbage\r\nX-Injected: 1", "tracestate": "a=b"},
    ],
    ids=["none", "upper-case", "zero-trace", "version-ff", "00-with-more", "garbage"],
)
async def test_without_a_valid_traceparent_a_new_trace_runs_through_every_call(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receivers: Receivers,
    headers: dict[str, str],
) -> None:
    item = await webhooks_for_every_step(client, site, receivers)
    await run_interview(client, site, item, finishing=headers)
    await deliver(ctx)
    (post_processing,) = receivers.of("PostProcessingEvent")
    (notification,) = receivers.of(NOTIFICATION)
    started = post_processing.trace.trace_id
    assert started != TRACE_ID
    assert notification.trace.trace_id == started
    assert post_processing.trace.span_id != notification.trace.span_id
    # Nothing of what the caller sent is passed on.
    assert post_processing.tracestate is None and notification.tracestate is None
    # A new trace each time: the interview's opening (no traceparent) had another one.
    (opened,) = receivers.of("InterviewLoadEvent")
    assert opened.trace.trace_id != started


async def test_a_callback_completion_continues_the_finishing_requests_trace(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receivers: Receivers
) -> None:
    """The receiver answers 202 and later calls `completeUrl` in a trace of its own: the
    notification is still in the trace of the request that finished the interview."""
    receivers.post_processing_status = 202
    item = await webhooks_for_every_step(client, site, receivers)
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{item['id']}/interviews", headers=user)
    assert opened.status_code == 201, opened.text
    finished = await client.post(
        f"/api/v1/interviews/{opened.json()['id']}/finish",
        headers={**user, "traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
    )
    assert finished.status_code == 200 and finished.json()["status"] == "PostProcessing"
    (post_processing,) = receivers.of("PostProcessingEvent")
    assert post_processing.trace.trace_id == TRACE_ID
    complete_url = urlsplit(post_processing.event["data"]["completeUrl"])
    completed = await client.put(
        f"{complete_url.path}?{complete_url.query}",
        headers={**site.auth(), "traceparent": f"00-{'1' * 32}-{CALLER_SPAN}-01"},
    )
    assert completed.status_code == 200, completed.text
    await deliver(ctx)
    (notification,) = receivers.of(NOTIFICATION)
    assert notification.trace.trace_id == TRACE_ID
