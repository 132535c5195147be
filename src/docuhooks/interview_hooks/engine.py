"""Run the interview webhooks of one step: call every matching webhook at once,
wait no longer than the budget, and overlay the answers in the webhooks' `order`.

The order of the overlay is fixed by matching (order, then creation) before any call leaves,
so the result never depends on which receiver answered first. Nothing a receiver does can
fail the step: each problem is a warning on the result and a failed attempt in the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import __version__, tracing
from docuhooks.answers import (
    AnswerLimitExceeded,
    AnswerLimits,
    AnswerSet,
    AnswerSetError,
    Totals,
    VariableDef,
    answers_size,
    check_overlay,
    load_template_variables,
    measure,
    off_loop,
)
from docuhooks.core.events import INTERVIEW_EVENTS, Event, EventType
from docuhooks.core.ids import uuid7
from docuhooks.core.signing import OutboundRequest, build_request
from docuhooks.core.tracecontext import TraceContext
from docuhooks.delivery.site_slots import SiteLimitReached
from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.identity.models import Principal
from docuhooks.interview_hooks import log
from docuhooks.interview_hooks.budget import remaining
from docuhooks.interview_hooks.interfaces import InterviewContext
from docuhooks.interview_hooks.replies import (
    INVALID_ANSWERS,
    Outcome,
    judge,
    judge_off_loop,
    over_limit,
)
from docuhooks.interview_hooks.warnings import Problem, webhook_warning
from docuhooks.webhooks import matching
from docuhooks.webhooks.targets import MatchedWebhooks, PreparedWebhook

logger = structlog.get_logger("docuhooks.interview_hooks")

USER_AGENT = f"docuhooks/{__version__}"


@dataclass(frozen=True)
class HookResult:
    """The interview's answers after the step, and one warning per problem, each in the
    interview response's warning shape (see `interview_hooks.warnings`, source `webhook`)."""

    answers: AnswerSet
    warnings: list[dict[str, Any]] = field(default_factory=list)
    #: Which webhook supplied each answer a reply set, by variable name (the last in the
    #: overlay order, when several did): `{"webhookId", "webhookName"}`.
    sources: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Call:
    webhook: PreparedWebhook
    delivery_id: str
    request: OutboundRequest | None
    build_error: str | None
    #: The call's span: its id is the parent id of the `traceparent` the call sends.
    span: tracing.Span


async def match_interview_hooks(
    ctx: InterviewContext,
    conn: AsyncConnection,
    *,
    site_id: str,
    event_type: EventType,
    work_group_id: str,
    template_id: str,
    interview_event_name: str | None = None,
) -> MatchedWebhooks:
    """The active webhooks of `event_type` that this work item's step reaches,
    ready to sign. Pass a transaction the caller holds anyway: it is read only when the
    process's match cache (`webhooks.targets`) has no fresh answer."""
    _check_event(event_type, interview_event_name)
    return await matching.interview_targets(
        ctx,
        conn,
        site_id=site_id,
        event_type=event_type,
        work_group_id=work_group_id,
        template_id=template_id,
        interview_event_name=interview_event_name,
    )


async def count_interview_event_hooks(
    conn: AsyncConnection,
    *,
    site_id: str,
    work_group_id: str,
    template_id: str,
    names: Iterable[str],
) -> dict[str, int]:
    """How many webhooks each of the interview event elements `names` would call for this
    work item (as `match_interview_hooks` would match them), read in one statement (none
    when there are no names)."""
    names = list(names)
    if not names:
        return {}
    counts = await matching.counts_by_event_name(
        conn, site_id=site_id, work_group_id=work_group_id, template_id=template_id
    )
    return {name: counts.get(name.strip(), 0) for name in names}


