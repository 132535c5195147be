"""Interview webhooks (SPEC §6.2): the synchronous calls a waiting person's interview makes
when it opens (InterviewLoadEvent) and when an interview event element is used
(CustomInterviewEvent)."""

from docuhooks.interview_hooks.engine import HookResult, run_interview_hooks
from docuhooks.interview_hooks.replies import MAX_REPLY_BYTES

__all__ = ["MAX_REPLY_BYTES", "HookResult", "run_interview_hooks"]
