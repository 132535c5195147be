"""Traces: the one seam between docuhooks and OpenTelemetry.

Two things happen here, and only the second needs OpenTelemetry:

* **Propagation, always.** The API request's trace context (its `traceparent`, or a new
  trace) is the *current* one while the request runs; an event keeps the context that was
  current when it was written, a post-processing version the one of the request that
  finished its interview; and every call to a receiver sends a `traceparent` with that
  trace's id and a new parent span id. Without OpenTelemetry a span here is only a trace
  context: no clock is read and nothing is recorded, so the cost is a random span id per
  outbound call, which the old fresh `traceparent` cost too.
* **Spans, with the `otel` extra.** `pip install 'docuhooks[otel]'` and set the standard
  `OTEL_*` variables (`configure`): the API request, the interview step and each of its
  calls, the post-processing call, the outbox write, the worker's claim, each delivery
  attempt and its record are spans, exported by the SDK's batch processor. The id of the span
  of a call is the parent id in the `traceparent` it sends.

Code that traces calls `span` (a context manager that makes the span current) or
`start_span` (a span ended by hand, for one that outlives a block), and `current()` for the
context to keep. Nothing else in docuhooks imports OpenTelemetry.
"""

from __future__ import annotations

import enum
import importlib.metadata
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from docuhooks.core.tracecontext import SAMPLED, TraceContext, new_trace
from docuhooks.settings import SettingsError

__all__ = [
    "CURRENT",
    "Kind",
    "Span",
    "configure",
    "current",
    "enabled",
    "span",
    "start_span",
    "use",
    "use_provider",
]

log = structlog.get_logger(__name__)

#: The instrumentation scope our spans carry.
SCOPE = "docuhooks"

Attributes = Mapping[str, str | bool | int | float]


class Kind(enum.Enum):
    """What a span stands for, as OpenTelemetry's `SpanKind` says it."""

    INTERNAL = "INTERNAL"
    SERVER = "SERVER"
    CLIENT = "CLIENT"
    PRODUCER = "PRODUCER"
    CONSUMER = "CONSUMER"


class _Current:
    def __repr__(self) -> str:
        return "CURRENT"


#: `parent=CURRENT`: the span is a child of the current one (a new trace when there is none).
CURRENT: Any = _Current()


class Span:
    """A unit of work in a trace. This base class is what a span is without OpenTelemetry:
    its trace context (None for an untraced internal span) and nothing recorded."""

    __slots__ = ("context",)

    def __init__(self, context: TraceContext | None) -> None:
        self.context = context

    @property
    def recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: str | bool | int | float) -> None:
        """Record an attribute (nothing without OpenTelemetry)."""

    def rename(self, name: str) -> None:
        """Give the span a better name once it is known (a request's route)."""

    def fail(self, description: str) -> None:
        """Mark the span as failed, saying why."""

    def end(self) -> None:
        """Finish the span."""


_CURRENT: ContextVar[Span | None] = ContextVar("docuhooks_span", default=None)


def current() -> TraceContext | None:
    """The trace context of the work at hand, to keep with what it causes; None outside a
    traced request or call."""
    span = _CURRENT.get()
    return span.context if span is not None else None


def enabled() -> bool:
    """Whether spans are recorded (OpenTelemetry installed and configured)."""
    return _otel is not None


def start_span(
    name: str,
    *,
    parent: Span | TraceContext | None = CURRENT,
    kind: Kind = Kind.INTERNAL,
    attributes: Attributes | None = None,
    links: Sequence[TraceContext] = (),
    propagated: bool = False,
) -> Span:
    """Start a span, a child of `parent` (the current span by default; None: a new trace).
    The caller ends it. `propagated`: its id is sent on (a call to a receiver) or kept (an
    event), so it has a context of its own even without OpenTelemetry."""
    base = _CURRENT.get() if parent is CURRENT else parent
    otel = _otel
    if otel is None:
        context = base.context if isinstance(base, Span) else base
        if not propagated:
            return Span(context)
        return Span(context.child() if context is not None else new_trace())
    return otel.start(name, base, kind, attributes, links)


