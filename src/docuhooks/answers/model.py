"""Answers, answer sets and template variable definitions.

Values are held as plain, immutable Python objects so that two answer sets compare equal
exactly when they mean the same thing:

| type             | one value                      | canonical JSON          |
|------------------|--------------------------------|-------------------------|
| `text`           | `str`                          | string                  |
| `number`         | `int`, or `float` if not whole | number                  |
| `date`           | `datetime.date`                | `"YYYY-MM-DD"`          |
| `truefalse`      | `bool`                         | `true` / `false`        |
| `multiplechoice` | `Selection`                    | list of option strings  |

A repeated answer is a `tuple` of values (nested tuples for deeper repeats, at most
`MAX_REPEAT_DEPTH`); `None` is unanswered, at the top or for any single iteration.

Normalisation, so that every form reads back the same way it was written:
- a whole float becomes an `int` (`1500.0` → `1500`): HotDocs writes `1500` for both;
- a repeat with no iterations becomes `None`: HotDocs XML has no way to say the type of an
  empty `RptValue`, and "no iterations" means nothing was answered;
- for `multiplechoice`, a list of strings (including `[]`) is a selection; any other list is
  a repeat, so `[]` is "nothing selected" and `[[]]` is one iteration with nothing selected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeAlias

from docuhooks.answers.errors import AnswerSetError

MAX_REPEAT_DEPTH = 4
MAX_NAME_LENGTH = 255

# XML 1.0 cannot carry these characters, and a DOCX is XML, so an answer holding one could
# be neither written to HotDocs XML nor assembled: refuse it on the way in.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL_CHAR = re.compile("[\u0000-\u001f\u007f]")


class AnswerType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    TRUEFALSE = "truefalse"
    MULTIPLECHOICE = "multiplechoice"


@dataclass(frozen=True, slots=True)
class Selection:
    """The options chosen for one multiple-choice value, in the order they were chosen."""

    options: tuple[str, ...] = ()

    def __iter__(self) -> Iterator[str]:
        return iter(self.options)

    def __len__(self) -> int:
        return len(self.options)


Leaf: TypeAlias = str | int | float | bool | date | Selection
Value: TypeAlias = Leaf | tuple["Value", ...] | None


def check_xml_text(text: str, location: str) -> None:
    """Refuse text that XML (and so HotDocs answer files and DOCX) cannot carry."""
    bad = _NOT_XML_CHAR.search(text)
    if bad is not None:
        raise AnswerSetError(
            f"contains the character U+{ord(bad.group()):04X}, which XML cannot carry", location
        )


def check_name(name: object, location: str) -> str:
    """A variable or answer name: a non-empty string without surrounding space or controls."""
    if not isinstance(name, str):
        raise AnswerSetError(f"name must be a string, not {type(name).__name__}", location)
    if not name.strip():
        raise AnswerSetError("name must not be empty", location)
    if name != name.strip():
        raise AnswerSetError(f"name {name!r} must not start or end with white space", location)
    if len(name) > MAX_NAME_LENGTH:
        raise AnswerSetError(f"name is longer than {MAX_NAME_LENGTH} characters", location)
    if _CONTROL_CHAR.search(name):
        raise AnswerSetError(f"name {name!r} contains a control character", location)
    check_xml_text(name, location)
    return name


def normalize_value(answer_type: AnswerType, value: object, location: str) -> Value:
    """Check that `value` is a value of `answer_type` and return its normal form.

    Raises `AnswerSetError` naming `location` (extended with `[i]` inside repeats).
    """
    return _normalize(answer_type, value, location, level=0)


def _normalize(answer_type: AnswerType, value: object, location: str, level: int) -> Value:
    if value is None:
        return None
    if isinstance(value, list | tuple) and not _is_selection_list(answer_type, value):
        if level == MAX_REPEAT_DEPTH:
            raise AnswerSetError(f"repeats nest deeper than {MAX_REPEAT_DEPTH} levels", location)
        items = tuple(
            _normalize(answer_type, item, f"{location}[{index}]", level + 1)
            for index, item in enumerate(value)
        )
        if not items:
            return None
        _shape(items, location)
        return items
    return _normalize_leaf(answer_type, value, location)


def _shape(value: Value, location: str) -> tuple[int, bool]:
    """The repeat depth `value` shows, and whether it is exact: iterations that are all
    unanswered fit any deeper nesting, so they only bound the depth from below.
    Raises when iterations of one repeat nest to different depths."""
    if value is None:
        return 0, False
    if not isinstance(value, tuple):
        return 0, True
    shapes = [_shape(item, location) for item in value if item is not None]
    exact = {depth for depth, is_exact in shapes if is_exact}
    lowest = max((depth for depth, is_exact in shapes if not is_exact), default=0)
    if len(exact) > 1 or (exact and lowest > min(exact)):
        raise AnswerSetError(
            "iterations mix repeat levels (some are lists, some single values)", location
        )
    if exact:
        return exact.pop() + 1, True
    return lowest + 1, False


def _is_selection_list(answer_type: AnswerType, value: list[Any] | tuple[Any, ...]) -> bool:
    return answer_type is AnswerType.MULTIPLECHOICE and all(isinstance(v, str) for v in value)


def _normalize_leaf(answer_type: AnswerType, value: object, location: str) -> Leaf:
    kind = type(value).__name__
    match answer_type:
        case AnswerType.TEXT:
            if not isinstance(value, str):
                raise AnswerSetError(f"a text value must be a string, not {kind}", location)
            check_xml_text(value, location)
            return value
        case AnswerType.NUMBER:
            return _number(value, kind, location)
        case AnswerType.DATE:
            if isinstance(value, datetime) or not isinstance(value, date):
                raise AnswerSetError(f"a date value must be a date, not {kind}", location)
            return value
        case AnswerType.TRUEFALSE:
            if not isinstance(value, bool):
                raise AnswerSetError(
                    f"a truefalse value must be true or false, not {kind}", location
                )
            return value
        case AnswerType.MULTIPLECHOICE:
            return _selection(value, kind, location)
    raise AnswerSetError(f"unknown answer type {answer_type!r}", location)  # pragma: no cover


def _number(value: object, kind: str, location: str) -> int | float:
    """A finite number; a float with no fraction becomes an int."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnswerSetError(f"a number value must be a number, not {kind}", location)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AnswerSetError(f"a number value must be finite, not {value}", location)
        if value.is_integer():
            return int(value)
    return value


