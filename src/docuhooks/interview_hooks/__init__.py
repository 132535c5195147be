"""Interview webhooks: the synchronous calls a waiting person's interview makes
when it opens (InterviewLoadEvent) and when an interview event element is used
(CustomInterviewEvent)."""

from docuhooks.interview_hooks.engine import (
    HookResult,
    count_interview_event_hooks,
    match_interview_hooks,
    run_interview_hooks,
)
from docuhooks.interview_hooks.log import foreground_transaction, start_log_writer
from docuhooks.interview_hooks.replies import MAX_REPLY_BYTES
from docuhooks.interview_hooks.warnings import Problem, answer_warning, webhook_warning

__all__ = [
    "MAX_REPLY_BYTES",
    "HookResult",
    "Problem",
    "answer_warning",
    "count_interview_event_hooks",
    "foreground_transaction",
    "match_interview_hooks",
    "run_interview_hooks",
    "start_log_writer",
    "webhook_warning",
]
