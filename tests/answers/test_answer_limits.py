"""The answer-set limits, each on its own, in every format; the encodings answer XML may
use; and hostile input of every kind we know, which is refused as the sender's error (an
`AnswerSetError`, so a 4xx), never anything else."""

from __future__ import annotations

import codecs
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.answers.answer_strategies import HOSTILE, canonical_json

from docuhooks.answers import (
    DEFAULT_LIMITS,
    Answer,
    AnswerLimitExceeded,
    AnswerLimits,
    AnswerSet,
    AnswerSetError,
    AnswerSetTooLarge,
    AnswerType,
    VariableDef,
    check_answers,
    check_overlay,
    measure,
    off_loop,
    parse_answer_payload,
    parse_hotdocs_xml,
    to_hotdocs_xml,
    variable_map,
)
from docuhooks.answers.offload import INLINE_BYTES
from docuhooks.settings import Settings

SMALL = AnswerLimits(
    document_bytes=4096, value_bytes=100, answers=5, values_per_answer=10, values=20
)
VARIABLES = variable_map(
    [
        VariableDef("Name", AnswerType.TEXT),
        VariableDef("Children", AnswerType.TEXT, repeat_depth=1),
        VariableDef("Grid", AnswerType.NUMBER, repeat_depth=2),
        VariableDef("Colours", AnswerType.MULTIPLECHOICE, options=("Red", "Blue")),
        *(VariableDef(f"V{i}", AnswerType.TEXT) for i in range(10)),
    ]
)
JSON = "application/json"
XML = "application/xml"


def canonical(*answers: Answer) -> bytes:
    return json.dumps(AnswerSet(answers).to_json()).encode()


def xml(*answers: Answer) -> bytes:
    return to_hotdocs_xml(AnswerSet(answers))


def refused(body: bytes, content_type: str, limits: AnswerLimits = SMALL) -> AnswerLimitExceeded:
    with pytest.raises(AnswerLimitExceeded) as caught:
        parse_answer_payload(body, content_type, VARIABLES, limits)
    return caught.value


def test_the_defaults_are_the_settings_defaults() -> None:
    assert AnswerLimits.from_settings(Settings()) == DEFAULT_LIMITS


# --- each limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [JSON, XML])
def test_a_document_over_the_size_limit_is_a_413_before_it_is_read(content_type: str) -> None:
    # Not even well-formed: the size is checked before anything reads it.
    error = refused(b"<" * 4097, content_type)
    assert isinstance(error, AnswerSetTooLarge) and error.status == 413
    assert error.limit == "max_answer_set_bytes" and "max_answer_set_bytes" in error.message
    assert error.code == "payload_too_large"


@pytest.mark.parametrize(
    "body",
    [
        canonical(Answer("Name", AnswerType.TEXT, "x" * 101)),
        json.dumps({"Name": "x" * 101}).encode(),
        xml(Answer("Name", AnswerType.TEXT, "x" * 101)),
        # One iteration of a repeat, and a name the template does not have: still refused.
        canonical(Answer("Children", AnswerType.TEXT, ("a", "é" * 51))),
        canonical(Answer("Unknown", AnswerType.TEXT, "x" * 101)),
    ],
    ids=["canonical", "shorthand", "xml", "utf8-in-repeat", "unknown-name"],
)
def test_a_value_over_the_size_limit_is_a_413_naming_the_answer(body: bytes) -> None:
    error = refused(body, XML if body.startswith(b"<") else JSON)
    assert isinstance(error, AnswerSetTooLarge) and error.status == 413
    assert error.limit == "max_answer_value_bytes"
    assert error.location.startswith("answer") or error.location.startswith("Answer")


