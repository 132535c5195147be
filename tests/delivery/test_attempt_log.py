"""The one attempt-row builder: what every writer of the attempt log keeps of an error."""

from __future__ import annotations

from docuhooks.delivery import attempt_log


def test_clip_replaces_nul_which_postgresql_text_refuses() -> None:
    assert attempt_log.clip("bad\x00reply") == "bad\ufffdreply"
    assert attempt_log.clip(None) is None


def test_clip_caps_the_text_and_marks_the_cut() -> None:
    long = "x" * (attempt_log.MAX_ERROR + 5)
    clipped = attempt_log.clip(long)
    assert clipped is not None and len(clipped) == attempt_log.MAX_ERROR
    assert clipped.endswith("…")
    assert attempt_log.clip("x" * attempt_log.MAX_ERROR) == "x" * attempt_log.MAX_ERROR
