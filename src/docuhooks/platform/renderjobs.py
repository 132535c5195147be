"""What runs in a render worker: the jobs, the limits they are held to, and the worker's
loop (`serve`). The server's side, which starts, feeds and kills workers, is
`platform.renderpool`; this module is what the forkserver loads, so it imports only what a
render needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from docuhooks.answers.model import AnswerSet, VariableDef
from docuhooks.platform.assembly import AssemblyError, assemble
from docuhooks.platform.docxcheck import DocxLimitExceeded, DocxLimits
from docuhooks.platform.templates import (
    OutputTooLarge,
    TemplateError,
    TemplateInfo,
    check_docx,
    inspect_template,
)
from docuhooks.settings import Settings

_PR_SET_PDEATHSIG = 1
#: The longest reason sent back for a failed job. A template's own exception can carry what
#: it built (`{}.pop(key)` raises a KeyError holding the key, 64 MiB or more), and the reason
#: becomes the 422's message in the server, whose memory nothing limits.
MAX_MESSAGE_CHARS = 1000


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """What one job may use (the `render_*` and `docx_*` settings)."""

    time_seconds: float = 20.0
    memory_bytes: int = 1024 * 1024 * 1024
    output_bytes: int = 64 * 1024 * 1024
    docx: DocxLimits = field(default_factory=DocxLimits)

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderLimits:
        return cls(
            time_seconds=settings.render_time_limit_seconds,
            memory_bytes=settings.render_memory_limit_bytes,
            output_bytes=settings.render_output_limit_bytes,
            docx=DocxLimits(
                max_entries=settings.docx_max_entries,
                max_entry_bytes=settings.docx_max_entry_bytes,
                max_total_bytes=settings.docx_max_total_bytes,
                max_compression_ratio=settings.docx_max_compression_ratio,
            ),
        )


# --- jobs ---------------------------------------------------------------------------------


def inspect_job(limits: RenderLimits, content: bytes) -> TemplateInfo:
    try:
        return inspect_template(content, limits.docx)
    except (TemplateError, DocxLimitExceeded, MemoryError, RecursionError):
        raise
    except Exception as exc:  # lxml's errors on a damaged part, and whatever else docx raises
        raise TemplateError(
            f"the document cannot be read as a template: {type(exc).__name__}: {exc}"
        ) from None


def assemble_job(
    limits: RenderLimits, content: bytes, answers: AnswerSet, variables: Sequence[VariableDef]
) -> bytes:
    return assemble(
        content, answers, variables, docx_limits=limits.docx, output_limit=limits.output_bytes
    )


def verify_docx_job(limits: RenderLimits, content: bytes) -> None:
    check_docx(content, limits.docx)


#: A job's outcome as it crosses the pipe: ("ok", result) or (kind, code, status, message).
Outcome = tuple[Any, ...]


def _clipped(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 1] + "…"


def _outcome_of(exc: BaseException, limits: RenderLimits) -> Outcome:
    """What the caller is told about a job that raised `exc` (see the module docstring),
    its reason cut to `MAX_MESSAGE_CHARS`."""
    kind, code, status, message = _reason_for(exc, limits)
    return (kind, code, status, _clipped(message))


def _reason_for(exc: BaseException, limits: RenderLimits) -> Outcome:
    if isinstance(exc, MemoryError):
        return (
            "limit",
            "render_memory_limit",
            422,
            f"the template needed more than {limits.memory_bytes} bytes of memory to render; "
            "that is the limit (render_memory_limit_bytes)",
        )
    if isinstance(exc, OutputTooLarge):
        return ("limit", "render_output_too_large", 413, str(exc))
    if isinstance(exc, DocxLimitExceeded):
        return ("limit", exc.code, exc.status, str(exc))
    if isinstance(exc, TemplateError | AssemblyError):
        return ("invalid", "validation_failed", 422, str(exc))
    if isinstance(exc, RecursionError):
        reason = "it calls itself too deeply (RecursionError)"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return ("invalid", "validation_failed", 422, f"the template could not be rendered: {reason}")


def serve(conn: Connection, limits: RenderLimits) -> None:
    """A worker's life: run jobs from `conn` until it closes (or the worker is killed)."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server to handle
    if limits.memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    while True:
        try:
            func, args = conn.recv()
        except (EOFError, OSError):
            return
        outcome: Outcome
        try:
            outcome = ("ok", func(limits, *args))
        except BaseException as exc:  # everything a user's template can raise is reported
            outcome = _outcome_of(exc, limits)
        try:
            conn.send(outcome)
        except MemoryError:
            conn.send(_outcome_of(MemoryError(), limits))
        except Exception as exc:  # a result that cannot cross the pipe
            message = _clipped(f"{type(exc).__name__}: {exc}")
            conn.send(("invalid", "validation_failed", 422, message))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the forkserver that forked it ends, which it
    does when the server does.

    The forkserver hands each child its "server alive" pipe end, so that it outlives the
    server while any child lives; a worker looping in a template would then keep both alive
    after the server is killed. The worker closes that end: the forkserver's life is the
    server's, and the worker's the forkserver's."""
    from multiprocessing import forkserver

    alive = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)
    if alive is not None:
        with contextlib.suppress(OSError):
            os.close(alive)
        setattr(forkserver._forkserver, "_forkserver_alive_fd", None)  # noqa: B010
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the forkserver ended before the request was made
        os._exit(1)