async def run_interview_hooks(
    ctx: InterviewContext,
    *,
    principal: Principal,
    event_type: EventType,
    interview_id: str,
    work_item: Any,
    version_id: str,
    template: Any,
    current_answers: AnswerSet,
    interview_event_name: str | None = None,
    matched: MatchedWebhooks | None = None,
) -> HookResult:
    """Call the matching webhooks of `event_type` and overlay their answers on `current_answers`.

    `work_item` and `template` are rows or mappings (`id`, `name`, `work_group_id`,
    `template_id`; `id`, `name`, `sha256`, `variables`). Pass `matched` (from
    `match_interview_hooks` in a transaction the caller holds anyway) to save a read. The
    delivery log is handed to the log writer (`log.submit`), written after the reply when the
    app runs it.
    """
    _check_event(event_type, interview_event_name)
    work_group_id = str(_field(work_item, "work_group_id"))
    template_id = str(_field(template, "id"))
    if matched is None:
        async with ctx.db.read() as reader:
            matched = await match_interview_hooks(
                ctx,
                reader,
                site_id=principal.site_id,
                event_type=event_type,
                work_group_id=work_group_id,
                template_id=template_id,
                interview_event_name=interview_event_name,
            )
    if not matched.webhooks:
        return HookResult(current_answers, [])
    with tracing.span(
        "docuhooks.interview.step",
        attributes={
            "docuhooks.event.type": str(event_type),
            "docuhooks.interview.id": interview_id,
            "docuhooks.webhooks": len(matched.webhooks),
        },
    ) as step_span:
        return await _run_step(
            ctx,
            principal,
            event_type,
            interview_event_name,
            interview_id=interview_id,
            work_item=work_item,
            version_id=version_id,
            template=template,
            current_answers=current_answers,
            matched=matched,
            trace=step_span.context,
        )


async def _run_step(
    ctx: InterviewContext,
    principal: Principal,
    event_type: EventType,
    interview_event_name: str | None,
    *,
    interview_id: str,
    work_item: Any,
    version_id: str,
    template: Any,
    current_answers: AnswerSet,
    matched: MatchedWebhooks,
    trace: TraceContext | None,
) -> HookResult:
    """One step's calls, in its span: call, judge, overlay in order, log."""
    created = ctx.now()
    site_id = principal.site_id
    # The calls' spans start here, in the step's context; the event and the signed requests
    # are built in the parsing threads, under the site's slot, when the event carries a
    # large interview's answers (a CustomInterviewEvent): encoding them, and signing them
    # once per webhook, would hold the loop every site's requests are served on.
    spans = [_call_span(webhook) for webhook in matched.webhooks]
    size = answers_size(current_answers) if event_type is EventType.CUSTOM_INTERVIEW_EVENT else 0
    event, calls = await off_loop(
        size,
        ctx.settings.answer_parse_threads,
        _event_and_calls,
        _step_event(
            principal,
            event_type,
            interview_event_name,
            interview_id=interview_id,
            work_item=work_item,
            version_id=version_id,
            template=template,
            created=created,
        ),
        current_answers if event_type is EventType.CUSTOM_INTERVIEW_EVENT else None,
        matched,
        spans,
        created,
        site=site_id,
    )
    variables, variable_problem = await _variables(ctx, template, site_id)
    budget = ctx.settings.interview_budget_seconds
    tasks, queued, waited_ms = await _call_within(ctx, calls, variables, budget, site_id)
    step = _Step(
        current_answers,
        variable_problem,
        created,
        AnswerLimits.from_settings(ctx.settings),
        site_id,
    )
    for call in calls:
        task = tasks.get(call.delivery_id)
        result, outcome = _result_of(task, call, budget, waited_ms, variables, ctx, queued)
        await step.take(ctx, call, result, outcome, variables, _cut_by_budget(task, call, queued))
    await log.submit(
        ctx,
        log.StepLog(
            event=event,
            site_id=principal.site_id,
            work_item_id=str(_field(work_item, "id")),
            calls=step.records,
            created_at=created,
            finished_at=created + timedelta(milliseconds=waited_ms),
            trace=trace,
        ),
    )
    return HookResult(step.answers, step.warnings, step.sources)


