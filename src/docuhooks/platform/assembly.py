"""Assembly: render a template DOCX from an answer set with docxtpl.

How answers appear to the template, by the identifiers of `templates.template_identifier`:
- text: the string; text with line breaks keeps them as line breaks in the document;
- number: the `int` or `float`, so arithmetic and filters work (`{{ Fee * 2 }}`);
- date: a `datetime.date` that prints as `29 November 2026` (English month names, whatever
  the server's locale) and keeps `strftime` for other formats;
- truefalse: a `bool`, for `{% if Is_Company %}`;
- multiplechoice: a list of the selected options that prints as `Red, Blue`, so both
  `{{ Colours }}` and `{% for c in Colours %}` / `{% if "Red" in Colours %}` work;
- a repeated answer: a list (of lists, for deeper repeats), so `{%tr for c in Child_Name %}`
  makes one table row per iteration; an unanswered iteration is an empty string.
An unanswered variable is left out of the context: it prints as nothing and loops zero times.
Only declared variables reach the template, and only answers of the declared type.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date
from typing import Any

import jinja2
from docxtpl import DocxTemplate, Listing

from docuhooks.answers.model import AnswerSet, Selection, Value, VariableDef
from docuhooks.platform.docxcheck import DocxLimits
from docuhooks.platform.templates import (
    OutputTooLarge,
    check_docx,
    sandboxed_environment,
    template_identifier,
)

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


class AssemblyError(ValueError):
    """The template could not be rendered with these answers; the message says why."""


class TemplateDate(date):
    """A date that prints the way a document would write it."""

    def __str__(self) -> str:
        return f"{self.day} {_MONTHS[self.month - 1]} {self.year}"


class Choices(list[str]):
    """The selected options of a multiple-choice answer; prints as a comma-separated list."""

    def __str__(self) -> str:
        return ", ".join(self)


def assemble(
    template_docx: bytes,
    answers: AnswerSet,
    variables: Sequence[VariableDef],
    *,
    docx_limits: DocxLimits | None = None,
    output_limit: int | None = None,
) -> bytes:
    """Render `template_docx` with `answers`; return the assembled DOCX bytes.

    The template must pass the DOCX checks (`docx_limits`); the text the render produces,
    and the document it saves, are held to `output_limit` (`OutputTooLarge`). Time and
    memory are not bounded here: the render pool runs this in a process that bounds them."""
    check_docx(template_docx, docx_limits)
    template = DocxTemplate(io.BytesIO(template_docx))
    try:
        template.render(
            template_context(answers, variables),
            jinja_env=sandboxed_environment(output_limit),
            autoescape=True,
        )
    except jinja2.TemplateError as exc:
        raise AssemblyError(f"the template could not be rendered: {exc}") from None
    out = io.BytesIO()
    template.save(out)
    if output_limit is not None and out.tell() > output_limit:
        raise OutputTooLarge(output_limit)
    return out.getvalue()


def template_context(answers: AnswerSet, variables: Sequence[VariableDef]) -> dict[str, Any]:
    """The Jinja context for `answers`, keyed by template identifier (see module docstring)."""
    context: dict[str, Any] = {}
    for variable in variables:
        answer = answers.get(variable.name)
        if answer is None or answer.value is None or answer.type is not variable.type:
            continue
        context[template_identifier(variable.name)] = _context_value(answer.value)
    return context


def _context_value(value: Value) -> Any:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return [_context_value(item) for item in value]
    if isinstance(value, Selection):
        return Choices(value.options)
    if isinstance(value, date):
        return TemplateDate(value.year, value.month, value.day)
    if isinstance(value, str) and "\n" in value:
        # Listing turns line breaks into Word line breaks instead of spaces.
        return Listing(value.replace("\r\n", "\n").replace("\r", "\n"))
    return value
