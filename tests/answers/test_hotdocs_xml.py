"""HotDocs answer XML: the hand-written corpus, hostile and malformed input, the writer."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from docuhooks.answers import (
    Answer,
    AnswerSet,
    AnswerSetError,
    AnswerType,
    parse_canonical,
    parse_hotdocs_xml,
    to_hotdocs_xml,
)

DATA = Path(__file__).parents[1] / "data" / "hotdocs"
CORPUS = sorted(DATA.glob("*.xml"))
HOSTILE = sorted((DATA / "hostile").glob("*.xml"))


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 10
    assert len(HOSTILE) >= 3


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_file_parses_to_the_expected_json(path: Path) -> None:
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    answers = parse_hotdocs_xml(path.read_bytes())
    assert answers.to_json() == expected


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_file_survives_our_writer(path: Path) -> None:
    answers = parse_hotdocs_xml(path.read_bytes())
    assert parse_hotdocs_xml(to_hotdocs_xml(answers)).to_json() == answers.to_json()


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_expected_json_is_itself_canonical(path: Path) -> None:
    expected = json.loads(path.with_suffix(".expected.json").read_text(encoding="utf-8"))
    assert parse_canonical(expected).to_json() == expected


def test_reading_from_str_ignores_the_declared_encoding() -> None:
    text = (DATA / "11_latin1.xml").read_bytes().decode("latin-1")
    assert parse_hotdocs_xml(text)["Café"].value == "crème brûlée £100"


@pytest.mark.parametrize("path", HOSTILE, ids=lambda p: p.stem)
def test_hostile_xml_is_refused_without_expanding_anything(path: Path) -> None:
    with pytest.raises(AnswerSetError) as caught:
        parse_hotdocs_xml(path.read_bytes())
    assert "DTD" in str(caught.value) or "entit" in str(caught.value)
    assert caught.value.location == "body"


MALFORMED = [
    (b"", "empty", "body"),
    (b"   \n", "empty", "body"),
    (b"not xml at all", "not well-formed", "line 1"),
    (b"<AnswerSet><Answer name='A'><TextValue>x</Answer></AnswerSet>", "not well-formed", "line 1"),
    (b"<Answers/>", "expected <AnswerSet>", "AnswerSet"),
    (b'<AnswerSet version="2.0"/>', "unsupported version", "AnswerSet"),
    (b"<AnswerSet><Question name='A'/></AnswerSet>", "unexpected element <Question>", "Answer[1]"),
    (
        b"<AnswerSet>stray<Answer name='A'><TextValue/></Answer></AnswerSet>",
        "unexpected text",
        "AnswerSet",
    ),
    (b"<AnswerSet><Answer><TextValue>x</TextValue></Answer></AnswerSet>", "no name", "Answer[1]"),
    (
        b"<AnswerSet><Answer name='  '><TextValue>x</TextValue></Answer></AnswerSet>",
        "no name",
        "Answer[1]",
    ),
    (
        b"<AnswerSet><Answer name='A'><TextValue>x</TextValue></Answer>"
        b"<Answer name='A'><TextValue>y</TextValue></Answer></AnswerSet>",
        "more than once",
        'Answer "A"',
    ),
    (b"<AnswerSet><Answer name='A'/></AnswerSet>", "exactly one value", 'Answer "A"'),
    (
        b"<AnswerSet><Answer name='A'><TextValue>x</TextValue><TextValue>y</TextValue></Answer></AnswerSet>",  # noqa: E501
        "exactly one value",
        'Answer "A"',
    ),
    (
        b"<AnswerSet><Answer name='Fee'><NumValue>1,500</NumValue></Answer></AnswerSet>",
        "not a number",
        'Answer "Fee"/NumValue',
    ),
    (
        b"<AnswerSet><Answer name='Fee'><NumValue>NaN</NumValue></Answer></AnswerSet>",
        "not a number",
        'Answer "Fee"',
    ),
    (
        b"<AnswerSet><Answer name='Fee'><NumValue>1e999</NumValue></Answer></AnswerSet>",
        "out of range",
        'Answer "Fee"',
    ),
    (
        b"<AnswerSet><Answer name='D'><DateValue>2026-11-29</DateValue></Answer></AnswerSet>",
        "day/month/year",
        'Answer "D"/DateValue',
    ),
    (
        b"<AnswerSet><Answer name='D'><DateValue>31/2/2026</DateValue></Answer></AnswerSet>",
        "not a real date",
        'Answer "D"',
    ),
    (
        b"<AnswerSet><Answer name='D'><DateValue>1/2/26</DateValue></Answer></AnswerSet>",
        "day/month/year",
        'Answer "D"',
    ),
    (
        b"<AnswerSet><Answer name='T'><TFValue>yes</TFValue></Answer></AnswerSet>",
        "true or false",
        'Answer "T"/TFValue',
    ),
    (
        b"<AnswerSet><Answer name='T'><TFValue unans='maybe'/></Answer></AnswerSet>",
        "unans",
        'Answer "T"',
    ),
    (
        b"<AnswerSet><Answer name='X'><FooValue>1</FooValue></Answer></AnswerSet>",
        "unknown value element <FooValue>",
        'Answer "X"',
    ),
    (
        b"<AnswerSet><Answer name='X'><TextValue><b>bold</b></TextValue></Answer></AnswerSet>",
        "text only",
        'Answer "X"',
    ),
    (
        b"<AnswerSet><Answer name='M'><MCValue><Sel>a</Sel></MCValue></Answer></AnswerSet>",
        "<SelValue> elements only",
        'Answer "M"',
    ),
    (
        b"<AnswerSet><Answer name='M'><MCValue>a</MCValue></Answer></AnswerSet>",
        "unexpected text",
        'Answer "M"',
    ),
    (
        b"<AnswerSet><Answer name='M'><MCValue><SelValue>a</SelValue><SelValue>a</SelValue></MCValue></Answer></AnswerSet>",  # noqa: E501
        "selected twice",
        'Answer "M"',
    ),
    (
        b"<AnswerSet><Answer name='R'><RptValue/></Answer></AnswerSet>",
        "type cannot be known",
        'Answer "R"',
    ),
    (
        b"<AnswerSet><Answer name='R'><RptValue><TextValue>a</TextValue><NumValue>1</NumValue></RptValue></Answer></AnswerSet>",  # noqa: E501
        "different types",
        'Answer "R"',
    ),
    (
        b"<AnswerSet><Answer name='R'><RptValue><TextValue>a</TextValue><RptValue><TextValue>b</TextValue></RptValue></RptValue></Answer></AnswerSet>",  # noqa: E501
        "mix repeat levels",
        'Answer "R"',
    ),
    (
        b"<AnswerSet><Answer name='R'><RptValue><RptValue><RptValue><RptValue><RptValue>"
        b"<TextValue>deep</TextValue></RptValue></RptValue></RptValue></RptValue></RptValue></Answer></AnswerSet>",
        "deeper than 4",
        'Answer "R"',
    ),
]


@pytest.mark.parametrize(("body", "message", "location"), MALFORMED)
def test_malformed_xml_gets_a_clear_error(body: bytes, message: str, location: str) -> None:
    with pytest.raises(AnswerSetError) as caught:
        parse_hotdocs_xml(body)
    assert message in caught.value.reason
    assert location in caught.value.location


def test_a_namespace_on_the_elements_is_tolerated() -> None:
    body = (
        b'<AnswerSet xmlns="urn:x"><Answer name="A"><TextValue>x</TextValue></Answer></AnswerSet>'
    )
    assert parse_hotdocs_xml(body)["A"].value == "x"


def test_writer_output_is_exactly_the_hotdocs_shape() -> None:
    answers = AnswerSet(
        [
            Answer("Client Name", AnswerType.TEXT, "Jane"),
            Answer("Fee", AnswerType.NUMBER, 1500.0),
            Answer("Rate", AnswerType.NUMBER, 1e-7),
            Answer("Start Date", AnswerType.DATE, date(2026, 11, 29)),
            Answer("Is Company", AnswerType.TRUEFALSE, False),
            Answer("Colours", AnswerType.MULTIPLECHOICE, ("Red", "Blue")),
            Answer("None Picked", AnswerType.MULTIPLECHOICE, ()),
            Answer("Kids", AnswerType.TEXT, ("Ann", None)),
            Answer("Missing", AnswerType.DATE, None),
        ]
    )
    assert to_hotdocs_xml(answers).decode("utf-8") == (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<AnswerSet title="" version="1.1">\n'
        '  <Answer name="Client Name"><TextValue>Jane</TextValue></Answer>\n'
        '  <Answer name="Fee"><NumValue>1500</NumValue></Answer>\n'
        '  <Answer name="Rate"><NumValue>0.0000001</NumValue></Answer>\n'
        '  <Answer name="Start Date"><DateValue>29/11/2026</DateValue></Answer>\n'
        '  <Answer name="Is Company"><TFValue>false</TFValue></Answer>\n'
        '  <Answer name="Colours"><MCValue><SelValue>Red</SelValue>'
        "<SelValue>Blue</SelValue></MCValue></Answer>\n"
        '  <Answer name="None Picked"><MCValue/></Answer>\n'
        '  <Answer name="Kids"><RptValue><TextValue>Ann</TextValue>'
        '<TextValue unans="true"/></RptValue></Answer>\n'
        '  <Answer name="Missing"><DateValue unans="true"/></Answer>\n'
        "</AnswerSet>\n"
    )


def test_writer_escapes_what_a_parser_would_otherwise_change() -> None:
    tricky = 'a & b < c > d "q" \r\n\t end '
    answers = AnswerSet([Answer('Name "with" <odd> & chars', AnswerType.TEXT, tricky)])
    xml = to_hotdocs_xml(answers)
    assert b"&#13;" in xml
    again = parse_hotdocs_xml(xml)
    assert again == answers
