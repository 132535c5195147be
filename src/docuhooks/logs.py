"""Logs: one format for every line, structlog's events and the standard library's records
(uvicorn, Alembic) alike. Readable lines on a terminal, JSON lines for a collector: JSON when
`log_json` says so, or when it is unset (`auto`) and standard error is not a terminal.

structlog's own events go straight to standard error (the fast path the worker logs on);
standard-library records reach one handler whose formatter is structlog's
`ProcessorFormatter`, so they are rendered by the same processors and renderer.

`configure` may run more than once in a process (an application running docuhooks commands
in-process, as the tests do), and every logger follows the last call, the ones already used
too. A module's logger is made on its first use and cached (the fast path), holding the class,
processor list and output configured then; so `configure` installs the same three objects
every time and changes them in place. `reset` hands logging back to structlog's defaults."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO, cast

import structlog

#: Standard-library records that are debug detail at `info`: Alembic's plugin set-up and
#: migration steps, and uvicorn's start-up lines (the start banner says where it listens).
_CHATTER_LOGGERS = ("alembic",)
_UVICORN_START = (
    "Started server process",
    "Waiting for application startup",
    "Application startup complete",
    "Uvicorn running on",
)


class _State:
    """What `configure` set up, for `announce` and `reset`."""

    json = True
    #: The handler `configure` gave the root logger, and the level the root logger had before.
    handler: logging.Handler | None = None
    root_level = logging.WARNING


_state = _State()


class _Logger(structlog.BoundLoggerBase):
    """The class of every logger `configure` makes: structlog's filtering logger for the
    configured level, whose methods below the level only return. structlog fixes the level
    in the class, and a cached logger keeps its class; so each `configure` copies the
    methods of structlog's class for its level into this one (`_filter_at`)."""


def _filter_at(level: int) -> None:
    model = structlog.make_filtering_bound_logger(level)
    for name, method in vars(model).items():
        if not name.startswith("__"):
            setattr(_Logger, name, method)


_filter_at(logging.NOTSET)

#: The processors of every logger `configure` makes: one list, its contents replaced in place
#: (as `structlog.testing.capture_logs` does), since every logger holds the list it was made
#: with.
_PROCESSORS: list[structlog.typing.Processor] = []


class _StandardError:
    """Standard error as it is when a line is written, not as it was when `configure` ran: a
    logger cached while a test runner (or an application) had replaced it would otherwise
    write to a stream long gone. What `print` and `StreamHandler` need of a file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = cast(TextIO, _StandardError())


def use_json(setting: bool | None, stream: TextIO | None = None) -> bool:
    """JSON lines or readable ones: `setting` if given, else JSON unless `stream` (standard
    error) is a terminal."""
    if setting is not None:
        return setting
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure(level: str = "info", *, json: bool | None = None) -> bool:
    """Configure structlog and the standard library's logging together; True for JSON. Again
    and again if need be: every logger, including the ones already used, follows the last
    call."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    as_json = use_json(json)
    _state.json = as_json
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if as_json
        # Plain tracebacks: structlog's default, with `rich` installed, prints every frame's
        # local variables, and a frame of a failed request may hold a password, an API
        # token or a webhook's secret.
        else [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    _PROCESSORS[:] = [*shared, *renderer]
    _filter_at(numeric)
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=_Logger,
        logger_factory=structlog.PrintLoggerFactory(_STDERR),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    handler.addFilter(_Chatter(numeric))
    root = logging.getLogger()
    if _state.handler is None:
        _state.root_level = root.level
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    _state.handler = handler
    root.setLevel(numeric)
    return as_json


def reset() -> None:
    """Undo `configure`, for a process that goes on without docuhooks' logging (an
    application that ran a docuhooks command in-process; the tests that do): structlog's
    defaults, which the loggers used meanwhile follow too (writing to standard error still),
    and the root logger without `configure`'s handler, at the level it had before. Handlers
    `configure` took off the root logger are not put back."""
    structlog.reset_defaults()
    _PROCESSORS[:] = structlog.get_config()["processors"]
    _filter_at(logging.NOTSET)
    # The defaults, in the list the loggers already made hold (so that `capture_logs`, which
    # changes the configured list in place, reaches them too).
    structlog.configure(processors=_PROCESSORS)
    _state.json = True
    if _state.handler is not None:
        root = logging.getLogger()
        root.removeHandler(_state.handler)
        root.setLevel(_state.root_level)
        _state.handler = None


def announce(event: str, lines: list[str], **facts: Any) -> None:
    """A message for the person who started the process (the start banner): `lines` as
    they are on a terminal, one `event` with `facts` in JSON mode."""
    if _state.json:
        structlog.get_logger("docuhooks").info(event, **facts)
    else:
        print("\n".join(lines), file=sys.stderr, flush=True)


class _Chatter(logging.Filter):
    """Demotes the records of `_CHATTER_LOGGERS` and uvicorn's start-up lines from info to
    debug, and lets them through only when the level is debug."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not _is_chatter(record):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.level <= logging.DEBUG


def _is_chatter(record: logging.LogRecord) -> bool:
    if record.name.split(".", 1)[0] in _CHATTER_LOGGERS:
        return True
    return (
        record.name == "uvicorn.error"
        and isinstance(record.msg, str)
        and record.msg.startswith(_UVICORN_START)
    )
