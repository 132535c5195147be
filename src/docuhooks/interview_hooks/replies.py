"""What one receiver's reply to an interview event means. Pure: a transport
result and the template's variables in, the answers that apply and the warnings out.

A person is waiting, so nothing here raises for what a receiver does: every way a reply can
be wrong becomes a warning naming the webhook and the reason, and contributes no answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from docuhooks.answers import (
    DEFAULT_LIMITS,
    AnswerLimitExceeded,
    AnswerLimits,
    AnswerSet,
    AnswerSetError,
    VariableDef,
    off_loop,
    parse_answer_payload,
)
from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.interview_hooks.warnings import Problem

#: Largest reply read from a receiver by default (`max_answer_set_bytes`); anything longer
#: is refused, not cut and parsed.
MAX_REPLY_BYTES = DEFAULT_LIMITS.document_bytes

#: Warning code for a 200 whose answer set is over one of the answer-set limits.
ANSWER_LIMIT = "answer_limit_exceeded"

#: Warning code for a 200 whose body is not an answer set at all.
INVALID_ANSWERS = "invalid_answers"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call, judged: its answers (None contributes nothing) and what went wrong.

    `error_class`/`error` are what the delivery log records; `problems` are what the
    interview response shows, each without the webhook's identity (the engine adds it).
    """

    answers: AnswerSet | None
    problems: tuple[Problem, ...]
    error_class: ErrorClass | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_class is None


async def judge_off_loop(
    result: TransportResult,
    variables: Mapping[str, VariableDef] | None,
    limits: AnswerLimits,
    threads: int,
    *,
    site: str,
) -> Outcome:
    """`judge`, with a large reply read in the answer-parsing threads (`answers.offload`),
    holding one of `site`'s slots of them: a site whose receivers answer many large answer
    sets queues them in its own line, not every other site behind them."""
    return await off_loop(
        len(result.body or b""), threads, judge, result, variables, limits, site=site
    )


def judge(
    result: TransportResult,
    variables: Mapping[str, VariableDef] | None,
    limits: AnswerLimits = DEFAULT_LIMITS,
) -> Outcome:
    """The meaning of `result` as a reply to an InterviewLoadEvent or CustomInterviewEvent.

    A reply over an answer-set limit is a failed call that contributes nothing, with a
    warning naming the limit (`answer_limit_exceeded`)."""
    if result.status is None or result.error_class is not None:
        return _failed(result.error_class or ErrorClass.CONNECT, result.error or "no response")
    if result.status == 204:
        return Outcome(AnswerSet(), ())
    if result.status != 200:
        return _failed(
            ErrorClass.INVALID_RESPONSE,
            f"HTTP {result.status}: an interview webhook answers 200 with an answer set, "
            "or 204 for none",
        )
    if result.body_truncated:
        return _failed(
            ErrorClass.INVALID_RESPONSE,
            f"the reply is larger than {limits.document_bytes} bytes, the most read "
            "(max_answer_set_bytes); ignored",
        )
    content_type = _header(result.headers, "content-type")
    if not result.body.strip():
        # An empty 200 is how many frameworks say "nothing": treat it like 204.
        return Outcome(AnswerSet(), ())
    if content_type is None:
        return _invalid(
            "the reply has no Content-Type; answer sets are application/json, "
            "application/xml or text/xml"
        )
    try:
        parsed = parse_answer_payload(result.body, content_type, variables, limits)
    except AnswerLimitExceeded as exc:
        return over_limit(exc)
    except AnswerSetError as exc:
        return _invalid(f"not a valid answer set: {exc}")
    return Outcome(parsed.answers, tuple(Problem.of_answer(w) for w in parsed.dropped))


def _failed(error_class: ErrorClass, message: str) -> Outcome:
    return Outcome(
        None,
        (Problem(str(error_class), message),),
        error_class=error_class,
        error=message,
    )


def over_limit(exc: AnswerLimitExceeded) -> Outcome:
    """A reply over an answer-set limit, alone or overlaid on the answers before it."""
    message = f"the answer set is over a limit, so none of it applies: {exc}"
    return Outcome(
        None,
        (Problem(ANSWER_LIMIT, message),),
        error_class=ErrorClass.INVALID_RESPONSE,
        error=message,
    )


def _invalid(message: str) -> Outcome:
    return Outcome(
        None,
        (Problem(INVALID_ANSWERS, message),),
        error_class=ErrorClass.INVALID_RESPONSE,
        error=message,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
