"""The interview form ↔ answers, without a server: fields by type, a submitted form read
back as shorthand answers, and what cannot be read kept at its field."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from docuhooks.answers import VariableDef
from docuhooks.answers.model import AnswerType
from docuhooks.ui import interview_form as forms

VARIABLES = (
    VariableDef("Name", AnswerType.TEXT),
    VariableDef("Fee", AnswerType.NUMBER),
    VariableDef("Start", AnswerType.DATE),
    VariableDef("Urgent", AnswerType.TRUEFALSE),
    VariableDef("Colour", AnswerType.MULTIPLECHOICE, options=("Red", "Blue")),
    VariableDef("Parties", AnswerType.TEXT, repeat_depth=1),
    VariableDef("Grid", AnswerType.NUMBER, repeat_depth=2),
)


def form(*pairs: tuple[str, str]) -> FormData:
    return FormData(list(pairs))


def test_fields_show_each_answer_as_its_input_holds_it() -> None:
    answers = {
        "answers": [
            {"name": "Name", "type": "text", "value": "Ann\nLee"},
            {"name": "Fee", "type": "number", "value": 12.5},
            {"name": "Urgent", "type": "truefalse", "value": False},
            {"name": "Colour", "type": "multiplechoice", "value": ["Blue"]},
            {"name": "Parties", "type": "text", "value": ["Acme", None]},
            {"name": "Grid", "type": "number", "value": [[1, 2], None]},
        ]
    }
    fields = forms.fields_of(VARIABLES, answers)
    values = [f.value for f in fields]
    assert values[:6] == ["Ann\nLee", "12.5", "", "false", ["Blue"], ["Acme", ""]]
    assert fields[0].multiline and not fields[1].multiline
    assert fields[5].repeated and fields[5].editable
    # Deeper repeats are shown, not edited.
    assert not fields[6].editable and fields[6].shown == "[[1, 2], Not answered]"


def test_a_form_reads_back_as_shorthand_answers() -> None:
    submitted = forms.read_form(
        form(
            *[("fields", str(i)) for i in range(7)],
            ("f0", "Ann\r\nLee"),
            ("f1", " -1.5e3 "),
            ("f2", "2026-12-01"),
            ("f3", "true"),
            ("f4", "Red"),
            ("f4", "Blue"),
            ("rows.5", "2"),
            ("f5.0", "Acme"),
            ("f5.1", ""),
            ("f6", "ignored: never edited here"),
        ),
        VARIABLES,
    )
    assert submitted.errors == {}
    assert submitted.answers == {
        "Name": "Ann\nLee",
        "Fee": -1500,
        "Start": "2026-12-01",
        "Urgent": True,
        "Colour": ["Red", "Blue"],
        "Parties": ["Acme", None],
    }


def test_empty_inputs_are_unanswered_and_unlisted_fields_untouched() -> None:
    submitted = forms.read_form(
        form(("fields", "0"), ("fields", "4"), ("fields", "5"), ("f0", "  "), ("rows.5", "0")),
        VARIABLES,
    )
    assert submitted.answers == {"Name": None, "Colour": None, "Parties": None}


def test_a_repeat_with_more_rows_than_the_form_edits_is_left_as_saved() -> None:
    rows = forms.MAX_ROWS + 100
    fields = [("fields", "5"), ("rows.5", str(rows))]
    typed = [(f"f5.{n}", "x") for n in range(10)]
    submitted = forms.read_form(form(*fields, *typed), VARIABLES)
    # Not cut to the form's bound (which would delete the rest of the saved rows): untouched.
    assert "Parties" not in submitted.answers
    assert submitted.errors == {}


def test_what_cannot_be_read_stays_at_its_field() -> None:
    submitted = forms.read_form(
        form(
            *[("fields", str(i)) for i in range(6)],
            ("f0", "fine"),
            ("f1", "12abc"),
            ("f2", "2026-02-30"),
            ("f3", "maybe"),
            ("f4", "Green"),
            ("rows.5", "2"),
            ("f5.0", "Acme"),
            ("f5.1", "Beta"),
        ),
        VARIABLES,
    )
    assert submitted.answers == {"Name": "fine", "Parties": ["Acme", "Beta"]}
    assert set(submitted.errors) == {"f1", "f2", "f3", "f4"}
    assert "“12abc” is not a number" in submitted.errors["f1"]
    fields = forms.fields_of(VARIABLES, {"answers": []})
    forms.apply_problems(fields, submitted, [], {})
    assert fields[1].value == "12abc" and fields[1].invalid_ids == "f1"
    assert fields[1].error.startswith("“12abc” is not a number")


def test_a_bad_row_keeps_the_whole_repeat_as_it_was() -> None:
    variables = (VariableDef("Amounts", AnswerType.NUMBER, repeat_depth=1),)
    submitted = forms.read_form(
        form(("fields", "0"), ("rows.0", "2"), ("f0.0", "1"), ("f0.1", "two")), variables
    )
    assert submitted.answers == {}
    assert submitted.errors == {
        "f0-1": "Row 2: “two” is not a number: use digits, such as 1500 or 12.5"
    }
    assert submitted.typed == {0: ["1", "two"]}
    assert not forms.add_row(submitted, variables[0])  # nothing to add a row to


def test_rows_are_added_and_removed() -> None:
    variable = VARIABLES[5]
    submitted = forms.Submitted({"Parties": ["Acme"]}, {}, {})
    assert forms.add_row(submitted, variable)
    assert submitted.answers["Parties"] == ["Acme", None]
    assert forms.remove_row(submitted, variable, 0)
    assert submitted.answers["Parties"] == [None]
    assert not forms.remove_row(submitted, variable, 5)
    assert forms.remove_row(submitted, variable, 0)
    assert submitted.answers["Parties"] is None


def test_warnings_and_sources_land_at_their_fields() -> None:
    fields = forms.fields_of(VARIABLES, {"answers": []})
    forms.apply_problems(
        fields,
        None,
        [
            {"source": "answers", "variable": "Fee", "message": "not a number"},
            {"source": "webhook", "variable": "Start", "message": "not a date"},
        ],
        {"Name": {"webhookId": "w1", "webhookName": "Client register"}},
    )
    assert fields[0].source == "Client register"
    assert fields[1].errors == {"f1": "not a number"}
    assert fields[2].errors == {}  # a webhook's misfit is listed with its warnings instead


class _CountedErrors(dict[str, str]):
    """A form's problems, counting how often they are gone through."""

    passes = 0

    def items(self) -> Any:
        _CountedErrors.passes += 1
        return super().items()


def test_problems_reach_their_fields_in_one_pass() -> None:
    """Every problem used to be looked at for every field: a form of 5,000 unreadable
    numbers was 25 million comparisons, ten seconds of the thread building the page."""
    count = 300
    variables = [VariableDef(f"N{i}", AnswerType.NUMBER) for i in range(count)]
    submitted = forms.read_form(
        form(*[("fields", str(i)) for i in range(count)], *[(f"f{i}", "x") for i in range(count)]),
        variables,
    )
    submitted.errors = _CountedErrors(submitted.errors)
    fields = forms.fields_of(variables, {"answers": []})
    forms.apply_problems(fields, submitted, [], {})
    assert _CountedErrors.passes == 1
    assert all(f.errors == {f.id: submitted.errors[f.id]} for f in fields)
    assert [f.value for f in fields] == ["x"] * count