def _selection(value: object, kind: str, location: str) -> Selection:
    """Options chosen: non-empty strings, each once."""
    options = value.options if isinstance(value, Selection) else value
    if not isinstance(options, list | tuple):
        raise AnswerSetError(
            f"a multiplechoice value must be a list of options, not {kind}", location
        )
    seen: set[str] = set()
    for index, option in enumerate(options):
        where = f"{location}[{index}]"
        if not isinstance(option, str) or not option:
            raise AnswerSetError("an option must be a non-empty string", where)
        check_xml_text(option, where)
        if option in seen:
            raise AnswerSetError(f"option {option!r} is selected twice", where)
        seen.add(option)
    return Selection(tuple(options))


def repeat_depth(value: Value) -> int:
    """How many repeat levels `value` shows: 0 for a single value or `None`.

    A repeat whose iterations are all unanswered shows one level; it fits any deeper
    variable too (see `fits_repeat_depth`).
    """
    if not isinstance(value, tuple):
        return 0
    return 1 + max((repeat_depth(item) for item in value), default=0)


def fits_repeat_depth(value: Value, depth: int) -> bool:
    """Whether `value` can be the answer of a variable repeated `depth` levels deep."""
    if value is None:
        return True
    if depth == 0:
        return not isinstance(value, tuple)
    return isinstance(value, tuple) and all(fits_repeat_depth(v, depth - 1) for v in value)


