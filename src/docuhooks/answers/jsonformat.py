"""Answer JSON: the canonical form, the shorthand form, and picking between them.

- Canonical: `{"answers": [{"name", "type", "value"}, …]}`. Strict: a malformed entry, an
  unknown type or a value that is not of its own declared type is an `AnswerSetError` with
  a JSON path (`answers[2].value[1]`), because the sender said what it meant and got it wrong.
  Only then is the set fitted to the template's variables, which drops misfits with warnings.
- Shorthand: `{"Client Name": "Jane", "Fee": 1500}`, typed by the template's variables. A
  value that does not fit its variable, or a name the template lacks, is dropped with a
  warning naming it; the other answers still apply.
- Dates are ISO `YYYY-MM-DD` strings in both forms.
- A JSON object whose only key is `"answers"` holding a list is canonical, unless the
  template itself declares a variable named `answers`; every other object is shorthand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from docuhooks.answers.errors import AnswerSetError
from docuhooks.answers.model import (
    Answer,
    AnswerSet,
    AnswerType,
    VariableDef,
    check_name,
    normalize_value,
)
from docuhooks.answers.validate import (
    AnswerWarning,
    WarningCode,
    fit_answers,
    unknown_variable,
)

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ENTRY_KEYS = frozenset({"name", "type", "value"})


@dataclass(frozen=True, slots=True)
class ParseResult:
    """The answers that apply, and a warning for each answer that was dropped."""

    answers: AnswerSet
    dropped: tuple[AnswerWarning, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """Each dropped answer's warning as its message."""
        return tuple(warning.message for warning in self.dropped)


def is_canonical(data: Any, variables: Mapping[str, VariableDef] | None = None) -> bool:
    return (
        isinstance(data, dict)
        and set(data) == {"answers"}
        and isinstance(data["answers"], list)
        and not (variables is not None and "answers" in variables)
    )


def parse_answer_json(data: Any, variables: Mapping[str, VariableDef] | None = None) -> ParseResult:
    """Decoded answer JSON, canonical or shorthand, fitted to `variables` when given.

    Shorthand needs `variables` (its types come from them); without them it is an error.
    """
    if is_canonical(data, variables):
        answers = parse_canonical(data)
        if variables is None:
            return ParseResult(answers)
        return ParseResult(*fit_answers(answers, variables))
    if not isinstance(data, dict):
        raise AnswerSetError(f"answer JSON must be an object, not {_json_kind(data)}", "body")
    if variables is None:
        raise AnswerSetError(
            'not canonical answer JSON ({"answers": [...]}); shorthand JSON needs the '
            "template's variable definitions to type its values",
            "body",
        )
    return parse_shorthand(data, variables)


def parse_canonical(data: Any) -> AnswerSet:
    """Canonical answer JSON → `AnswerSet`, strictly (no template needed)."""
    if not isinstance(data, dict):
        raise AnswerSetError(f"must be an object, not {_json_kind(data)}", "body")
    extra = sorted(set(data) - {"answers"})
    if extra:
        raise AnswerSetError(f"unexpected key(s) {', '.join(map(repr, extra))}", "body")
    entries = data.get("answers")
    if not isinstance(entries, list):
        raise AnswerSetError(f"must be a list, not {_json_kind(entries)}", "answers")
    answers: list[Answer] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"answers[{index}]"
        if not isinstance(entry, dict):
            raise AnswerSetError(f"must be an object, not {_json_kind(entry)}", where)
        if entry.keys() != _ENTRY_KEYS:
            _check_entry_keys(entry, where)
        name = check_name(entry["name"], f"{where}.name")
        if name in seen:
            raise AnswerSetError(f"answer {name!r} appears more than once", f"{where}.name")
        seen.add(name)
        raw_type = entry["type"]
        answer_type = _ANSWER_TYPES.get(raw_type) if isinstance(raw_type, str) else None
        if answer_type is None:
            raise AnswerSetError(
                f"unknown type {raw_type!r}; expected one of "
                + ", ".join(t.value for t in AnswerType),
                f"{where}.type",
            )
        value = value_from_json(answer_type, entry["value"], f"{where}.value")
        # Name checked and value normalised just above: Answer() would do both again.
        answers.append(Answer.checked(name, answer_type, value))
    return AnswerSet(answers)