def _step_event(
    principal: Principal,
    event_type: EventType,
    interview_event_name: str | None,
    *,
    interview_id: str,
    work_item: Any,
    version_id: str,
    template: Any,
    created: datetime,
) -> Event:
    """The event every webhook of the step receives, but for the answers so far that a
    CustomInterviewEvent carries (`_event_and_calls` adds them)."""
    data: dict[str, Any] = {
        "interviewId": interview_id,
        "workItemId": str(_field(work_item, "id")),
        "workItemName": _field(work_item, "name"),
        "workItemVersionId": version_id,
        "workGroupId": str(_field(work_item, "work_group_id")),
        "templateId": str(_field(template, "id")),
        "templateName": _field(template, "name"),
    }
    if event_type is EventType.CUSTOM_INTERVIEW_EVENT:
        data["interviewEventName"] = (interview_event_name or "").strip()
    return Event(
        event_type=event_type,
        site_id=principal.site_id,
        created_by=principal.as_actor(),
        data=data,
        created_date=created,
    )


def _event_and_calls(
    event: Event,
    answers: AnswerSet | None,
    matched: MatchedWebhooks,
    spans: list[tuple[str, tracing.Span]],
    created: datetime,
) -> tuple[dict[str, Any], list[_Call]]:
    """The step's event object (with `answers`, for a CustomInterviewEvent) and each
    webhook's signed call, in the calls' spans: no context of the loop's needed, so it may
    run in a parsing thread."""
    if answers is not None:
        event.data["answers"] = answers.to_json()
    body = event.to_dict()
    calls = [
        _prepare(webhook, body, matched.issuer, created, delivery_id, span)
        for webhook, (delivery_id, span) in zip(matched.webhooks, spans, strict=True)
    ]
    return body, calls


async def _call_within(
    ctx: InterviewContext,
    calls: list[_Call],
    variables: Mapping[str, VariableDef] | None,
    budget: float,
    site_id: str,
) -> tuple[dict[str, asyncio.Task[tuple[TransportResult, Outcome]]], set[str], float]:
    """Call every callable webhook at once and wait for their replies within the step's
    budget; those still out then are cancelled. Returns the tasks, the calls still waiting
    for one of the site's interactive slots, and the time waited (ms)."""
    started = time.perf_counter()
    # Each reply is judged as it arrives, so when the slowest is in only its own is left.
    # `queued`: the calls still waiting for one of the site's interactive slots.
    queued: set[str] = set()
    tasks = {
        call.delivery_id: asyncio.create_task(
            _send_and_judge(ctx, call, variables, site_id, queued)
        )
        for call in calls
        if call.request is not None
    }
    if tasks:
        await asyncio.wait(tasks.values(), timeout=remaining(budget))
    for task in tasks.values():
        if not task.done():
            task.cancel()
    return tasks, queued, (time.perf_counter() - started) * 1000.0


