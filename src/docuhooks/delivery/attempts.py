"""One attempt at a delivery: build the signed request, send it, decide what the answer
means. What it returns (`Finished`) is the outcome the recorder writes; nothing here writes
to the store, leases or schedules: that is the worker's (`delivery.worker`).

Everything that depends on time asks the injected :class:`Clock`, and the retry schedule's
jitter the injected `rng`, so tests drive the whole schedule with a FakeClock."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import structlog

from docuhooks import __version__, tracing
from docuhooks.core.clock import Clock
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest, WebhookTarget, build_request, redact_url
from docuhooks.core.tracecontext import TraceContext, child_traceparent
from docuhooks.delivery import attempt_log, metrics
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.delivery.outcome import Verdict, decide
from docuhooks.delivery.queries import Job
from docuhooks.delivery.recorder import Finished
from docuhooks.delivery.transport import DEFAULT_MAX_BODY, ErrorClass, TransportResult
from docuhooks.webhooks.matching import signing_target

__all__ = ["USER_AGENT", "Attempts"]

log = structlog.get_logger(__name__)

USER_AGENT = f"docuhooks/{__version__}"
#: Decrypted signing targets kept at most (one per webhook version in use).
_MAX_CACHED_TARGETS = 1000


class Attempts:
    """Makes attempts for one worker, keeping each webhook version's decrypted signing
    target between them."""

    def __init__(
        self,
        ctx: DeliveryContext,
        *,
        clock: Clock,
        rng: random.Random,
        schedule: RetrySchedule,
        probe_interval: timedelta,
    ) -> None:
        self.ctx = ctx
        self.clock = clock
        self.rng = rng
        self.schedule = schedule
        self.probe_interval = probe_interval
        self._targets: dict[tuple[Any, ...], WebhookTarget] = {}

    async def attempt(self, job: Job, *, claimed_in: TraceContext | None = None) -> Finished:
        """Send one delivery and decide what it means; the outcome is not written yet.
        `claimed_in` is the claim's span, which the attempt's span links to (traces on)."""
        webhook = job.webhook
        attempt = job.attempts + 1
        started_at = self.clock.now()
        request: OutboundRequest | None = None
        # The attempt continues the trace its event was written in; its span's id is the
        # parent id the receiver sees. Without spans, only a new span id is made.
        span = _attempt_span(job, claimed_in) if tracing.enabled() else None
        if span is not None and span.context is not None:
            traceparent, tracestate = span.context.traceparent, span.context.state
        else:
            traceparent, tracestate = child_traceparent(job.traceparent), job.tracestate or ""
        try:
            target = self._target(webhook, job.issuer, started_at)
            request = build_request(
                job.event,
                target,
                delivery_id=job.delivery_id,
                attempt=attempt,
                now=started_at,
                user_agent=USER_AGENT,
                traceparent=traceparent,
                tracestate=tracestate,
            )
        except Exception as exc:
            # A missing or undecryptable secret: nothing can go out, but the attempt is
            # recorded and retried like any other failure, so an admin sees why. It says
            # nothing of the destination (`sent=False`): it never counts toward its breaker.
            why = attempt_log.describe_error(exc)
            result = TransportResult.failure(
                ErrorClass.CONNECT, f"could not build the request: {why}", sent=False
            )
        else:
            result = await self.ctx.transport.send(
                request,
                timeout=float(webhook.timeout_seconds),
                verify_tls=not webhook.accept_untrusted_ssl,
                max_body=DEFAULT_MAX_BODY,
            )
        metrics.ATTEMPT_SECONDS.observe(result.duration_ms / 1000.0)
        finished_at = self.clock.now()
        decision = decide(
            result,
            attempts_made=attempt,
            schedule=self.schedule,
            rng=self.rng,
            now=finished_at,
            probe=job.probe,
            probe_interval=self.probe_interval,
        )
        _OUTCOMES[decision.verdict].inc()
        # Successes are counted by the metrics and kept in the attempt log; a line for each
        # would cost more CPU than signing it. Failures are rarer and what an operator reads.
        getattr(log, _LOG_LEVEL[decision.verdict])(
            "delivery.attempted",
            delivery_id=job.delivery_id,
            event_id=job.event.event_id,
            webhook_id=webhook.id,
            attempt=attempt,
            status=result.status,
            error_class=result.error_class,
            verdict=decision.verdict.value,
            trace_id=traceparent[3:35],
        )
        if span is not None:
            if span.recording:
                _describe_attempt(span, job, attempt, request, result, decision.verdict)
            span.end()
        return Finished(
            job=job,
            attempt=attempt,
            attempt_row=_attempt_row(job, attempt, started_at, request, result),
            result=result,
            decision=decision,
            now=finished_at,
            attempt_span=span,
        )

    def _target(self, webhook: Any, issuer: str, now: datetime) -> WebhookTarget:
        """The webhook's signing target, decrypted once per version of the webhook rather
        than once per delivery (decryption costs more than signing)."""
        previous_live = (
            webhook.previous_secret_expires_at is not None
            and webhook.previous_secret_expires_at > now
        )
        key = (
            webhook.id,
            webhook.url,
            webhook.request_verb,
            webhook.auth_method,
            webhook.secret_kid,
            webhook.secret_enc,
            webhook.previous_secret_enc if previous_live else None,
            webhook.access_token_enc,
            issuer,
        )
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_CACHED_TARGETS:
                self._targets.clear()
            target = self._targets[key] = signing_target(self.ctx, webhook, issuer, now)
        return target


def _attempt_span(job: Job, claimed_in: TraceContext | None) -> tracing.Span:
    return tracing.start_span(
        "docuhooks.delivery.attempt",
        parent=job.trace,
        kind=tracing.Kind.CLIENT,
        links=(claimed_in,) if claimed_in is not None else (),
        propagated=True,
    )


def _describe_attempt(
    span: tracing.Span,
    job: Job,
    attempt: int,
    request: OutboundRequest | None,
    result: TransportResult,
    verdict: Verdict,
) -> None:
    span.set_attribute("docuhooks.delivery.id", job.delivery_id)
    span.set_attribute("docuhooks.delivery.attempt", attempt)
    span.set_attribute("docuhooks.delivery.verdict", verdict.value)
    span.set_attribute("docuhooks.event.id", job.event.event_id)
    span.set_attribute("docuhooks.event.type", job.event.event_type)
    span.set_attribute("docuhooks.webhook.id", job.webhook.id)
    if request is not None:
        span.set_attribute("http.request.method", request.method)
        span.set_attribute("url.full", redact_url(request.url))
    if result.status is not None:
        span.set_attribute("http.response.status_code", result.status)
    if result.error_class is not None:
        span.set_attribute("error.type", result.error_class.value)
        span.fail(result.error or result.error_class.value)
    elif verdict is not Verdict.SUCCEEDED:
        span.fail(f"the receiver answered {result.status}")


def _attempt_row(
    job: Job,
    attempt: int,
    started_at: datetime,
    request: OutboundRequest | None,
    result: TransportResult,
) -> dict[str, Any]:
    """The attempt log entry (`delivery.attempt_log`): secrets and tokens redacted, body
    capped. A request that could not be built logs the webhook's verb and URL."""
    webhook = job.webhook
    return attempt_log.attempt_row(
        delivery_id=job.delivery_id,
        webhook_id=webhook.id,
        site_id=webhook.site_id,
        attempt_number=attempt,
        started_at=started_at,
        method=request.method if request else webhook.request_verb,
        url=request.url if request else webhook.url,
        request_headers=request.headers if request else None,
        result=result,
        error_class=result.error_class,
        error=result.error,
    )


#: Each outcome's counter, looked up once (`labels()` takes a lock and a dict lookup per call).
_OUTCOMES = {verdict: metrics.DELIVERIES.labels(verdict.value) for verdict in Verdict}

_LOG_LEVEL: dict[Verdict, str] = {
    Verdict.SUCCEEDED: "debug",
    Verdict.RETRYING: "info",
    Verdict.PROBE_FAILED: "info",
    Verdict.FAILED: "warning",
    Verdict.GONE: "warning",
}