def value_to_json(value: Value) -> Any:
    """The canonical JSON form of one (normalised) value."""
    if isinstance(value, tuple):
        return [value_to_json(item) for item in value]
    if isinstance(value, Selection):
        return list(value.options)
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class Answer:
    """One named answer. The value is checked and normalised on construction."""

    name: str
    type: AnswerType
    value: Value = None

    def __post_init__(self) -> None:
        check_name(self.name, "name")
        try:
            answer_type = AnswerType(self.type)
        except ValueError:
            raise AnswerSetError(
                f"unknown type {self.type!r}; expected one of "
                + ", ".join(t.value for t in AnswerType),
                f"answer {self.name!r}",
            ) from None
        # Frozen: normalising on construction is the only moment we may set fields.
        object.__setattr__(self, "type", answer_type)
        object.__setattr__(
            self, "value", normalize_value(answer_type, self.value, f"answer {self.name!r}")
        )

    @classmethod
    def checked(cls, name: str, answer_type: AnswerType, value: Value) -> Answer:
        """An answer from parts the caller has already checked (`check_name`) and
        normalised (`normalize_value`): the same answer, without doing that work twice."""
        answer = object.__new__(cls)
        object.__setattr__(answer, "name", name)
        object.__setattr__(answer, "type", answer_type)
        object.__setattr__(answer, "value", value)
        return answer

    @property
    def answered(self) -> bool:
        return self.value is not None

    @property
    def repeat_depth(self) -> int:
        return repeat_depth(self.value)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": str(self.type), "value": value_to_json(self.value)}


class AnswerSet(Mapping[str, Answer]):
    """Answers by name, in the order they were given. Immutable.

    Equality ignores order: two answer sets are equal when they hold the same answers.
    """

    __slots__ = ("_by_name",)

    def __init__(self, answers: Iterable[Answer] = ()) -> None:
        by_name: dict[str, Answer] = {}
        for answer in answers:
            if answer.name in by_name:
                raise AnswerSetError("appears more than once", f"answer {answer.name!r}")
            by_name[answer.name] = answer
        self._by_name = by_name

    def __getitem__(self, name: str) -> Answer:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"AnswerSet({list(self._by_name.values())!r})"

    @property
    def answers(self) -> tuple[Answer, ...]:
        return tuple(self._by_name.values())

    def overlay(self, incoming: AnswerSet) -> AnswerSet:
        """Overlay: each incoming answer replaces the answer of the same name whole (every
        repeat iteration, and its type); answers not mentioned stay as they were.

        A replaced answer keeps its place; new answers follow, in incoming order.
        """
        merged = dict(self._by_name)
        merged.update(incoming._by_name)
        # Keyed by name already: no name can appear twice, so nothing to check again.
        overlaid = AnswerSet.__new__(AnswerSet)
        overlaid._by_name = merged
        return overlaid

    def to_json(self) -> dict[str, Any]:
        """The canonical answer JSON."""
        return {"answers": [answer.to_json() for answer in self._by_name.values()]}


@dataclass(frozen=True, slots=True)
class VariableDef:
    """A template variable as declared with the template."""

    name: str
    type: AnswerType
    repeat_depth: int = 0
    options: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"variable {self.name!r}"
        check_name(self.name, "name")
        try:
            object.__setattr__(self, "type", AnswerType(self.type))
        except ValueError:
            raise AnswerSetError(
                f"unknown type {self.type!r}; expected one of "
                + ", ".join(t.value for t in AnswerType),
                where,
            ) from None
        if (
            isinstance(self.repeat_depth, bool)
            or not isinstance(self.repeat_depth, int)
            or not 0 <= self.repeat_depth <= MAX_REPEAT_DEPTH
        ):
            raise AnswerSetError(
                f"repeat depth must be a whole number from 0 to {MAX_REPEAT_DEPTH}, "
                f"not {self.repeat_depth!r}",
                where,
            )
        if isinstance(self.options, str) or not isinstance(self.options, list | tuple):
            raise AnswerSetError("options must be a list of strings", where)
        options = tuple(self.options)
        object.__setattr__(self, "options", options)
        if self.type is AnswerType.MULTIPLECHOICE:
            if not options:
                raise AnswerSetError("a multiplechoice variable needs at least one option", where)
            normalize_value(AnswerType.MULTIPLECHOICE, options, f"{where} options")
        elif options:
            raise AnswerSetError(
                f"only multiplechoice variables take options, not {self.type}", where
            )
