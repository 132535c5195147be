"""Template inspection: DOCX checks, placeholders found, syntax errors refused, declarations."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from tests.platform.docx_factory import STANDARD_VARIABLES, make_docx, standard_template

from docuhooks.answers import AnswerType, VariableDef
from docuhooks.errors import ValidationFailed
from docuhooks.platform.catalog import (
    MAX_EVENT_ELEMENTS,
    MAX_OPTIONS,
    MAX_VARIABLES,
    parse_definition,
)
from docuhooks.platform.templates import (
    OutputTooLarge,
    TemplateError,
    TemplateInfo,
    check_declarations,
    inspect_template,
    sandboxed_environment,
    template_identifier,
)


def test_standard_template_placeholders_are_found() -> None:
    info = inspect_template(standard_template())
    # The loop variable `child` and Jinja's own `loop` are not placeholders.
    assert info.placeholders == (
        "Child_Name",
        "Client_Name",
        "Colours",
        "Fee",
        "Is_Company",
        "Start_Date",
    )


def test_standard_declarations_fit_the_standard_template() -> None:
    check = check_declarations(inspect_template(standard_template()), STANDARD_VARIABLES)
    assert check.ok
    assert check.errors == ()
    assert check.warnings == ()


def test_jinja_globals_and_filters_are_not_placeholders() -> None:
    docx = make_docx(["{% for i in range(Count) %}{{ i }}{% endfor %} {{ Name|upper }}"])
    assert inspect_template(docx).placeholders == ("Count", "Name")


def test_placeholders_in_headers_are_found() -> None:
    from docx import Document

    document = Document()
    document.sections[0].header.paragraphs[0].text = "{{ Header_Var }}"
    document.add_paragraph("{{ Body_Var }}")
    out = io.BytesIO()
    document.save(out)
    assert inspect_template(out.getvalue()).placeholders == ("Body_Var", "Header_Var")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{{ Client Name }}", "cannot be parsed"),
        ("{% for c in Kids %}no end", "cannot be parsed"),
        ("{{ Fee + }}", "cannot be parsed"),
        ("{% endif %}", "cannot be parsed"),
    ],
)
def test_unparseable_placeholders_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(TemplateError) as caught:
        inspect_template(make_docx(["before", text, "after"]))
    assert reason in str(caught.value)
    assert len(str(caught.value)) > len("a placeholder cannot be parsed: ")


def test_not_a_zip_is_refused() -> None:
    with pytest.raises(TemplateError, match="not a zip archive"):
        inspect_template(b"%PDF-1.7 not a docx")


def test_a_zip_without_docx_parts_is_refused_naming_the_part() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
    with pytest.raises(TemplateError, match=r"word/document\.xml"):
        inspect_template(out.getvalue())


@pytest.mark.parametrize(
    ("name", "identifier"),
    [
        ("Client Name", "Client_Name"),
        ("Fee", "Fee"),
        ("Child's  Name", "Child_s_Name"),
        ("1st Party", "_1st_Party"),
        ("Größe des Hauses", "Größe_des_Hauses"),
        ("a-b.c", "a_b_c"),
    ],
)
def test_template_identifier(name: str, identifier: str) -> None:
    assert template_identifier(name) == identifier
    assert identifier.isidentifier()


def test_undeclared_placeholder_is_an_error_and_unused_variable_a_warning() -> None:
    info = TemplateInfo(("Client_Name", "Unknown_Thing"))
    check = check_declarations(
        info,
        [VariableDef("Client Name", AnswerType.TEXT), VariableDef("Spare", AnswerType.NUMBER)],
    )
    assert not check.ok
    assert check.errors == (
        "placeholder 'Unknown_Thing' in the document matches no declared variable",
    )
    assert check.warnings == ('variable "Spare": declared but not used in the document',)


def test_colliding_duplicate_and_reserved_names_are_errors() -> None:
    check = check_declarations(
        TemplateInfo(()),
        [
            VariableDef("Client Name", AnswerType.TEXT),
            VariableDef("Client_Name", AnswerType.TEXT),
            VariableDef("Fee", AnswerType.NUMBER),
            VariableDef("Fee", AnswerType.NUMBER),
            VariableDef("loop", AnswerType.TEXT),
        ],
        event_elements=["Look up client", " Look up client ", "  "],
    )
    assert any("both appear in the template as 'Client_Name'" in e for e in check.errors)
    assert 'variable "Fee": declared more than once' in check.errors
    assert any('"loop"' in e and "reserved" in e for e in check.errors)
    assert 'interview event element "Look up client": declared more than once' in check.errors
    assert "interview event element 3: the name is empty" in check.errors


def test_string_repetition_past_the_output_budget_is_refused_before_it_is_built() -> None:
    environment = sandboxed_environment(output_limit=1000)
    with pytest.raises(OutputTooLarge, match="render_output_limit_bytes"):
        environment.from_string("{{ name * times }}").render(name="abc", times=10**9)
    with pytest.raises(OutputTooLarge):
        environment.from_string("{{ [1, 2] * 10**6 }}").render()
    assert environment.from_string("{{ 'ab' * 3 }}{{ 2 * 3 }}").render() == "ababab6"


def test_the_output_budget_counts_every_part_rendered_with_the_environment() -> None:
    environment = sandboxed_environment(output_limit=100)
    loop = environment.from_string("{% for i in range(30) %}x{% endfor %}")
    for _ in range(3):
        assert loop.render() == "x" * 30
    with pytest.raises(OutputTooLarge):
        loop.render()  # 90 characters so far: the next 30 pass the budget of 100
    assert sandboxed_environment().from_string("{{ 'x' * 5000 }}").render() == "x" * 5000


def test_huge_powers_and_ranges_are_refused_by_the_sandbox() -> None:
    environment = sandboxed_environment()
    with pytest.raises(OverflowError, match="exponents"):
        environment.from_string("{{ 10 ** 100000 }}").render()
    assert environment.from_string("{{ 2 ** 10 }}").render() == "1024"
    with pytest.raises(OverflowError, match="MAX_RANGE"):
        environment.from_string("{% for i in range(10**8) %}{% endfor %}").render()


@pytest.mark.parametrize(
    ("definition", "field", "said"),
    [
        (
            {"variables": [{"name": f"V{i}", "type": "text"} for i in range(MAX_VARIABLES + 1)]},
            "definition.variables",
            f"declares {MAX_VARIABLES + 1} variables; a template may have {MAX_VARIABLES}",
        ),
        (
            {"eventElements": [f"Button {i}" for i in range(MAX_EVENT_ELEMENTS + 1)]},
            "definition.eventElements",
            f"names {MAX_EVENT_ELEMENTS + 1} event elements",
        ),
        (
            {
                "variables": [
                    {
                        "name": "Colour",
                        "type": "multiplechoice",
                        "options": [f"c{i}" for i in range(MAX_OPTIONS + 1)],
                    }
                ]
            },
            "definition.variables[0].options",
            f"has {MAX_OPTIONS + 1} options",
        ),
    ],
)
def test_a_definition_past_the_template_limits_is_refused_naming_the_limit(
    definition: dict[str, object], field: str, said: str
) -> None:
    """Every variable is a field of the interview page and every button a control, rendered
    on every visit: a definition of tens of thousands held the server for seconds a page."""
    with pytest.raises(ValidationFailed) as refused:
        parse_definition(json.dumps(definition))
    assert [(d.field, said in d.message) for d in refused.value.details] == [(field, True)]


def test_a_definition_at_the_template_limits_is_taken() -> None:
    definition = {
        "variables": [{"name": f"V{i}", "type": "text"} for i in range(MAX_VARIABLES - 1)]
        + [
            {
                "name": "Colour",
                "type": "multiplechoice",
                "options": [f"c{i}" for i in range(MAX_OPTIONS)],
            }
        ],
        "eventElements": [f"Button {i}" for i in range(MAX_EVENT_ELEMENTS)],
    }
    parsed = parse_definition(json.dumps(definition))
    assert (len(parsed.variables), len(parsed.event_elements)) == (
        MAX_VARIABLES,
        MAX_EVENT_ELEMENTS,
    )
