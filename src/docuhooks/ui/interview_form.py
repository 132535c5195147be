"""The interview form ↔ answers: one field per template variable, by type, and a submitted
form read back into shorthand answer JSON for `platform.interviews.update_answers`, so the
answers go through the same reading, fitting and limits as the API's.

Form names are by the variable's position, never its name (names may hold any character):
`f3` is the fourth variable, `f3.0`, `f3.1` … the rows of a repeated one, `rows.3` how many
rows the form showed, and `fields` lists the variables the form could change. A variable
repeated more than one level deep is shown, not edited, so it is not listed and keeps its
answer. What the browser cannot check (a number with letters, an impossible date) is caught
here, shown at its field, and that answer is left as it was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from starlette.datastructures import FormData

from docuhooks.answers import VariableDef

#: Rows a repeated variable may have in the form: far above any real interview, and a
#: bound on what one submitted form can ask for.
MAX_ROWS = 500

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class Field:
    """One variable as the page shows it."""

    index: int
    variable: VariableDef
    #: The value as the inputs hold it: a string ("" unanswered) or, for multiple choice,
    #: the chosen options; for a repeated variable, one of those per row.
    value: Any
    errors: dict[str, str] = field(default_factory=dict)
    #: The webhook that supplied the answer in the step just taken, if one did.
    source: str = ""
    #: The answer of a variable repeated deeper than the form edits, as text.
    shown: str = ""

    @property
    def id(self) -> str:
        return f"f{self.index}"

    @property
    def type(self) -> str:
        return str(self.variable.type)

    @property
    def editable(self) -> bool:
        return self.variable.repeat_depth <= 1

    @property
    def repeated(self) -> bool:
        return self.variable.repeat_depth == 1

    @property
    def multiline(self) -> bool:
        values = self.value if self.repeated else [self.value]
        return any(isinstance(v, str) and "\n" in v for v in values)

    @property
    def error(self) -> str:
        return "; ".join(self.errors.values())

    @property
    def invalid_ids(self) -> str:
        """The ids of the inputs whose value could not be saved, space-separated."""
        return " ".join(self.errors)

    def row_invalid(self, row: int) -> bool:
        return f"{self.id}-{row}" in self.errors


@dataclass
class Submitted:
    """A submitted form: the shorthand answers to save, and what could not be read, by
    input id (`f3`, `f3-1` for a row), with the text as typed so the page can show it
    again."""

    answers: dict[str, Any]
    errors: dict[str, str]
    typed: dict[int, Any]


def leaf_to_form(value: Any) -> Any:
    """One canonical JSON value as an input holds it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [str(option) for option in value]
    return str(value)


def fields_of(variables: Sequence[VariableDef], answers_json: Mapping[str, Any]) -> list[Field]:
    """The form's fields from the template's variables and canonical answer JSON."""
    by_name = {entry["name"]: entry["value"] for entry in answers_json.get("answers", [])}
    fields = []
    for index, variable in enumerate(variables):
        raw = by_name.get(variable.name)
        if variable.repeat_depth == 0:
            fields.append(Field(index, variable, leaf_to_form(raw)))
        elif variable.repeat_depth == 1:
            rows = raw if isinstance(raw, list) else []
            fields.append(Field(index, variable, [leaf_to_form(row) for row in rows]))
        else:
            fields.append(Field(index, variable, [], shown=_shown(raw)))
    return fields


def _shown(value: Any) -> str:
    if value is None:
        return "Not answered"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return str(leaf_to_form(value))


def _leaf(variable: VariableDef, raw: Any) -> tuple[Any, str]:
    """A typed value from one input's text (None: unanswered), or the problem with it."""
    kind = str(variable.type)
    if kind == "multiplechoice":
        chosen = [option for option in raw if option] if isinstance(raw, list) else []
        unknown = [option for option in chosen if option not in variable.options]
        if unknown:
            return None, f"{unknown[0]!r} is not one of the choices"
        return (chosen or None), ""
    text = raw if isinstance(raw, str) else ""
    if kind == "text":
        # Browsers send line breaks as CRLF; the answer keeps the plain \n it was given.
        text = text.replace("\r\n", "\n")
        return (text if text.strip() else None), ""
    text = text.strip()
    if not text:
        return None, ""
    if kind == "number":
        if not _NUMBER.fullmatch(text):
            return None, f"“{text}” is not a number: use digits, such as 1500 or 12.5"
        number = float(text)
        if not math.isfinite(number):
            return None, f"“{text}” is too large a number"
        return (int(number) if number.is_integer() and abs(number) < 2**53 else number), ""
    if kind == "date":
        try:
            if not _ISO_DATE.fullmatch(text):
                raise ValueError(text)
            return date.fromisoformat(text).isoformat(), ""
        except ValueError:
            return None, f"“{text}” is not a date: pick one, or type it as YYYY-MM-DD"
    if kind == "truefalse":
        if text in ("true", "false"):
            return text == "true", ""
        return None, "choose Yes, No or Not answered"
    return None, f"unknown variable type {kind}"  # pragma: no cover (types are fixed)