class _Step:
    """The replies of one step taken in webhook order: each overlays the answers so far,
    within the answer limits, and leaves its warnings and its delivery-log record."""

    def __init__(
        self,
        answers: AnswerSet,
        variable_problem: Problem | None,
        created: datetime,
        limits: AnswerLimits,
        site_id: str,
    ) -> None:
        self.answers = answers
        self._site_id = site_id
        self._limits = limits
        self.warnings: list[dict[str, Any]] = []
        self.records: list[log.CallRecord] = []
        self.sources: dict[str, dict[str, str]] = {}
        self._totals: Totals | None = None
        self._variable_problem = variable_problem
        self._created = created

    async def take(
        self,
        ctx: InterviewContext,
        call: _Call,
        result: TransportResult,
        outcome: Outcome,
        variables: Mapping[str, VariableDef] | None,
        budget_cut: bool = False,
    ) -> None:
        # Unreadable variables mean nothing a receiver sends can be checked: none of it applies.
        replied = outcome.answers
        if replied and variables is not None:
            outcome = await self._overlay(ctx, replied, outcome)
            if outcome.answers is replied:  # overlaid (not refused as over a limit)
                source = {"webhookId": call.webhook.id, "webhookName": call.webhook.name}
                self.sources.update((name, source) for name in replied)
        problems = list(outcome.problems)
        if self._variable_problem and outcome.succeeded and result.status == 200:
            problems.append(self._variable_problem)
        self.warnings.extend(
            webhook_warning(call.webhook.id, call.webhook.name, problem) for problem in problems
        )
        self.records.append(
            log.CallRecord(
                call.delivery_id,
                call.webhook.id,
                self._created,
                call.request,
                result,
                outcome,
                budget_cut,
            )
        )
        _end_call_span(call.span, result, outcome)

    async def _overlay(
        self, ctx: InterviewContext, replied: AnswerSet, outcome: Outcome
    ) -> Outcome:
        """Lay `replied` over the answers so far; a reply that would take them past the
        limits is a failed call that contributes nothing."""
        if self._totals is None:
            # Measured once a step, in the parsing threads when the interview is large.
            self._totals = await off_loop(
                answers_size(self.answers),
                ctx.settings.answer_parse_threads,
                measure,
                self.answers,
                site=self._site_id,
            )
        try:
            # Each reply is within the limits alone; together with the answers before it it
            # must be too, or it is a failed call that contributes nothing.
            self._totals = check_overlay(self.answers, self._totals, replied, self._limits)
        except AnswerLimitExceeded as exc:
            return over_limit(exc)
        self.answers = self.answers.overlay(replied)
        return outcome


def _end_call_span(span: tracing.Span, result: TransportResult, outcome: Outcome) -> None:
    if span.recording:
        if result.status is not None:
            span.set_attribute("http.response.status_code", result.status)
        if not outcome.succeeded:
            if outcome.error_class is not None:
                span.set_attribute("error.type", str(outcome.error_class))
            span.fail(outcome.error or "the call failed")
    span.end()


def _check_event(event_type: EventType, interview_event_name: str | None) -> None:
    if event_type not in INTERVIEW_EVENTS:
        raise ValueError(f"{event_type} is not an interview event")
    if event_type is EventType.CUSTOM_INTERVIEW_EVENT and not (interview_event_name or "").strip():
        raise ValueError("a CustomInterviewEvent needs the interview event name")


def _call_span(webhook: PreparedWebhook) -> tuple[str, tracing.Span]:
    """A new call's delivery id and span, a child of the step's (in its context)."""
    delivery_id = uuid7()
    span = tracing.start_span(
        "docuhooks.interview.call",
        kind=tracing.Kind.CLIENT,
        attributes={"docuhooks.webhook.id": webhook.id, "docuhooks.delivery.id": delivery_id},
        propagated=True,
    )
    return delivery_id, span


def _prepare(
    webhook: PreparedWebhook,
    event: Mapping[str, Any],
    issuer: str,
    now: datetime,
    delivery_id: str,
    span: tracing.Span,
) -> _Call:
    assert span.context is not None  # a propagated span always has one
    try:
        target = webhook.target(issuer, now)
        request = build_request(
            event,
            target,
            delivery_id=delivery_id,
            attempt=1,
            now=now,
            user_agent=USER_AGENT,
            traceparent=span.context.traceparent,
            tracestate=span.context.state,
        )
    except Exception as exc:
        # A webhook that cannot be signed (its secret unreadable, say) fails alone.
        logger.warning("interview webhook not callable", webhook_id=webhook.id, error=str(exc))
        return _Call(webhook, delivery_id, None, f"the request could not be built: {exc}", span)
    return _Call(webhook, delivery_id, request, None, span)