@pytest.mark.parametrize("content_type", [JSON, XML])
def test_a_selection_is_one_value_whose_options_count_together(content_type: str) -> None:
    fits = Answer("Colours", AnswerType.MULTIPLECHOICE, ("Red", "Blue"))
    body = canonical(fits) if content_type == JSON else xml(fits)
    assert parse_answer_payload(body, content_type, VARIABLES, SMALL).answers["Colours"] == fits
    options = tuple(f"option {i:03}" for i in range(12))  # 12 values if counted one by one
    large = Answer("Colours", AnswerType.MULTIPLECHOICE, options)
    error = refused(canonical(large) if content_type == JSON else xml(large), content_type)
    assert error.limit == "max_answer_value_bytes" and '"Colours"' in error.location


@pytest.mark.parametrize(
    "body",
    [
        canonical(*(Answer(f"V{i}", AnswerType.TEXT, "x") for i in range(6))),
        json.dumps({f"V{i}": "x" for i in range(6)}).encode(),
        xml(*(Answer(f"V{i}", AnswerType.TEXT, "x") for i in range(6))),
    ],
    ids=["canonical", "shorthand", "xml"],
)
def test_too_many_answers_is_a_422_naming_the_limit(body: bytes) -> None:
    error = refused(body, XML if body.startswith(b"<") else JSON)
    assert error.status == 422 and error.code == "answer_limit_exceeded"
    assert error.limit == "max_answers" and "6 answers" in error.message


@pytest.mark.parametrize(
    "answer",
    [
        Answer("Children", AnswerType.TEXT, tuple("abcdefghijk")),
        Answer("Grid", AnswerType.NUMBER, ((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11))),
        # Unanswered iterations are values too: they are stored and walked like the others.
        Answer("Children", AnswerType.TEXT, (None,) * 11),
    ],
    ids=["flat", "nested", "unanswered"],
)
@pytest.mark.parametrize("content_type", [JSON, XML])
def test_too_many_values_in_one_answer_is_a_422_naming_it(
    answer: Answer, content_type: str
) -> None:
    error = refused(canonical(answer) if content_type == JSON else xml(answer), content_type)
    assert error.status == 422 and error.limit == "max_answer_values_per_answer"
    assert answer.name in error.location


def test_values_at_the_limit_are_accepted() -> None:
    answer = Answer("Grid", AnswerType.NUMBER, ((1, 2, 3, 4, 5), (6, 7, 8, 9, 10)))
    for body, content_type in ((canonical(answer), JSON), (xml(answer), XML)):
        assert parse_answer_payload(body, content_type, VARIABLES, SMALL).answers["Grid"] == answer


@pytest.mark.parametrize("content_type", [JSON, XML])
def test_too_many_values_in_the_set_is_a_422(content_type: str) -> None:
    answers = [Answer(f"V{i}", AnswerType.TEXT, tuple("abcdefg")) for i in range(3)]
    body = canonical(*answers) if content_type == JSON else xml(*answers)
    error = refused(body, content_type)
    assert error.status == 422 and error.limit == "max_answer_values"


def test_a_huge_list_is_refused_after_the_limit_not_after_it_is_walked() -> None:
    # A million items: refused by counting, before a single one is converted.
    body = json.dumps({"answers": [{"name": "Grid", "type": "number", "value": [1] * 10**6}]})
    error = refused(body.encode(), JSON, DEFAULT_LIMITS)
    assert error.limit == "max_answer_values_per_answer"


def test_repeats_nest_at_most_four_levels() -> None:
    body = json.dumps({"answers": [{"name": "G", "type": "number", "value": [[[[[1]]]]]}]})
    with pytest.raises(AnswerSetError, match="deeper than 4"):
        parse_answer_payload(body.encode(), JSON)


# --- overlay ---------------------------------------------------------------------------------


