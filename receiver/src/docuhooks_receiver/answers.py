"""Build the answer set an interview webhook replies with.

Standard library only, so a receiver can use it without the server installed::

    answers = (
        AnswerSetBuilder()
        .text("Client Name", "Jane")
        .number("Fee", 1500)
        .date("Start Date", date(2026, 11, 29))
        .truefalse("Is Company", True)
        .multiple_choice("Colours", ["Red", "Blue"])
        .text("Child Name", ["Ann", "Bob"])          # a repeated answer
        .unanswered("Missing", "text")
    )
    return JSONResponse(answers.to_json())               # application/json
    return Response(answers.to_xml(), media_type="application/xml")   # HotDocs answer XML

Repeated answers are lists (nested lists for nested repeats, at most four levels); `None`
is unanswered. For `multiple_choice`, a list of strings is one selection and a list of
lists is a repeat.

`write_hotdocs_xml` is the codebase's one HotDocs answer XML writer; the server uses it too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

__all__ = ["ANSWER_TYPES", "AnswerSetBuilder", "shorthand", "write_hotdocs_xml"]

ANSWER_TYPES = ("text", "number", "date", "truefalse", "multiplechoice")
MAX_REPEAT_DEPTH = 4

_VALUE_ELEMENT = {
    "text": "TextValue",
    "number": "NumValue",
    "date": "DateValue",
    "truefalse": "TFValue",
    "multiplechoice": "MCValue",
}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class AnswerSetBuilder:
    """Collects answers in order; each method checks its value and returns the builder."""

    def __init__(self) -> None:
        self._answers: list[dict[str, Any]] = []

    def text(self, name: str, value: Any) -> AnswerSetBuilder:
        return self._add(name, "text", value)

    def number(self, name: str, value: Any) -> AnswerSetBuilder:
        return self._add(name, "number", value)

    def date(self, name: str, value: Any) -> AnswerSetBuilder:
        """`value`: a `datetime.date` or an ISO `YYYY-MM-DD` string (or a list of them)."""
        return self._add(name, "date", value)

    def truefalse(self, name: str, value: Any) -> AnswerSetBuilder:
        return self._add(name, "truefalse", value)

    def multiple_choice(self, name: str, value: Any) -> AnswerSetBuilder:
        """`value`: the selected options, e.g. `["Red", "Blue"]`; a list of such lists for a
        repeated answer."""
        return self._add(name, "multiplechoice", value)

    def unanswered(self, name: str, answer_type: str) -> AnswerSetBuilder:
        """Say explicitly that `name` has no answer: it clears the interview's answer."""
        return self._add(name, answer_type, None)

    def to_json(self) -> dict[str, Any]:
        """The canonical answer JSON, ready for `json.dumps`."""
        return {"answers": [dict(answer) for answer in self._answers]}

    def to_xml(self) -> bytes:
        """HotDocs answer XML (`AnswerSet` version 1.1), UTF-8."""
        return write_hotdocs_xml(self.to_json())

    def _add(self, name: str, answer_type: str, value: Any) -> AnswerSetBuilder:
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"answer name {name!r}: must be a non-empty string, not padded")
        if answer_type not in ANSWER_TYPES:
            raise ValueError(
                f"answer {name!r}: unknown type {answer_type!r}; "
                f"expected one of {', '.join(ANSWER_TYPES)}"
            )
        if any(answer["name"] == name for answer in self._answers):
            raise ValueError(f"answer {name!r}: given twice")
        json_value = _to_json_value(answer_type, value, f"answer {name!r}", 0)
        self._answers.append({"name": name, "type": answer_type, "value": json_value})
        return self


def shorthand(values: Mapping[str, Any]) -> dict[str, Any]:
    """Shorthand answer JSON (`{"Client Name": "Jane", "Fee": 1500}`) from Python values.

    Dates become ISO strings and tuples lists; the platform types each value by the
    template's variable definitions, so only JSON-ready values are accepted here.
    """
    return {
        _check_key(name): _shorthand_value(value, f"answer {name!r}")
        for name, value in values.items()
    }


def _check_key(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"answer name {name!r}: must be a non-empty string")
    return name


