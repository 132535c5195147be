"""The one shape of every warning on an interview response.

    {"source": "answers" | "webhook", "code", "message",
     "variable": str | null, "webhookId": str | null, "webhookName": str | null}

`source` says who caused it: `answers` for answers a user (or API client) sent that the
template cannot take, `webhook` for an interview webhook that failed or answered something
the template cannot take. Every key is always present; the ones that do not apply are null.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docuhooks.answers import AnswerWarning

ANSWERS = "answers"
WEBHOOK = "webhook"


@dataclass(frozen=True, slots=True)
class Problem:
    """What went wrong with one reply, before it is attributed to its webhook.

    `code` is an attempt-log error class (`timeout`, `connect`, `dns`, `tls`, `blocked`,
    `http_status`, `invalid_response`), `invalid_answers` for a 200 whose body is not an
    answer set, `answer_limit_exceeded` for one over an answer-set limit,
    `storage_quota_exceeded` for answers an interview just opened could not keep
    (`platform.interviews`), or an answer warning code (`unknown_variable`, `type_mismatch`,
    `unknown_option`, `repeat_depth`) for one answer the template could not take.
    """

    code: str
    message: str
    variable: str | None = None

    @classmethod
    def of_answer(cls, warning: AnswerWarning) -> Problem:
        return cls(str(warning.code), warning.message, warning.variable)


def webhook_warning(webhook_id: str, webhook_name: str, problem: Problem) -> dict[str, Any]:
    return {
        "source": WEBHOOK,
        "code": problem.code,
        "message": problem.message,
        "variable": problem.variable,
        "webhookId": webhook_id,
        "webhookName": webhook_name,
    }


def answer_warning(warning: AnswerWarning) -> dict[str, Any]:
    return {
        "source": ANSWERS,
        "code": str(warning.code),
        "message": warning.message,
        "variable": warning.variable,
        "webhookId": None,
        "webhookName": None,
    }
