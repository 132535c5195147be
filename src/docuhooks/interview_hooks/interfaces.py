"""What interview hooks need from the running application: the delivery layer's view plus
the interview delivery-log writer, when the app runs one. `context.AppContext` satisfies it
structurally; nothing here imports it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from docuhooks.delivery.interfaces import DeliveryContext

if TYPE_CHECKING:
    from docuhooks.interview_hooks.log import LogWriter


class InterviewContext(DeliveryContext, Protocol):
    #: The background log writer, or None: each step then writes its own log
    #: (`interview_hooks.log.start_log_writer` installs and removes it).
    interview_log: LogWriter | None