def test_an_overlay_is_held_to_the_same_limits() -> None:
    base = AnswerSet(Answer(f"V{i}", AnswerType.TEXT, "x") for i in range(4))
    totals = check_answers(base, SMALL)
    assert totals == measure(base) and totals.answers == 4 and totals.values == 4
    # Replacing answers does not add to them; adding a fifth is fine, a sixth is not.
    replaced = AnswerSet([Answer("V0", AnswerType.TEXT, "y"), Answer("V9", AnswerType.TEXT, "z")])
    assert check_overlay(base, totals, replaced, SMALL).answers == 5
    more = AnswerSet([Answer("V8", AnswerType.TEXT, "y"), Answer("V9", AnswerType.TEXT, "z")])
    with pytest.raises(AnswerLimitExceeded) as caught:
        check_overlay(base, totals, more, SMALL)
    assert caught.value.limit == "max_answers"


def test_an_overlay_over_the_values_or_bytes_is_refused() -> None:
    limits = AnswerLimits(document_bytes=300, value_bytes=100, answers=10, values=20)
    base = AnswerSet(Answer(f"V{i}", AnswerType.TEXT, "x" * 90) for i in range(3))
    totals = check_answers(base, limits)
    grown = AnswerSet([Answer("V3", AnswerType.TEXT, "x" * 90)])
    with pytest.raises(AnswerSetTooLarge) as caught:
        check_overlay(base, totals, grown, limits)
    assert caught.value.limit == "max_answer_set_bytes" and caught.value.status == 413
    # The same size replacing an answer keeps the total as it was.
    same = AnswerSet([Answer("V0", AnswerType.TEXT, "y" * 90)])
    assert check_overlay(base, totals, same, limits) == totals
    many = AnswerSet([Answer("V5", AnswerType.TEXT, tuple("x" * 18))])
    with pytest.raises(AnswerLimitExceeded) as values:
        check_overlay(base, totals, many, limits)
    assert values.value.limit == "max_answer_values"


def test_answers_already_over_a_limit_take_only_changes_that_leave_them_within_it() -> None:
    limits = AnswerLimits(document_bytes=200)
    stored = AnswerSet(Answer(f"V{i}", AnswerType.TEXT, "x" * 90) for i in range(3))
    totals = measure(stored)  # 276 bytes: stored before the limit was lowered
    with pytest.raises(AnswerSetTooLarge):
        check_overlay(stored, totals, AnswerSet([Answer("V5", AnswerType.TEXT, "y")]), limits)
    smaller = AnswerSet([Answer("V0", AnswerType.TEXT, "y")])
    assert check_overlay(stored, totals, smaller, limits).bytes < 200


# --- encodings -------------------------------------------------------------------------------

ANSWER = (
    '<AnswerSet version="1.1"><Answer name="Name"><TextValue>Zoë</TextValue></Answer></AnswerSet>'
)


def declared(encoding: str, codec: str | None = None) -> bytes:
    text = f'<?xml version="1.0" encoding="{encoding}"?>{ANSWER}'
    return text.encode(codec or "utf-8")


@pytest.mark.parametrize(
    "body",
    [
        declared("UTF-7"),
        declared("UTF-32"),
        declared("utf-32", "utf-32"),
        codecs.BOM_UTF32_LE + ANSWER.encode("utf-32-le"),
        declared("Shift_JIS"),
        declared("EUC-JP"),
        declared("big5"),
        declared("windows-1252"),
        declared("x-no-such-encoding"),
        declared("rot13"),
        declared(""),
        # A name `codecs.lookup` refuses with ValueError, not LookupError.
        declared("\x00UTF-8"),
    ],
    ids=lambda body: repr(body[:45]),
)
def test_encodings_other_than_utf8_and_utf16_are_refused_by_name(body: bytes) -> None:
    with pytest.raises(AnswerSetError) as caught:
        parse_answer_payload(body, XML, VARIABLES)
    assert "not supported" in caught.value.reason or "not well-formed" in caught.value.reason
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "body",
    [
        ANSWER.encode(),
        codecs.BOM_UTF8 + ANSWER.encode(),
        declared("UTF-8"),
        declared("utf-16", "utf-16"),
        codecs.BOM_UTF16_BE + ANSWER.encode("utf-16-be"),
        ANSWER.encode("utf-16-le"),
        declared("ISO-8859-1", "latin-1"),
        declared("latin1", "latin-1"),
    ],
    ids=lambda body: repr(body[:45]),
)
def test_utf8_utf16_and_latin1_are_read(body: bytes) -> None:
    assert parse_answer_payload(body, XML, VARIABLES).answers["Name"].value == "Zoë"


