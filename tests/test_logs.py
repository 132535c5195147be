"""Logging configured more than once in a process: every logger follows the last
`logs.configure`, the ones already used (and so cached) too, and writes to standard error as
it is when it writes; `logs.reset` hands logging back, and a logger used meanwhile then logs as
structlog's defaults say. A command run in-process configures logging for the whole process:
before, a later test that captured a successful delivery's debug line saw none."""

from __future__ import annotations

import contextlib
import io
import json
import logging

import pytest
import structlog

from docuhooks import logs


def events(text: str) -> list[str]:
    return [json.loads(line)["event"] for line in text.splitlines()]


def test_configuring_again_reaches_the_loggers_already_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = structlog.get_logger("docuhooks.test")
    logs.configure("info", json=True)
    log.info("first")  # made and cached here, as a module's logger is on its first use
    log.debug("below the level")
    assert events(capsys.readouterr().err) == ["first"]

    logs.configure("debug", json=False)
    log.debug("second")
    logging.getLogger("docuhooks.test").debug("from the standard library")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and not any(line.startswith("{") for line in lines), lines
    assert "[debug    ] second" in lines[0]
    assert "from the standard library" in lines[1] and "[docuhooks.test]" in lines[1]


def test_a_logger_writes_to_standard_error_as_it_is_when_it_writes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As a command run by click's `CliRunner` does: standard error is the runner's while the
    command configures logging, and the process's again afterwards."""
    log = structlog.get_logger("docuhooks.test")
    replaced = io.StringIO()
    with contextlib.redirect_stderr(replaced):
        logs.configure("info", json=True)
        log.info("while replaced")
    log.info("afterwards")
    logging.getLogger("docuhooks.test").info("afterwards, from the standard library")
    assert events(replaced.getvalue()) == ["while replaced"]
    assert events(capsys.readouterr().err) == [
        "afterwards",
        "afterwards, from the standard library",
    ]


def test_after_reset_a_logger_used_before_logs_as_the_defaults_say() -> None:
    log = structlog.get_logger("docuhooks.test")
    root = logging.getLogger()
    level, before = root.level, set(root.handlers)
    logs.configure("info", json=True)
    added = set(root.handlers) - before
    assert len(added) == 1
    with contextlib.redirect_stderr(io.StringIO()):
        log.info("cached at info")

    logs.reset()
    with structlog.testing.capture_logs() as logged:
        log.debug("delivery.attempted")  # what the worker logs of a success
        structlog.get_logger("docuhooks.other").debug("made after the reset")
    assert [line["event"] for line in logged] == ["delivery.attempted", "made after the reset"]
    assert not added & set(root.handlers) and root.level == level
