"""Logs: one format for every line, structlog's events and the standard library's records
(uvicorn, Alembic) alike. Readable lines on a terminal, JSON lines for a collector: JSON when
`log_json` says so, or when it is unset (`auto`) and standard error is not a terminal.

structlog's own events go straight to standard error (the fast path the worker logs on);
standard-library records reach one handler whose formatter is structlog's
`ProcessorFormatter`, so they are rendered by the same processors and renderer."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

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

_state = {"json": True}


def use_json(setting: bool | None, stream: TextIO | None = None) -> bool:
    """JSON lines or readable ones: `setting` if given, else JSON unless `stream` (standard
    error) is a terminal."""
    if setting is not None:
        return setting
    stream = stream or sys.stderr
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure(level: str = "info", *, json: bool | None = None) -> bool:
    """Configure structlog and the standard library's logging together; True for JSON."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    as_json = use_json(json)
    _state["json"] = as_json
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
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
        )
    )
    handler.addFilter(_Chatter(numeric))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    return as_json


def announce(event: str, lines: list[str], **facts: Any) -> None:
    """A message for the person who started the process (the start banner): `lines` as
    they are on a terminal, one `event` with `facts` in JSON mode."""
    if _state["json"]:
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