def _input(form: FormData, name: str, variable: VariableDef) -> Any:
    if str(variable.type) == "multiplechoice":
        return [v for v in form.getlist(name) if isinstance(v, str)]
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _whole(text: Any, default: int = 0) -> int:
    try:
        return int(str(text))
    except ValueError:
        return default


def read_form(form: FormData, variables: Sequence[VariableDef]) -> Submitted:
    """The answers of every variable the form could change, as shorthand answer JSON."""
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    typed: dict[int, Any] = {}
    listed = {_whole(v, -1) for v in form.getlist("fields")}
    for index, variable in enumerate(variables):
        if index not in listed or variable.repeat_depth > 1:
            continue
        key = f"f{index}"
        if variable.repeat_depth == 0:
            raw = _input(form, key, variable)
            value, problem = _leaf(variable, raw)
            if problem:
                errors[key] = problem
                typed[index] = raw
            else:
                answers[variable.name] = value
            continue
        count = max(_whole(form.get(f"rows.{index}")), 0)
        if count > MAX_ROWS:
            # More rows than this form edits (an answer set from the API or a file may
            # hold more): left out, so the saved answer stays whole rather than cut short.
            continue
        raws = [_input(form, f"{key}.{row}", variable) for row in range(count)]
        values = []
        for row, raw in enumerate(raws):
            value, problem = _leaf(variable, raw)
            if problem:
                errors[f"{key}-{row}"] = f"Row {row + 1}: {problem}"
            values.append(value)
        if any(name.startswith(f"{key}-") for name in errors):
            typed[index] = raws
        else:
            answers[variable.name] = values or None
    return Submitted(answers, errors, typed)


def add_row(submitted: Submitted, variable: VariableDef) -> bool:
    """One more (unanswered) row for a repeated variable whose rows were all readable."""
    rows = submitted.answers.get(variable.name)
    if variable.name not in submitted.answers or len(rows or []) >= MAX_ROWS:
        return False
    submitted.answers[variable.name] = [*(rows or []), None]
    return True


def remove_row(submitted: Submitted, variable: VariableDef, row: int) -> bool:
    rows = submitted.answers.get(variable.name)
    if not isinstance(rows, list) or not 0 <= row < len(rows):
        return False
    remaining = rows[:row] + rows[row + 1 :]
    submitted.answers[variable.name] = remaining or None
    return True


def apply_problems(
    fields: list[Field],
    submitted: Submitted | None,
    warnings: Sequence[Mapping[str, Any]],
    sources: Mapping[str, Mapping[str, str]],
) -> None:
    """Put what could not be saved back at its field (as typed, with the reason), the
    warnings about one of the person's answers at that answer's field, and each webhook's
    mark."""
    by_name = {f.variable.name: f for f in fields}
    if submitted is not None:
        # Each problem goes to its field (`f3`, or `f3-1` for a row) in one pass: looking
        # through every problem for every field made a form of 5,000 unreadable numbers
        # 25 million comparisons, ten seconds of one thread.
        by_id = {f.id: f for f in fields}
        for key, problem in submitted.errors.items():
            target = by_id.get(key.split("-", 1)[0])
            if target is not None:
                target.errors[key] = problem
        for f in fields:
            if f.index in submitted.typed:
                f.value = submitted.typed[f.index]
    for warning in warnings:
        if warning.get("source") == "webhook":
            continue  # said with the webhook's other warnings, naming the answer
        target = by_name.get(str(warning.get("variable") or ""))
        if target is not None:
            target.errors.setdefault(target.id, str(warning.get("message", "")))
    for name, source in sources.items():
        if name in by_name:
            by_name[name].source = str(source.get("webhookName", ""))