def _shorthand_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: a number must be finite, not {value}")
        return value
    if isinstance(value, datetime):
        raise ValueError(f"{where}: give a date, not a datetime")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_shorthand_value(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise ValueError(f"{where}: {type(value).__name__} cannot be an answer value")


def _is_selection(answer_type: str, value: Any) -> bool:
    return (
        answer_type == "multiplechoice"
        and isinstance(value, list | tuple)
        and all(isinstance(v, str) for v in value)
    )


def _to_json_value(answer_type: str, value: Any, where: str, level: int) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple) and not _is_selection(answer_type, value):
        if level == MAX_REPEAT_DEPTH:
            raise ValueError(f"{where}: repeats nest deeper than {MAX_REPEAT_DEPTH} levels")
        return [
            _to_json_value(answer_type, item, f"{where}[{i}]", level + 1)
            for i, item in enumerate(value)
        ]
    kind = type(value).__name__
    if answer_type == "text":
        if not isinstance(value, str):
            raise ValueError(f"{where}: a text value must be a string, not {kind}")
        _check_xml_text(value, where)
        return value
    if answer_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: a number value must be a number, not {kind}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: a number value must be finite, not {value}")
        return value
    if answer_type == "date":
        return _iso_date(value, where)
    if answer_type == "truefalse":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: a truefalse value must be True or False, not {kind}")
        return value
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}: a multiplechoice value must be a list of options, not {kind}")
    for option in value:
        _check_xml_text(option, where)
    return list(value)


def _iso_date(value: Any, where: str) -> str:
    if isinstance(value, datetime):
        raise ValueError(f"{where}: give a date, not a datetime")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(f"{where}: a date value must be a date or 'YYYY-MM-DD', not {value!r}")


def _check_xml_text(text: str, where: str) -> None:
    bad = _NOT_XML_CHAR.search(text)
    if bad is not None:
        raise ValueError(f"{where}: the character U+{ord(bad.group()):04X} cannot go in XML")


# --- the HotDocs answer XML writer --------------------------------------------------------


def write_hotdocs_xml(answer_json: Mapping[str, Any], *, title: str = "") -> bytes:
    """Canonical answer JSON → HotDocs answer XML (UTF-8 bytes).

    Written by hand rather than with `xml.etree` so that every character survives a read
    back: carriage returns and tabs are written as character references, which XML parsers
    would otherwise normalise away. Each answer is on its own line; nothing is added inside
    a value, so leading and trailing white space in text is kept.
    """
    entries = answer_json.get("answers")
    if not isinstance(entries, list):
        raise ValueError("answers: must be a list")
    lines = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
        f'<AnswerSet title="{_escape_attribute(title)}" version="1.1">',
    ]
    for index, entry in enumerate(entries):
        where = f"answers[{index}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: must be an object")
        name, answer_type = entry.get("name"), entry.get("type")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}.name: must be a non-empty string")
        _check_xml_text(name, f"{where}.name")
        if answer_type not in _VALUE_ELEMENT:
            raise ValueError(f"{where}.type: unknown type {answer_type!r}")
        value = _value_xml(answer_type, entry.get("value"), f"answer {name!r}", 0)
        lines.append(f'  <Answer name="{_escape_attribute(name)}">{value}</Answer>')
    lines.append("</AnswerSet>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def _value_xml(answer_type: str, value: Any, where: str, level: int) -> str:
    element = _VALUE_ELEMENT[answer_type]
    if value is None:
        return f'<{element} unans="true"/>'
    if isinstance(value, list | tuple) and not _is_selection(answer_type, value):
        if level == MAX_REPEAT_DEPTH:
            raise ValueError(f"{where}: repeats nest deeper than {MAX_REPEAT_DEPTH} levels")
        if not value:
            # An empty RptValue would not say its type; zero iterations is unanswered.
            return f'<{element} unans="true"/>'
        inner = "".join(
            _value_xml(answer_type, item, f"{where}[{i}]", level + 1)
            for i, item in enumerate(value)
        )
        return f"<RptValue>{inner}</RptValue>"
    if answer_type == "multiplechoice":
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: a multiplechoice value must be a list of options")
        if not value:
            return "<MCValue/>"
        selected = "".join(f"<SelValue>{_escape_text(option)}</SelValue>" for option in value)
        return f"<MCValue>{selected}</MCValue>"
    return f"<{element}>{_escape_text(_leaf_text(answer_type, value, where))}</{element}>"


def _leaf_text(answer_type: str, value: Any, where: str) -> str:
    if answer_type == "text":
        if not isinstance(value, str):
            raise ValueError(f"{where}: a text value must be a string")
        _check_xml_text(value, where)
        return value
    if answer_type == "number":
        return format_number(value, where)
    if answer_type == "date":
        day = date.fromisoformat(_iso_date(value, where))
        # HotDocs writes day/month/year; four-digit years keep years below 1000 unambiguous.
        return f"{day.day}/{day.month}/{day.year:04d}"
    if not isinstance(value, bool):
        raise ValueError(f"{where}: a truefalse value must be true or false")
    return "true" if value else "false"


def format_number(value: Any, where: str = "number") -> str:
    """A number as HotDocs writes it: plain decimal digits, never an exponent.

    Whole numbers have no decimal point (`1500.0` → `1500`); other floats use the shortest
    digits that read back as the same float.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: a number value must be a number")
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: a number value must be finite, not {value}")
    if value.is_integer():
        return str(int(value))
    return format(Decimal(repr(value)), "f")


def _escape_text(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _escape_attribute(text: str) -> str:
    return _escape_text(text).replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")
