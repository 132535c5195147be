"""The receiver SDK's answer-set builder: canonical JSON and HotDocs XML the platform reads."""

from __future__ import annotations

import ast
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "answers"))
from tests.answers.answer_strategies import canonical_json

from docuhooks.answers import parse_answer_payload, parse_canonical, parse_hotdocs_xml
from docuhooks_receiver.answers import AnswerSetBuilder, shorthand, write_hotdocs_xml

SOURCE = Path(__file__).parents[2] / "receiver" / "src" / "docuhooks_receiver" / "answers.py"


def test_the_builder_imports_only_the_standard_library() -> None:
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0
    }
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}


def build_everything() -> AnswerSetBuilder:
    return (
        AnswerSetBuilder()
        .text("Client Name", "Jane")
        .number("Fee", 1500)
        .date("Start Date", date(2026, 11, 29))
        .date("End Date", "2027-01-31")
        .truefalse("Is Company", True)
        .multiple_choice("Colours", ["Red", "Blue"])
        .text("Child Name", ["Ann", "Bob"])
        .multiple_choice("Picks", [["a"], [], None])
        .unanswered("Missing", "text")
    )


def test_to_json_is_canonical_answer_json() -> None:
    assert build_everything().to_json() == {
        "answers": [
            {"name": "Client Name", "type": "text", "value": "Jane"},
            {"name": "Fee", "type": "number", "value": 1500},
            {"name": "Start Date", "type": "date", "value": "2026-11-29"},
            {"name": "End Date", "type": "date", "value": "2027-01-31"},
            {"name": "Is Company", "type": "truefalse", "value": True},
            {"name": "Colours", "type": "multiplechoice", "value": ["Red", "Blue"]},
            {"name": "Child Name", "type": "text", "value": ["Ann", "Bob"]},
            {"name": "Picks", "type": "multiplechoice", "value": [["a"], [], None]},
            {"name": "Missing", "type": "text", "value": None},
        ]
    }


def test_to_xml_reads_back_as_the_same_answers() -> None:
    builder = build_everything()
    from_xml = parse_answer_payload(builder.to_xml(), "application/xml").answers
    assert from_xml == parse_canonical(builder.to_json())


@given(canonical_json())
def test_the_shared_writer_round_trips_any_canonical_json(data: dict[str, Any]) -> None:
    assert parse_hotdocs_xml(write_hotdocs_xml(data)).to_json() == data


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: b.text("A", 3), "answer 'A': a text value must be a string"),
        (lambda b: b.number("A", True), "a number value must be a number"),
        (lambda b: b.number("A", float("nan")), "finite"),
        (lambda b: b.date("A", "29/11/2026"), "'YYYY-MM-DD'"),
        (lambda b: b.date("A", "2026-02-30"), "'YYYY-MM-DD'"),
        (lambda b: b.truefalse("A", "yes"), "True or False"),
        (lambda b: b.multiple_choice("A", "Red"), "list of options"),
        (lambda b: b.text("A", "bell \x07"), "U+0007"),
        (lambda b: b.text(" A", "x"), "non-empty"),
        (lambda b: b.unanswered("A", "colour"), "unknown type 'colour'"),
        (lambda b: b.text("A", [[[[["too deep"]]]]]), "deeper than 4"),
        (lambda b: b.text("A", "x").text("A", "y"), "given twice"),
    ],
)
def test_bad_values_name_the_answer(call: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        call(AnswerSetBuilder())
    assert message in str(caught.value)
    assert "A" in str(caught.value)


def test_shorthand_makes_json_ready_values() -> None:
    assert shorthand(
        {"Client Name": "Jane", "Fee": 12.5, "Start": date(2026, 1, 2), "Kids": ("Ann", None)}
    ) == {"Client Name": "Jane", "Fee": 12.5, "Start": "2026-01-02", "Kids": ["Ann", None]}
    with pytest.raises(ValueError, match="'Fee'"):
        shorthand({"Fee": object()})


@given(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_read_back_equal(number: float) -> None:
    xml = AnswerSetBuilder().number("N", number).to_xml()
    assert parse_hotdocs_xml(xml)["N"].value == number
