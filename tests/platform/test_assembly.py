"""Assembly: render the template with answers, read it back, find every answer in place."""

from __future__ import annotations

from datetime import date

import pytest
from tests.platform.docx_factory import (
    STANDARD_VARIABLES,
    document_text,
    make_docx,
    standard_template,
)

from docuhooks.answers import Answer, AnswerSet, AnswerType, VariableDef
from docuhooks.platform.assembly import AssemblyError, assemble, template_context
from docuhooks.platform.templates import inspect_template

FULL = AnswerSet(
    [
        Answer("Client Name", AnswerType.TEXT, "Jane & Co <Ltd>"),
        Answer("Fee", AnswerType.NUMBER, 1500),
        Answer("Start Date", AnswerType.DATE, date(2026, 11, 29)),
        Answer("Is Company", AnswerType.TRUEFALSE, True),
        Answer("Colours", AnswerType.MULTIPLECHOICE, ("Red", "Blue")),
        Answer("Child Name", AnswerType.TEXT, ("Ann", "Bob", None, "Dé")),
    ]
)


def test_every_answer_appears_where_its_placeholder_was() -> None:
    paragraphs, tables = document_text(assemble(standard_template(), FULL, STANDARD_VARIABLES))
    assert paragraphs == [
        "Client: Jane & Co <Ltd>",
        "Fee: 1500",
        "Start: 29 November 2026",
        "Company client",
        "Colours: Red, Blue",
    ]
    assert tables == [[["#", "Child"], ["1", "Ann"], ["2", "Bob"], ["3", ""], ["4", "Dé"]]]


def test_the_assembled_document_is_itself_a_valid_docx_without_placeholders() -> None:
    assembled = assemble(standard_template(), FULL, STANDARD_VARIABLES)
    assert inspect_template(assembled).placeholders == ()


def test_unanswered_variables_render_empty_and_loop_zero_times() -> None:
    answers = AnswerSet([Answer("Is Company", AnswerType.TRUEFALSE, False)])
    paragraphs, tables = document_text(assemble(standard_template(), answers, STANDARD_VARIABLES))
    assert paragraphs == ["Client: ", "Fee: ", "Start: ", "Individual client", "Colours: "]
    assert tables == [[["#", "Child"]]]


def test_answers_of_undeclared_names_or_wrong_types_do_not_reach_the_template() -> None:
    answers = AnswerSet(
        [
            Answer("Fee", AnswerType.TEXT, "a lot"),
            Answer("Client Name", AnswerType.TEXT, "Jane"),
            Answer("Secret", AnswerType.TEXT, "hidden"),
        ]
    )
    context = template_context(answers, STANDARD_VARIABLES)
    assert context == {"Client_Name": "Jane"}


def test_numbers_dates_and_choices_keep_their_python_behaviour() -> None:
    docx = make_docx(
        [
            "{{ Fee * 2 }} {{ Rate }}",
            "{{ Start_Date.strftime('%d/%m/%Y') }} {{ Start_Date.year }}",
            "{% if 'Red' in Colours %}has red{% endif %} {{ Colours|length }}",
        ]
    )
    variables = [
        VariableDef("Fee", AnswerType.NUMBER),
        VariableDef("Rate", AnswerType.NUMBER),
        VariableDef("Start Date", AnswerType.DATE),
        VariableDef("Colours", AnswerType.MULTIPLECHOICE, options=("Red", "Blue")),
    ]
    answers = AnswerSet(
        [
            Answer("Fee", AnswerType.NUMBER, 1500),
            Answer("Rate", AnswerType.NUMBER, 12.5),
            Answer("Start Date", AnswerType.DATE, date(2026, 1, 5)),
            Answer("Colours", AnswerType.MULTIPLECHOICE, ("Blue", "Red")),
        ]
    )
    paragraphs, _ = document_text(assemble(docx, answers, variables))
    assert paragraphs == ["3000 12.5", "05/01/2026 2026", "has red 2"]


def test_nested_repeats_render_as_nested_lists() -> None:
    docx = make_docx(
        ["{% for family in Kids %}[{% for kid in family %}{{ kid }};{% endfor %}]{% endfor %}"]
    )
    variables = [VariableDef("Kids", AnswerType.TEXT, repeat_depth=2)]
    answers = AnswerSet([Answer("Kids", AnswerType.TEXT, (("Ann", "Bob"), None, ("Cy",)))])
    paragraphs, _ = document_text(assemble(docx, answers, variables))
    assert paragraphs == ["[Ann;Bob;][][Cy;]"]


def test_multi_line_text_keeps_its_line_breaks() -> None:
    import io

    from docx import Document

    docx = make_docx(["Address: {{ Address }}"])
    variables = [VariableDef("Address", AnswerType.TEXT)]
    answers = AnswerSet([Answer("Address", AnswerType.TEXT, "1 High St\nTown & City")])
    assembled = assemble(docx, answers, variables)
    body = Document(io.BytesIO(assembled)).element.body.xml
    assert "<w:br/>" in body
    assert document_text(assembled)[0] == ["Address: 1 High St\nTown & City"]


def test_templates_render_in_the_sandbox() -> None:
    docx = make_docx(["{{ Name.__class__.__mro__[1].__subclasses__() }}"])
    variables = [VariableDef("Name", AnswerType.TEXT)]
    answers = AnswerSet([Answer("Name", AnswerType.TEXT, "x")])
    with pytest.raises(AssemblyError, match="could not be rendered"):
        assemble(docx, answers, variables)


def test_rendering_errors_are_assembly_errors() -> None:
    docx = make_docx(["{{ Fee + 1 }}"])
    with pytest.raises(AssemblyError, match="could not be rendered"):
        assemble(docx, AnswerSet(), [VariableDef("Fee", AnswerType.NUMBER)])
