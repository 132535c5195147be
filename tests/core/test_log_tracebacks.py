"""Readable (terminal) logs must not print a traceback's local variables: an unexpected error
in a request would otherwise print the password, API token or webhook secret a frame held."""

from __future__ import annotations

import pytest
import structlog

from docuhooks import logs


def _fails_holding(password: str) -> None:
    raise RuntimeError("the database went away")


@pytest.mark.parametrize("as_json", [False, True])
def test_an_error_logged_with_its_traceback_shows_no_local_variable(
    capsys: pytest.CaptureFixture[str], as_json: bool
) -> None:
    # Made at run time, so the traceback's source lines cannot show it.
    secret = "".join(reversed("drowssap-eht-2retnuh"))
    logs.configure("info", json=as_json)  # reset after the test (tests/conftest.py)
    try:
        _fails_holding(secret)
    except RuntimeError:
        structlog.get_logger("test").exception("unhandled error")
    err = capsys.readouterr().err
    assert "the database went away" in err  # the traceback is there…
    assert secret not in err  # …without the frame's variables