def test_us_ascii_is_read() -> None:
    body = declared("US-ASCII").replace("Zoë".encode(), b"Zoe")
    assert parse_answer_payload(body, XML, VARIABLES).answers["Name"].value == "Zoe"


# --- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "content_type"), HOSTILE, ids=lambda v: repr(v)[:60])
def test_hostile_input_is_the_senders_error(body: bytes, content_type: str) -> None:
    for variables in (VARIABLES, None):
        with pytest.raises(AnswerSetError) as caught:
            parse_answer_payload(body, content_type, variables)
        assert 400 <= caught.value.status < 500 and caught.value.reason


def as_document(data: dict[str, Any], content_type: str) -> bytes:
    body = json.dumps(data).encode()
    if content_type == JSON:
        return body
    try:
        return to_hotdocs_xml(parse_answer_payload(body, JSON).answers)
    except AnswerSetError:  # e.g. a name too long for our own limits: XML of nothing
        return b"<AnswerSet/>"


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(answers=canonical_json(), content_type=st.sampled_from([JSON, XML]), data=st.data())
def test_any_answer_set_however_broken_is_read_or_refused_as_the_senders_error(
    answers: dict[str, Any], content_type: str, data: st.DataObject
) -> None:
    """Valid answer sets in both formats, cut short, spliced into, or given an encoding."""
    body = as_document(answers, content_type)
    how = data.draw(st.sampled_from(["cut", "splice", "encoding", "none"]))
    if how == "cut" and body:
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    elif how == "splice":
        at = data.draw(st.integers(0, len(body)))
        body = body[:at] + data.draw(st.binary(max_size=12)) + body[at:]
    elif how == "encoding" and content_type == XML:
        encoding = data.draw(st.sampled_from(["UTF-7", "UTF-32", "Shift_JIS", "bogus", "utf-16"]))
        body = f'<?xml version="1.0" encoding="{encoding}"?>'.encode() + body
    try:
        parse_answer_payload(body, content_type, VARIABLES, SMALL)
    except AnswerSetError as exc:
        assert 400 <= exc.status < 500 and exc.reason


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), content_type=st.sampled_from([JSON, XML, "text/xml"]))
def test_any_bytes_are_read_or_refused_as_the_senders_error(body: bytes, content_type: str) -> None:
    try:
        parse_answer_payload(body, content_type, VARIABLES)
    except AnswerSetError as exc:
        assert 400 <= exc.status < 500


# --- off the loop ----------------------------------------------------------------------------


async def test_a_large_answer_set_is_read_in_a_parsing_thread_and_a_small_one_inline() -> None:
    def where(body: bytes) -> str:
        parse_answer_payload(body, XML, VARIABLES)
        return threading.current_thread().name

    large = xml(Answer("Name", AnswerType.TEXT, "x" * (INLINE_BYTES + 1)))
    small = xml(Answer("Name", AnswerType.TEXT, "x"))
    assert (await off_loop(len(large), 2, where, large)).startswith("answer-parse")
    assert await off_loop(len(small), 2, where, small) == threading.current_thread().name


def test_xml_reads_as_parse_hotdocs_xml_does_with_and_without_limits() -> None:
    body = xml(Answer("Children", AnswerType.TEXT, ("a", None, "b")))
    assert parse_hotdocs_xml(body) == parse_hotdocs_xml(body, limits=SMALL)
