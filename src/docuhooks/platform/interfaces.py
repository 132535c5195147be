"""What the platform services need from the running application: the interview hooks' view
plus the render pool and the post-processing driver. `context.AppContext` (the composition
root above this package) satisfies it structurally; nothing here imports it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from docuhooks.interview_hooks.interfaces import InterviewContext

if TYPE_CHECKING:
    from docuhooks.platform.postprocessing.driver import PostProcessor
    from docuhooks.platform.renderpool import RenderPool


class PlatformContext(InterviewContext, Protocol):
    @property
    def render_pool(self) -> RenderPool:
        """Worker processes that inspect and render templates."""
        ...

    #: The post-processing driver, or None: finishing an interview then calls the
    #: post-processing webhook before returning (`start_post_processor` installs it).
    post_processor: PostProcessor | None
