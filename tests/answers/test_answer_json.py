"""Canonical and shorthand answer JSON, fitting to variables, and reading HTTP bodies."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from docuhooks.answers import (
    Answer,
    AnswerSet,
    AnswerSetError,
    AnswerType,
    Selection,
    VariableDef,
    parse_answer_json,
    parse_answer_payload,
    parse_canonical,
    validate_against,
    variable_map,
)

VARIABLES = variable_map(
    [
        VariableDef("Client Name", AnswerType.TEXT),
        VariableDef("Fee", AnswerType.NUMBER),
        VariableDef("Start Date", AnswerType.DATE),
        VariableDef("Is Company", AnswerType.TRUEFALSE),
        VariableDef("Colours", AnswerType.MULTIPLECHOICE, options=("Red", "Green", "Blue")),
        VariableDef("Child Name", AnswerType.TEXT, repeat_depth=1),
        VariableDef("Grandkids", AnswerType.TEXT, repeat_depth=2),
        VariableDef("Tags", AnswerType.MULTIPLECHOICE, repeat_depth=1, options=("a", "b")),
    ]
)


def test_shorthand_is_typed_by_the_template() -> None:
    result = parse_answer_json(
        {
            "Client Name": "Jane",
            "Fee": 1500.0,
            "Start Date": "2026-11-29",
            "Is Company": False,
            "Colours": ["Blue"],
            "Child Name": ["Ann", None],
            "Grandkids": [["x"], None],
            "Tags": [["a"], []],
        },
        VARIABLES,
    )
    assert result.warnings == ()
    assert result.answers == AnswerSet(
        [
            Answer("Client Name", AnswerType.TEXT, "Jane"),
            Answer("Fee", AnswerType.NUMBER, 1500),
            Answer("Start Date", AnswerType.DATE, date(2026, 11, 29)),
            Answer("Is Company", AnswerType.TRUEFALSE, False),
            Answer("Colours", AnswerType.MULTIPLECHOICE, Selection(("Blue",))),
            Answer("Child Name", AnswerType.TEXT, ("Ann", None)),
            Answer("Grandkids", AnswerType.TEXT, (("x",), None)),
            Answer("Tags", AnswerType.MULTIPLECHOICE, (Selection(("a",)), Selection(()))),
        ]
    )
    assert isinstance(result.answers["Fee"].value, int)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("Client Name", 42, "a text value must be a string"),
        ("Fee", "1500", "a number value must be a number"),
        ("Fee", True, "a number value must be a number"),
        ("Start Date", "29/11/2026", "'YYYY-MM-DD'"),
        ("Start Date", "2026-02-30", "not a real date"),
        ("Is Company", "yes", "true or false"),
        ("Colours", ["Purple"], "does not offer: 'Purple'"),
        ("Colours", "Red", "list of options"),
        ("Child Name", "Ann", "repeat depth 1"),
        ("Grandkids", ["a", "b"], "repeat depth 2"),
        ("Client Name", ["a"], "repeat depth 0"),
        ("Nobody", "x", "no variable named 'Nobody'"),
    ],
)
def test_shorthand_misfits_are_dropped_with_a_warning_naming_the_variable(
    name: str, value: Any, fragment: str
) -> None:
    result = parse_answer_json(
        {name: value, "Client Name" if name != "Client Name" else "Fee": None}, VARIABLES
    )
    assert name not in result.answers
    assert len(result.answers) == 1  # the other answer still applies
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(f'answer "{name}": ')
    assert fragment in result.warnings[0]


def test_shorthand_without_variables_is_an_error() -> None:
    with pytest.raises(AnswerSetError, match="shorthand JSON needs the template"):
        parse_answer_json({"Client Name": "Jane"}, None)


def test_canonical_is_detected_and_fitted_when_variables_are_given() -> None:
    data = {
        "answers": [
            {"name": "Fee", "type": "number", "value": 12.5},
            {"name": "Fee Text", "type": "text", "value": "x"},
            {"name": "Client Name", "type": "number", "value": 3},
        ]
    }
    assert parse_answer_json(data).answers["Client Name"].value == 3
    result = parse_answer_json(data, VARIABLES)
    assert list(result.answers) == ["Fee"]
    assert result.warnings == (
        "answer \"Fee Text\": the template has no variable named 'Fee Text'; ignored",
        'answer "Client Name": is number but the template declares text; ignored',
    )


def test_a_variable_named_answers_makes_the_object_shorthand() -> None:
    variables = variable_map([VariableDef("answers", AnswerType.TEXT, repeat_depth=1)])
    result = parse_answer_json({"answers": ["a", "b"]}, variables)
    assert result.answers["answers"].value == ("a", "b")


@pytest.mark.parametrize(
    ("data", "location", "fragment"),
    [
        ([], "body", "must be an object"),
        ({"answers": [1]}, "answers[0]", "must be an object"),
        ({"answers": [{"name": "A", "type": "text"}]}, "answers[0]", "missing 'value'"),
        ({"answers": [{"name": "A", "type": "text", "value": 1, "x": 2}]}, "answers[0]", "'x'"),
        ({"answers": [{"name": "", "type": "text", "value": "a"}]}, "answers[0].name", "empty"),
        ({"answers": [{"name": 5, "type": "text", "value": "a"}]}, "answers[0].name", "string"),
        ({"answers": [{"name": "A", "type": "colour", "value": "a"}]}, "answers[0].type", "colour"),
        (
            {"answers": [{"name": "A", "type": "text", "value": ["a", ["b"]]}]},
            "answers[0].value",
            "mix repeat levels",
        ),
        (
            {"answers": [{"name": "A", "type": "date", "value": ["2026-01-01", "tomorrow"]}]},
            "answers[0].value[1]",
            "'YYYY-MM-DD'",
        ),
        (
            {"answers": [{"name": "A", "type": "number", "value": [[[[[1]]]]]}]},
            "answers[0].value[0][0][0][0]",
            "deeper than 4",
        ),
        (
            {"answers": [{"name": "A", "type": "multiplechoice", "value": ["a", ""]}]},
            "answers[0].value[1]",
            "non-empty",
        ),
        (
            {
                "answers": [
                    {"name": "A", "type": "text", "value": "a"},
                    {"name": "A", "type": "text", "value": "b"},
                ]
            },
            "answers[1].name",
            "more than once",
        ),
    ],
)
def test_malformed_canonical_json_is_an_error_with_a_path(
    data: Any, location: str, fragment: str
) -> None:
    with pytest.raises(AnswerSetError) as caught:
        parse_canonical(data)
    assert caught.value.location == location
    assert fragment in caught.value.reason


def test_validate_drops_misfits_and_keeps_the_rest() -> None:
    answers = AnswerSet(
        [
            Answer("Child Name", AnswerType.TEXT, (("nested",),)),
            Answer("Tags", AnswerType.MULTIPLECHOICE, ()),
            Answer("Colours", AnswerType.MULTIPLECHOICE, (("Red",),)),
            Answer("Fee", AnswerType.NUMBER, None),
        ]
    )
    kept, warnings = validate_against(answers, VARIABLES)
    # An empty selection for a repeated multiple choice is read as unanswered.
    assert kept == AnswerSet(
        [Answer("Tags", AnswerType.MULTIPLECHOICE, None), Answer("Fee", AnswerType.NUMBER, None)]
    )
    assert [w.split(":")[0] for w in warnings] == ['answer "Child Name"', 'answer "Colours"']


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/vnd.answers+json"],
)
def test_payload_json_by_content_type(content_type: str) -> None:
    body = json.dumps({"Fee": 7}).encode()
    assert parse_answer_payload(body, content_type, VARIABLES).answers["Fee"].value == 7


def test_payload_json_honours_the_charset() -> None:
    body = json.dumps({"Client Name": "Zoë"}, ensure_ascii=False).encode("latin-1")
    result = parse_answer_payload(body, "application/json; charset=ISO-8859-1", VARIABLES)
    assert result.answers["Client Name"].value == "Zoë"


@pytest.mark.parametrize("content_type", ["application/xml", "text/xml; charset=utf-8"])
def test_payload_xml_by_content_type_is_fitted(content_type: str) -> None:
    body = (
        b'<AnswerSet version="1.1"><Answer name="Fee"><NumValue>3</NumValue></Answer>'
        b'<Answer name="Other"><TextValue>x</TextValue></Answer></AnswerSet>'
    )
    result = parse_answer_payload(body, content_type, VARIABLES)
    assert dict(result.answers) == {"Fee": Answer("Fee", AnswerType.NUMBER, 3)}
    assert result.warnings == (
        "answer \"Other\": the template has no variable named 'Other'; ignored",
    )


@pytest.mark.parametrize(
    ("body", "content_type", "location", "fragment"),
    [
        (b"{}", "text/plain", "Content-Type", "unsupported content type"),
        (b"", "application/json", "body", "empty"),
        (b"{nope", "application/json", "line 1, column 2", "not valid JSON"),
        (b"\xff\xfe\x00", "application/json", "body", "UTF"),
        (b"{}", "application/json; charset=klingon", "Content-Type", "unknown charset"),
        # `codecs.lookup` refuses a name with a NUL in it with ValueError, not LookupError.
        (b"{}", "application/json; charset=utf-8\x00", "Content-Type", "unknown charset"),
        (b"[" * 100000 + b"]" * 100000, "application/json", "body", "cannot be read"),
        (b"<AnswerSet", "application/xml", "line 1", "not well-formed"),
    ],
)
def test_payload_errors_are_clear(
    body: bytes, content_type: str, location: str, fragment: str
) -> None:
    with pytest.raises(AnswerSetError) as caught:
        parse_answer_payload(body, content_type, VARIABLES)
    assert location in caught.value.location
    assert fragment in caught.value.reason


def test_answer_set_error_is_a_422_with_the_location() -> None:
    error = AnswerSetError("not a number", 'Answer "Fee"/NumValue')
    assert error.status == 422
    assert error.to_body()["error"]["details"] == [
        {"field": 'Answer "Fee"/NumValue', "message": "not a number"}
    ]
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": "X", "type": "colour"}, "unknown type"),
        ({"name": "X", "type": "text", "repeat_depth": 5}, "repeat depth"),
        ({"name": "X", "type": "text", "repeat_depth": True}, "repeat depth"),
        ({"name": "X", "type": "multiplechoice"}, "at least one option"),
        ({"name": "X", "type": "text", "options": ("a",)}, "only multiplechoice"),
        ({"name": "X", "type": "multiplechoice", "options": "abc"}, "list of strings"),
        ({"name": "X", "type": "multiplechoice", "options": ("a", "a")}, "selected twice"),
        ({"name": " X", "type": "text"}, "white space"),
    ],
)
def test_bad_variable_definitions_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AnswerSetError, match=fragment):
        VariableDef(**kwargs)


def test_variable_declared_twice_is_an_error() -> None:
    with pytest.raises(AnswerSetError, match="more than once"):
        variable_map([VariableDef("A", AnswerType.TEXT), VariableDef("A", AnswerType.NUMBER)])


@pytest.mark.parametrize(
    ("answer_type", "value", "fragment"),
    [
        (AnswerType.NUMBER, float("inf"), "finite"),
        (AnswerType.DATE, "2026-01-01", "must be a date"),
        (AnswerType.TEXT, "nul \x00", r"U\+0000"),
        (AnswerType.TEXT, "\ufffe", r"U\+FFFE"),
    ],
)
def test_answer_values_are_checked_on_construction(
    answer_type: AnswerType, value: Any, fragment: str
) -> None:
    with pytest.raises(AnswerSetError, match=fragment):
        Answer("A", answer_type, value)


def test_normalisation() -> None:
    assert Answer("A", AnswerType.NUMBER, 2.0).value == 2
    assert Answer("A", AnswerType.TEXT, ()).value is None
    assert Answer("A", AnswerType.TEXT, ((), None)).value == (None, None)
    assert Answer("A", AnswerType.MULTIPLECHOICE, ()).value == Selection(())
    assert Answer("A", AnswerType.TEXT, ((None,), (("deep",),))).repeat_depth == 3
