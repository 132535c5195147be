"""Properties: canonical JSON → HotDocs XML → JSON is the identity; overlay replaces whole."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.answers.answer_strategies import TYPES, canonical_json, values

from docuhooks.answers import (
    AnswerSet,
    AnswerSetError,
    parse_canonical,
    parse_hotdocs_xml,
    parse_stored,
    to_hotdocs_xml,
)
from docuhooks.answers.model import Answer


@given(canonical_json())
def test_json_to_xml_to_json_is_the_identity(data: dict[str, Any]) -> None:
    answers = parse_canonical(data)
    assert answers.to_json() == data
    back = parse_hotdocs_xml(to_hotdocs_xml(answers))
    assert back.to_json() == data
    assert back == answers


@given(st.sampled_from(TYPES), st.integers(0, 4), st.data())
def test_every_type_at_every_repeat_depth_round_trips(
    answer_type: str, depth: int, data: st.DataObject
) -> None:
    value = data.draw(values(answer_type, depth).filter(lambda v: v is not None))
    document = {"answers": [{"name": "V", "type": answer_type, "value": value}]}
    assert parse_hotdocs_xml(to_hotdocs_xml(parse_canonical(document))).to_json() == document


@given(canonical_json())
def test_json_text_round_trip_is_the_identity(data: dict[str, Any]) -> None:
    assert parse_canonical(json.loads(json.dumps(data))).to_json() == data


small_names = st.sampled_from(["A", "B", "C", "D", "E", "F"])


@given(canonical_json(small_names), canonical_json(small_names))
def test_overlay_keeps_unrelated_answers_and_replaces_named_ones_whole(
    base_json: dict[str, Any], incoming_json: dict[str, Any]
) -> None:
    base, incoming = parse_canonical(base_json), parse_canonical(incoming_json)
    merged = base.overlay(incoming)
    assert set(merged) == set(base) | set(incoming)
    for name in merged:
        expected = incoming[name] if name in incoming else base[name]
        assert merged[name] is expected
    # Existing answers keep their place; new ones follow in incoming order.
    assert list(merged) == list(base) + [name for name in incoming if name not in base]


@given(canonical_json(small_names), canonical_json(small_names), canonical_json(small_names))
def test_overlay_is_associative_and_idempotent(
    a_json: dict[str, Any], b_json: dict[str, Any], c_json: dict[str, Any]
) -> None:
    a, b, c = (parse_canonical(d) for d in (a_json, b_json, c_json))
    assert a.overlay(b).overlay(c) == a.overlay(b.overlay(c))
    assert a.overlay(b).overlay(b) == a.overlay(b)
    assert a.overlay(AnswerSet()) == a
    assert AnswerSet().overlay(a) == a


@given(canonical_json())
def test_parsing_builds_the_answers_the_checking_constructor_builds(data: dict[str, Any]) -> None:
    """parse_canonical checks each entry once and skips Answer()'s own checks: same result."""
    parsed = parse_canonical(data)
    rebuilt = [Answer(a.name, a.type, a.value) for a in parsed.answers]
    assert list(parsed.answers) == rebuilt
    assert [type(a.type) for a in parsed.answers] == [type(a.type) for a in rebuilt]


@given(canonical_json())
def test_stored_answers_read_back_as_parse_canonical_reads_them(data: dict[str, Any]) -> None:
    stored = parse_canonical(data).to_json()
    assert parse_stored(stored) == parse_canonical(stored)
    assert parse_stored(stored).to_json() == data


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"answers": {}},
        {"answers": [], "extra": 1},
        {"answers": [{"name": "A", "type": "text"}]},
        {"answers": [{"name": "A", "type": "colour", "value": "red"}]},
        {"answers": [{"name": 7, "type": "text", "value": "x"}]},
        {"answers": [{"name": "A", "type": "text", "value": 5}]},
        {"answers": [{"name": "A", "type": "number", "value": "5"}]},
        {"answers": [{"name": "A", "type": "date", "value": "31/12/2026"}]},
        {"answers": [{"name": "A", "type": "text", "value": "x"}] * 2},
        {"answers": ["A"]},
    ],
)
def test_stored_answers_in_any_other_shape_are_refused_as_parse_canonical_refuses_them(
    data: Any,
) -> None:
    with pytest.raises(AnswerSetError) as canonical:
        parse_canonical(data)
    with pytest.raises(AnswerSetError) as stored:
        parse_stored(data)
    assert str(stored.value) == str(canonical.value)