@contextmanager
def span(
    name: str,
    *,
    parent: Span | TraceContext | None = CURRENT,
    kind: Kind = Kind.INTERNAL,
    attributes: Attributes | None = None,
    links: Sequence[TraceContext] = (),
    propagated: bool = False,
) -> Iterator[Span]:
    """A span around a block, current inside it; an exception out of the block marks it
    failed. See `start_span`."""
    started = start_span(
        name,
        parent=parent,
        kind=kind,
        attributes=attributes,
        links=links,
        propagated=propagated,
    )
    try:
        with use(started):
            yield started
    except Exception as exc:
        started.fail(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        started.end()


@contextmanager
def use(current_span: Span | TraceContext | None) -> Iterator[Span]:
    """Make a span (or a kept trace context) the current one inside the block."""
    if not isinstance(current_span, Span):
        current_span = Span(current_span)
    token = _CURRENT.set(current_span)
    otel = _otel
    attached = otel.attach(current_span) if otel is not None else None
    try:
        yield current_span
    finally:
        if otel is not None and attached is not None:
            otel.detach(attached)
        _CURRENT.reset(token)


# --- OpenTelemetry ------------------------------------------------------------------------


class _OtelSpan(Span):
    __slots__ = ("_status", "otel")

    def __init__(self, otel_span: Any, status: Any) -> None:
        context = otel_span.get_span_context()
        state = context.trace_state.to_header() if context.trace_state else ""
        super().__init__(
            TraceContext(
                format(context.trace_id, "032x"),
                format(context.span_id, "016x"),
                int(context.trace_flags) & SAMPLED,
                state,
            )
        )
        self.otel = otel_span
        self._status = status

    @property
    def recording(self) -> bool:
        return bool(self.otel.is_recording())

    def set_attribute(self, key: str, value: str | bool | int | float) -> None:
        self.otel.set_attribute(key, value)

    def rename(self, name: str) -> None:
        self.otel.update_name(name)

    def fail(self, description: str) -> None:
        status, code = self._status
        self.otel.set_status(status(code.ERROR, description))

    def end(self) -> None:
        self.otel.end()


class _Otel:
    """OpenTelemetry's API, imported once, and our tracer."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, trace

        from docuhooks import __version__

        self._context = context
        self._trace = trace
        self._tracer = provider.get_tracer(SCOPE, __version__)
        self._kinds = {kind: getattr(trace.SpanKind, kind.value) for kind in Kind}
        self._status = (trace.Status, trace.StatusCode)

    def _remote(self, context: TraceContext) -> Any:
        trace = self._trace
        return trace.SpanContext(
            trace_id=int(context.trace_id, 16),
            span_id=int(context.span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(context.flags),
            trace_state=trace.TraceState.from_header([context.state]) if context.state else None,
        )

    def _parent(self, base: Span | TraceContext | None) -> Any:
        trace, empty = self._trace, self._context.Context()
        if isinstance(base, _OtelSpan):
            return trace.set_span_in_context(base.otel, empty)
        context = base.context if isinstance(base, Span) else base
        if context is None:
            return empty  # nothing to continue: a new trace
        return trace.set_span_in_context(trace.NonRecordingSpan(self._remote(context)), empty)

    def start(
        self,
        name: str,
        base: Span | TraceContext | None,
        kind: Kind,
        attributes: Attributes | None,
        links: Sequence[TraceContext],
    ) -> Span:
        otel_span = self._tracer.start_span(
            name,
            context=self._parent(base),
            kind=self._kinds[kind],
            attributes=dict(attributes) if attributes else None,
            links=[self._trace.Link(self._remote(link)) for link in links] or None,
        )
        return _OtelSpan(otel_span, self._status)

    def attach(self, current_span: Span) -> object:
        return self._context.attach(self._parent(current_span))

    def detach(self, token: Any) -> None:
        self._context.detach(token)


_otel: _Otel | None = None


def use_provider(provider: Any | None) -> None:
    """Record spans with this OpenTelemetry `TracerProvider` from now on (None: stop). What
    `configure` does with the provider it finds or builds; tests give one with an in-memory
    exporter, leaving OpenTelemetry's global provider alone (it can be set once only)."""
    global _otel
    _otel = _Otel(provider) if provider is not None else None


#: The variables that ask for traces to be exported.
_ASKING = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def configure(environ: Mapping[str, str] | None = None) -> Callable[[], None]:
    """Turn spans on for this process, from the standard `OTEL_*` environment variables;
    returns what flushes and stops the exporters at exit.

    Off (and free) when OpenTelemetry is not installed, when `OTEL_SDK_DISABLED=true`, or
    when nothing asks for traces. A tracer provider someone else set up (`opentelemetry-
    instrument`) is used as it is. Otherwise traces are on once `OTEL_TRACES_EXPORTER` or an
    OTLP endpoint is set: the SDK's `TracerProvider` (which reads the sampler and limits),
    `Resource.create()` (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`; the service is
    `docuhooks` unless they name one), and for each exporter `OTEL_TRACES_EXPORTER` names
    (default `otlp`; `none` for none) the exporter its package registers, which reads its
    own variables (`OTEL_EXPORTER_OTLP_*`), behind a batch processor (`OTEL_BSP_*`).
    Raises SettingsError for an exporter or protocol that is not available."""
    env = os.environ if environ is None else environ
    if _otel is not None:
        return _nothing
    asked = any(env.get(name, "").strip() for name in _ASKING)
    try:
        from opentelemetry import trace
    except ImportError:
        if asked:
            log.warning(
                "tracing.not_installed",
                hint="OTEL_* is set but OpenTelemetry is not installed: "
                "pip install 'docuhooks[otel]'",
            )
        return _nothing
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return _nothing
    provider = trace.get_tracer_provider()
    if not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        use_provider(provider)  # set up by its owner, who also shuts it down
        return _nothing
    if not asked:
        return _nothing
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "tracing.not_installed",
            hint="OTEL_* is set but the OpenTelemetry SDK is not installed: "
            "pip install 'docuhooks[otel]'",
        )
        return _nothing
    exporters = [exporter_class() for exporter_class in _exporter_classes(env)]
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "docuhooks"}))
    sdk_provider = TracerProvider(resource=resource)
    for exporter in exporters:
        sdk_provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(sdk_provider)
    use_provider(sdk_provider)
    log.info(
        "tracing.started",
        exporters=[type(exporter).__name__ for exporter in exporters],
        service=resource.attributes.get("service.name"),
    )
    return sdk_provider.shutdown


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The entry point names of the exporters `OTEL_TRACES_EXPORTER` asks for: `otlp` is
    the one its protocol (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
    default `http/protobuf`, the one the `otel` extra installs) names."""
    value = env.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    if value.lower() == "none":
        return []
    names = []
    for raw in value.split(","):
        name = raw.strip()
        if name == "otlp":
            protocol = (
                env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
                or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
                or "http/protobuf"
            )
            if protocol not in _OTLP_BY_PROTOCOL:
                raise SettingsError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not an OTLP protocol "
                    f"docuhooks can use ({', '.join(_OTLP_BY_PROTOCOL)})"
                )
            name = _OTLP_BY_PROTOCOL[protocol]
        if name:
            names.append(name)
    return names


def _exporter_classes(env: Mapping[str, str]) -> list[Any]:
    classes = []
    for name in exporter_names(env):
        found = importlib.metadata.entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            known = sorted(
                ep.name
                for ep in importlib.metadata.entry_points(group="opentelemetry_traces_exporter")
            )
            hint = (
                " (pip install opentelemetry-exporter-otlp-proto-grpc)"
                if name == "otlp_proto_grpc"
                else ""
            )
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER: no installed package provides the trace exporter "
                f"{name!r}{hint}; installed: {', '.join(known) or 'none'}"
            )
        classes.append(next(iter(found)).load())
    return classes


def _nothing() -> None:
    return None
