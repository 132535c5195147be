"""The interview form ↔ answers, without a server: fields by type, a submitted form read
back as shorthand answers, and what cannot be read kept at its field."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from docuhooks.answers import VariableDef
from docuhooks.answers.model import AnswerType
from docuhooks.ui import interview_form as forms
from docuhooks.ui.interview_layout import ROWS_SHOWN, View, lay_out

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


def fields_of(variables: Any, answers: dict[str, Any], view: View | None = None) -> Any:
    """The fields of the page `view` (the first) shows of these answers."""
    layout = lay_out(variables, forms.values_by_name(answers), view or View())
    return forms.fields_of(variables, answers, layout)


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
    fields = fields_of(VARIABLES, answers)
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
        {},
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
        {},
    )
    assert submitted.answers == {"Name": None, "Colour": None, "Parties": None}


def test_saving_a_window_of_rows_keeps_the_rows_not_shown() -> None:
    """A page shows some rows of a long repeat (`start.5`, `rows.5`): the answer saved is
    the saved rows with those replaced, however many there are."""
    saved = {"Parties": [f"Party {n}" for n in range(1_000)]}
    shown = [(f"f5.{n}", f"Changed {n}") for n in range(500, 525)]
    submitted = forms.read_form(
        form(("fields", "5"), ("start.5", "500"), ("rows.5", "25"), *shown), VARIABLES, saved
    )
    rows = submitted.answers["Parties"]
    assert len(rows) == 1_000
    assert rows[:500] == saved["Parties"][:500] and rows[525:] == saved["Parties"][525:]
    assert rows[500:525] == [f"Changed {n}" for n in range(500, 525)]
    # More rows than a page shows are not read: the form cannot cut the answer short.
    typed = [(f"f5.{n}", "x") for n in range(2_000)]
    submitted = forms.read_form(form(("fields", "5"), ("rows.5", "2000"), *typed), VARIABLES, saved)
    assert submitted.answers["Parties"] == ["x"] * ROWS_SHOWN + saved["Parties"][ROWS_SHOWN:]
    # A field not in the form keeps its answer whole.
    assert forms.read_form(form(("fields", "0")), VARIABLES, saved).answers == {"Name": None}


def test_only_the_answers_that_changed_are_saved() -> None:
    saved = {"Name": "Ann", "Parties": ["Acme", "Beta"]}
    submitted = forms.read_form(
        form(("fields", "0"), ("fields", "5"), ("f0", "Ann"), ("rows.5", "1"), ("f5.0", "Acme")),
        VARIABLES,
        saved,
    )
    assert forms.changed(submitted, saved) == {}
    submitted.answers["Name"] = "Bo"
    assert forms.changed(submitted, saved) == {"Name": "Bo"}


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
        {},
    )
    assert submitted.answers == {"Name": "fine", "Parties": ["Acme", "Beta"]}
    assert set(submitted.errors) == {"f1", "f2", "f3", "f4"}
    assert "“12abc” is not a number" in submitted.errors["f1"]
    fields = fields_of(VARIABLES, {"answers": []})
    forms.apply_problems(fields, submitted, [], {})
    assert fields[1].value == "12abc" and fields[1].invalid_ids == "f1"
    assert fields[1].error.startswith("“12abc” is not a number")


def test_a_bad_row_keeps_the_whole_repeat_as_it_was() -> None:
    variables = (VariableDef("Amounts", AnswerType.NUMBER, repeat_depth=1),)
    submitted = forms.read_form(
        form(("fields", "0"), ("rows.0", "2"), ("f0.0", "1"), ("f0.1", "two")), variables, {}
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
    fields = fields_of(VARIABLES, {"answers": []})
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
        {},
    )
    submitted.errors = _CountedErrors(submitted.errors)
    fields = fields_of(variables, {"answers": []})
    forms.apply_problems(fields, submitted, [], {})
    assert _CountedErrors.passes == 1
    assert all(f.errors == {f.id: submitted.errors[f.id]} for f in fields)
    assert [f.value for f in fields] == ["x"] * count


def test_a_choice_keeps_each_option_once_and_one_stranger() -> None:
    """A forged multiple choice of 100,000 values (the most a form carries) was kept whole to
    be drawn again at its problem, each value tested against every option; now each option
    once, in the order chosen, and only the first value that is not one, which the problem
    names."""
    forged = [("f4", "Blue"), ("f4", "Red"), ("f4", "Blue")]
    forged += [("f4", f"Stranger {i}") for i in range(100_000)]
    submitted = forms.read_form(form(("fields", "4"), *forged), VARIABLES, {})
    assert submitted.errors["f4"].startswith("'Stranger 0' is not one of the choices")
    assert submitted.typed == {4: ["Blue", "Red", "Stranger 0"]}
    chosen = forms.read_form(
        form(("fields", "4"), ("f4", "Blue"), ("f4", "Red"), ("f4", "Blue")), VARIABLES, {}
    )
    assert chosen.answers == {"Colour": ["Blue", "Red"]}