_ANSWER_TYPES = {answer_type.value: answer_type for answer_type in AnswerType}
#: The JSON value types that are already a normalised model value of an answer type.
_PLAIN_VALUES: dict[AnswerType, type] = {
    AnswerType.TEXT: str,
    AnswerType.NUMBER: int,
    AnswerType.TRUEFALSE: bool,
}


def parse_stored(data: Any) -> AnswerSet:
    """Answers docuhooks stored itself (an `AnswerSet`'s `to_json()`, checked when it was
    written) → `AnswerSet`, the same one `parse_canonical` gives, for less.

    Every interview step reads the whole stored answer set, hundreds of answers in a large
    interview, and `parse_canonical` checks each name and value again. Here names and plain
    values (a string answer, an integer, true/false, unanswered) are taken as they are, as
    they were checked when written (only their JSON types are checked again); dates,
    choices, repeats and fractions still go through the full conversion. Data in any other
    shape (edited in the database by hand, say) is read by `parse_canonical`, so it is
    refused with the same errors."""
    try:
        entries = data["answers"]
        if not isinstance(entries, list) or data.keys() != {"answers"}:
            return parse_canonical(data)
        answers: list[Answer] = []
        for index, entry in enumerate(entries):
            if type(entry) is not dict or entry.keys() != _ENTRY_KEYS:
                return parse_canonical(data)
            name, answer_type, value = entry["name"], _ANSWER_TYPES[entry["type"]], entry["value"]
            if type(name) is not str:
                return parse_canonical(data)
            if value is not None and type(value) is not _PLAIN_VALUES.get(answer_type):
                value = value_from_json(answer_type, value, f"answers[{index}].value")
            answers.append(Answer.checked(name, answer_type, value))
        return AnswerSet(answers)
    except (KeyError, TypeError, AttributeError, AnswerSetError):
        # Not what docuhooks writes: the full reading says what is wrong, and where.
        return parse_canonical(data)


def _check_entry_keys(entry: dict[str, Any], where: str) -> None:
    missing = sorted(_ENTRY_KEYS - set(entry))
    if missing:
        raise AnswerSetError(
            f'missing {", ".join(map(repr, missing))} (use "value": null for unanswered)',
            where,
        )
    extra = sorted(set(entry) - _ENTRY_KEYS)
    if extra:
        raise AnswerSetError(f"unexpected key(s) {', '.join(map(repr, extra))}", where)


def parse_shorthand(data: Mapping[str, Any], variables: Mapping[str, VariableDef]) -> ParseResult:
    """Shorthand answer JSON → the answers that fit `variables`, with warnings for the rest."""
    typed: list[Answer] = []
    warnings: list[AnswerWarning] = []
    for name, raw in data.items():
        variable = variables.get(name)
        if variable is None:
            warnings.append(unknown_variable(name))
            continue
        try:
            value = value_from_json(variable.type, raw, f'answer "{name}"')
        except AnswerSetError as exc:
            warnings.append(
                AnswerWarning.dropped(
                    name, WarningCode.TYPE_MISMATCH, f"{exc.reason} (at {exc.location})"
                )
            )
            continue
        typed.append(Answer(name, variable.type, value))
    kept, misfits = fit_answers(AnswerSet(typed), variables)
    return ParseResult(kept, tuple(warnings) + misfits)


def value_from_json(answer_type: AnswerType, raw: Any, location: str) -> Any:
    """A JSON value → the normalised model value of `answer_type` (dates from ISO strings)."""
    return normalize_value(answer_type, _dates_from_json(answer_type, raw, location), location)


def _dates_from_json(answer_type: AnswerType, raw: Any, location: str) -> Any:
    if answer_type is not AnswerType.DATE or raw is None:
        return raw
    if isinstance(raw, list):
        return [
            _dates_from_json(answer_type, item, f"{location}[{index}]")
            for index, item in enumerate(raw)
        ]
    if isinstance(raw, str) and _ISO_DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError as exc:
            raise AnswerSetError(f"not a real date: {raw!r} ({exc})", location) from None
    raise AnswerSetError(f"a date must be a 'YYYY-MM-DD' string, not {raw!r}", location)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__
