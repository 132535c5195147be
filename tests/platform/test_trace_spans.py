"""With OpenTelemetry on, the spans of an interview's whole life, recorded by the SDK's
in-memory exporter, on both stores: the API requests, the interview step and its call, the
post-processing call, the outbox write, the claim, the delivery attempt and its record; and
the parent id each receiver sees is the id of the span that called it, all in the trace of
the request that finished the interview.

OpenTelemetry is imported outright: where the `otel` extra is missing these tests fail, as
CI must, rather than skip."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from tests.platform.trace_support import (
    Receivers,
    run_interview,
    running_receivers,
    webhooks_for_every_step,
)
from tests.support import SiteUsers

from docuhooks import tracing
from docuhooks.context import AppContext
from docuhooks.delivery.worker import Worker

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


@pytest.fixture
async def receivers(ctx: AppContext) -> AsyncIterator[Receivers]:
    async with running_receivers() as running:
        yield running
    await ctx.close_transports()


def hex_span(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return format(context.span_id, "016x")


def hex_trace(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x")


def parent_of(span: ReadableSpan) -> str | None:
    return format(span.parent.span_id, "016x") if span.parent is not None else None


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_one_trace_from_the_finishing_request_to_the_notifications_receiver(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receivers: Receivers,
    exported: InMemorySpanExporter,
) -> None:
    item = await webhooks_for_every_step(client, site, receivers)
    await run_interview(
        client, site, item, finishing={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"}
    )
    assert len(await Worker(ctx).run_once()) == 1
    spans = exported.get_finished_spans()

    # The request that finished the interview continues its caller's trace.
    (finish,) = named(spans, "POST /api/v1/interviews/{interview_id}/finish")
    assert finish.kind is SpanKind.SERVER
    assert hex_trace(finish) == TRACE_ID and parent_of(finish) == CALLER_SPAN
    assert finish.parent is not None and finish.parent.is_remote
    assert finish.attributes is not None
    assert finish.attributes["http.response.status_code"] == 200

    # The post-processing call: a child of it, and the parent of what its receiver saw.
    (post_processing,) = named(spans, "docuhooks.post_processing.call")
    assert post_processing.kind is SpanKind.CLIENT
    assert parent_of(post_processing) == hex_span(finish)
    (pp_call,) = receivers.of("PostProcessingEvent")
    assert pp_call.trace.trace_id == TRACE_ID
    assert pp_call.trace.span_id == hex_span(post_processing)

    # Its reply completed the version: the completion event was written in its span…
    writes = {
        span.attributes["docuhooks.event.type"]: span  # type: ignore[index]
        for span in named(spans, "docuhooks.outbox.write")
    }
    notification_write = writes["NewWorkItemVersionComplete"]
    assert notification_write.kind is SpanKind.PRODUCER
    assert parent_of(notification_write) == hex_span(post_processing)

    # …and the worker's attempt continues from that write, linked to the claim it came in.
    (attempt,) = named(spans, "docuhooks.delivery.attempt")
    assert attempt.kind is SpanKind.CLIENT
    assert hex_trace(attempt) == TRACE_ID
    assert parent_of(attempt) == hex_span(notification_write)
    assert attempt.attributes is not None
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["docuhooks.delivery.verdict"] == "succeeded"
    assert attempt.status.status_code is not StatusCode.ERROR
    (notification,) = receivers.of("NewWorkItemVersionComplete")
    assert notification.trace.trace_id == TRACE_ID
    assert notification.trace.span_id == hex_span(attempt)

    (claim,) = named(spans, "docuhooks.delivery.claim")
    assert claim.parent is None and hex_trace(claim) != TRACE_ID  # a trace of its own
    assert claim.attributes is not None and claim.attributes["docuhooks.claim.deliveries"] == 1
    (link,) = attempt.links
    assert format(link.context.span_id, "016x") == hex_span(claim)

    (record,) = named(spans, "docuhooks.delivery.record")
    assert parent_of(record) == hex_span(attempt) and hex_trace(record) == TRACE_ID


async def test_an_interview_step_and_each_of_its_calls_are_spans(
    client: httpx.AsyncClient,
    site: SiteUsers,
    receivers: Receivers,
    exported: InMemorySpanExporter,
) -> None:
    item = await webhooks_for_every_step(client, site, receivers)
    opened = await client.post(
        f"/api/v1/workitems/{item['id']}/interviews", headers=site.auth("User")
    )
    assert opened.status_code == 201, opened.text
    spans = exported.get_finished_spans()

    (request,) = named(spans, "POST /api/v1/workitems/{work_item_id}/interviews")
    assert request.parent is None  # no traceparent came: a new trace
    (step,) = named(spans, "docuhooks.interview.step")
    assert parent_of(step) == hex_span(request)
    assert step.attributes is not None
    assert step.attributes["docuhooks.event.type"] == "InterviewLoadEvent"
    (call,) = named(spans, "docuhooks.interview.call")
    assert call.kind is SpanKind.CLIENT and parent_of(call) == hex_span(step)
    assert call.attributes is not None and call.attributes["http.response.status_code"] == 204
    (received,) = receivers.of("InterviewLoadEvent")
    assert received.trace.trace_id == hex_trace(request)
    assert received.trace.span_id == hex_span(call)
    assert named(spans, "docuhooks.outbox.write") == []  # nothing is queued by opening


async def test_probes_and_scrapes_make_no_spans(
    client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status_code == 200
    assert exported.get_finished_spans() == ()
    assert (await client.get("/api/v1/webhooks")).status_code == 401
    (unauthorised,) = exported.get_finished_spans()
    assert unauthorised.name == "GET /api/v1/webhooks"
