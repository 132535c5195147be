"""The tracing seam: spans are plain trace contexts without OpenTelemetry, and
`tracing.configure` turns OpenTelemetry on from the standard `OTEL_*` variables only when
asked, and exports over OTLP/HTTP to a collector. Each configuration runs in a process of
its own: OpenTelemetry's global tracer provider can be set once per process."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from docuhooks import tracing
from docuhooks.core.tracecontext import TraceContext

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = TraceContext(TRACE_ID, "00f067aa0ba902b7", 1, "a=b")

# Runs `tracing.configure` with the environment it is given, makes a span, flushes, and
# prints what happened as JSON.
PROBE = """
import json, sys
for name in sys.argv[1:]:
    sys.modules[name] = None  # this package is "not installed"
from docuhooks import tracing
from docuhooks.settings import SettingsError
try:
    stop = tracing.configure()
except SettingsError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit(0)
with tracing.span("probe", propagated=True) as span:
    traceparent = span.context.traceparent
stop()
provider = None
if tracing.enabled():
    from opentelemetry import trace
    provider = trace.get_tracer_provider()
print(json.dumps({
    "enabled": tracing.enabled(),
    "traceparent": traceparent,
    "service": provider.resource.attributes.get("service.name") if provider else None,
}))
"""


def probe(env: dict[str, str], *missing: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *missing],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP trace collector on loopback: the export requests it received."""
    received: list[ExportTraceServiceRequest] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


class TestConfigure:
    def test_off_when_nothing_asks_for_traces(self) -> None:
        answer = probe({})
        assert answer["enabled"] is False
        assert str(answer["traceparent"]).startswith("00-")  # propagation works regardless

    def test_off_when_opentelemetry_is_not_installed(self) -> None:
        answer = probe({"OTEL_TRACES_EXPORTER": "console"}, "opentelemetry")
        assert answer["enabled"] is False

    def test_off_when_the_sdk_is_disabled(self) -> None:
        answer = probe({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})
        assert answer["enabled"] is False

    def test_on_with_no_exporter_and_the_default_service_name(self) -> None:
        answer = probe({"OTEL_TRACES_EXPORTER": "none"})
        assert answer == {**answer, "enabled": True, "service": "docuhooks"}

    def test_the_service_name_comes_from_the_environment(self) -> None:
        answer = probe({"OTEL_TRACES_EXPORTER": "none", "OTEL_SERVICE_NAME": "hooks-eu"})
        assert answer["service"] == "hooks-eu"

    def test_an_exporter_nobody_installed_is_a_clear_error(self) -> None:
        answer = probe({"OTEL_TRACES_EXPORTER": "jaeger_thrift"})
        assert "no installed package provides the trace exporter 'jaeger_thrift'" in str(
            answer["error"]
        )

    def test_otlp_over_grpc_says_what_to_install(self) -> None:
        # The `otel` extra brings the OTLP exporter over HTTP, not the one over gRPC.
        answer = probe({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
        assert "opentelemetry-exporter-otlp-proto-grpc" in str(answer["error"])

    def test_an_unknown_protocol_is_a_clear_error(self) -> None:
        answer = probe(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon", "OTEL_TRACES_EXPORTER": "otlp"}
        )
        assert "'carrier-pigeon' is not an OTLP protocol" in str(answer["error"])

    def test_spans_reach_an_otlp_collector_named_by_the_endpoint_alone(
        self, collector: tuple[str, list[ExportTraceServiceRequest]]
    ) -> None:
        endpoint, received = collector
        answer = probe(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "docuhooks-test"}
        )
        assert answer["enabled"] is True
        spans = [
            (resource, span)
            for request in received
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        assert [span.name for _, span in spans] == ["probe"]
        ((resource, span),) = spans
        assert span.trace_id.hex() == str(answer["traceparent"]).split("-")[1]
        assert span.span_id.hex() == str(answer["traceparent"]).split("-")[2]
        service = {a.key: a.value.string_value for a in resource.resource.attributes}
        assert service["service.name"] == "docuhooks-test"


class TestWithoutOpenTelemetry:
    """`tracing` is in-process here, with no provider: what the hot paths pay."""

    def test_a_propagated_span_is_a_child_of_the_current_context(self) -> None:
        assert not tracing.enabled()
        with tracing.use(CALLER):
            span = tracing.start_span("call", propagated=True)
        assert span.context is not None
        assert (span.context.trace_id, span.context.state) == (TRACE_ID, "a=b")
        assert span.context.span_id != CALLER.span_id
        assert not span.recording

    def test_without_a_current_context_a_propagated_span_starts_a_trace(self) -> None:
        first = tracing.start_span("call", propagated=True).context
        second = tracing.start_span("call", propagated=True).context
        assert first is not None and second is not None
        assert first.trace_id != second.trace_id

    def test_an_internal_span_costs_no_new_id(self) -> None:
        with tracing.use(CALLER):
            assert tracing.start_span("step").context == CALLER
        assert tracing.start_span("step").context is None

    def test_a_span_is_current_inside_its_block_only(self) -> None:
        assert tracing.current() is None
        with tracing.span("outer", parent=CALLER, propagated=True) as outer:
            assert tracing.current() == outer.context
            with tracing.span("inner") as inner:
                assert inner.context == outer.context
        assert tracing.current() is None


def test_a_failed_block_marks_its_span_and_still_ends_it() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        with pytest.raises(RuntimeError), tracing.span("broken", parent=CALLER):
            raise RuntimeError("no")
    finally:
        tracing.use_provider(None)
    (span,) = exporter.get_finished_spans()
    assert span.status.description == "RuntimeError: no"
    assert span.parent is not None and format(span.parent.span_id, "016x") == CALLER.span_id
    assert span.context is not None and span.context.trace_state.get("a") == "b"