async def _send(
    ctx: InterviewContext, call: _Call, site_id: str, queued: set[str]
) -> TransportResult:
    """Send once one of the site's interactive slots is free; the wait counts against the
    webhook's timeout (and the step's budget, which cancels the call: `queued` tells it
    that the call was still waiting for a slot)."""
    assert call.request is not None
    timeout = float(call.webhook.timeout_seconds)
    started = time.perf_counter()
    queued.add(call.delivery_id)
    try:
        async with ctx.interactive_slots.slot(site_id, timeout):
            queued.discard(call.delivery_id)
            return await ctx.interactive_transport.send(
                call.request,
                timeout=max(0.001, timeout - (time.perf_counter() - started)),
                verify_tls=not call.webhook.accept_untrusted_ssl,
                max_body=ctx.settings.max_answer_set_bytes,
            )
    except SiteLimitReached:
        return TransportResult.failure(
            ErrorClass.TIMEOUT,
            ctx.interactive_slots.limit_message(timeout),
            duration_ms=(time.perf_counter() - started) * 1000.0,
        )


async def _send_and_judge(
    ctx: InterviewContext,
    call: _Call,
    variables: Mapping[str, VariableDef] | None,
    site_id: str,
    queued: set[str],
) -> tuple[TransportResult, Outcome]:
    result = await _send(ctx, call, site_id, queued)
    limits = AnswerLimits.from_settings(ctx.settings)
    return result, await judge_off_loop(
        result, variables, limits, ctx.settings.answer_parse_threads, site=site_id
    )


def _result_of(
    task: asyncio.Task[tuple[TransportResult, Outcome]] | None,
    call: _Call,
    budget: float,
    waited_ms: float,
    variables: Mapping[str, VariableDef] | None,
    ctx: InterviewContext,
    queued: set[str],
) -> tuple[TransportResult, Outcome]:
    """The call's reply and what it means; a call without one gets a failure saying why."""
    if task is None:
        result = TransportResult.failure(ErrorClass.CONNECT, call.build_error or "not sent")
    elif call.delivery_id in queued:
        # Cancelled at the end of the budget before one of the site's slots freed.
        result = TransportResult.failure(
            ErrorClass.TIMEOUT,
            ctx.interactive_slots.limit_message(budget),
            duration_ms=waited_ms,
        )
    elif _cut_by_budget(task, call, queued):
        result = TransportResult.failure(
            ErrorClass.TIMEOUT,
            f"no reply within the {budget:g} s budget of the interview step",
            duration_ms=waited_ms,
        )
    elif (exc := task.exception()) is not None:
        # Transports report network outcomes as results; an exception is a bug, not the
        # receiver's doing, but the person waiting still gets the interview.
        logger.error("interview webhook transport raised", webhook_id=call.webhook.id, exc_info=exc)
        result = TransportResult.failure(ErrorClass.CONNECT, f"internal error: {exc!r}")
    else:
        return task.result()
    return result, judge(result, variables)


def _cut_by_budget(
    task: asyncio.Task[tuple[TransportResult, Outcome]] | None, call: _Call, queued: set[str]
) -> bool:
    """Whether the step's budget ended the call: still waiting for a slot, or cancelled
    while out."""
    if task is None:
        return False
    return call.delivery_id in queued or not task.done() or task.cancelled()


async def _variables(
    ctx: InterviewContext, template: Any, site_id: str
) -> tuple[Mapping[str, VariableDef] | None, Problem | None]:
    """The template's variables by name, or None and why when they cannot be read (off the
    event loop when there are many: `load_template_variables`).

    `variables` is the stored definitions, or the variable map itself (read-only, as
    `template_variables` returns it) when the caller already has it."""
    try:
        variables = _field(template, "variables")
        if isinstance(variables, MappingProxyType):
            return variables, None
        return await load_template_variables(
            str(_field(template, "id")),
            str(_field(template, "sha256")),
            variables,
            ctx.settings.answer_parse_threads,
            site=site_id,
        ), None
    except (AnswerSetError, KeyError, TypeError, AttributeError) as exc:
        logger.error(
            "template variables unreadable", template_id=_field(template, "id"), error=str(exc)
        )
        return None, Problem(
            INVALID_ANSWERS, f"the template's variable definitions cannot be read ({exc})"
        )


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj[name]
    mapping = getattr(obj, "_mapping", None)
    if mapping is not None:
        return mapping[name]
    return getattr(obj, name)
