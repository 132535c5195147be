"""How much one answer set may hold, so that reading, storing and assembling it stays cheap.

Every answer set that enters (sent to an interview, to a quick document, or answered by an
interview receiver) is held to the same limits, and so is the result of overlaying it onto
the answers an interview already has: a set that may not enter in one piece may not be built
up piece by piece either.

- `document_bytes`: the answer-set document as sent (JSON or XML), and the stored size of the
  answers after an overlay (names and values as UTF-8). Over it: 413.
- `value_bytes`: one value, as UTF-8: a text value, or the options of one multiple-choice
  selection together. Over it: 413, naming the answer.
- `answers`: how many answers one set holds. Over it: 422.
- `values_per_answer`: the values of one answer, counting every iteration of its repeats at
  every level (a single value counts 1). Over it: 422, naming the answer.
- `values`: the values of the whole set, counted the same way. Over it: 422.

Repeats nest at most `MAX_REPEAT_DEPTH` levels, a limit of the format itself. Every error
names the setting that sets the limit, so an operator knows which one a user hit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from docuhooks.answers.errors import AnswerSetError
from docuhooks.answers.model import Answer, AnswerSet, Selection, Value

KIB = 1024
MIB = 1024 * KIB


class AnswerLimitExceeded(AnswerSetError):
    """An answer set over one of its limits; `limit` is the setting that sets it."""

    status = 422
    code = "answer_limit_exceeded"

    def __init__(self, message: str, location: str, *, limit: str) -> None:
        super().__init__(message, location)
        self.limit = limit


class AnswerSetTooLarge(AnswerLimitExceeded):
    """An answer set, or one of its values, larger than its limit allows."""

    status = 413
    code = "payload_too_large"


@dataclass(frozen=True, slots=True)
class AnswerLimits:
    """The limits, with the defaults `Settings` also has (see `docs/configuration.md`)."""

    document_bytes: int = 5 * MIB
    value_bytes: int = 64 * KIB
    answers: int = 5_000
    values_per_answer: int = 10_000
    values: int = 100_000

    @classmethod
    def from_settings(cls, settings: Any) -> AnswerLimits:
        return cls(
            document_bytes=settings.max_answer_set_bytes,
            value_bytes=settings.max_answer_value_bytes,
            answers=settings.max_answers,
            values_per_answer=settings.max_answer_values_per_answer,
            values=settings.max_answer_values,
        )


DEFAULT_LIMITS = AnswerLimits()

#: Setting names, as errors quote them.
_SETTING = {
    "document_bytes": "max_answer_set_bytes",
    "value_bytes": "max_answer_value_bytes",
    "answers": "max_answers",
    "values_per_answer": "max_answer_values_per_answer",
    "values": "max_answer_values",
}


@dataclass(frozen=True, slots=True)
class Totals:
    """What an answer set holds, as the limits count it."""

    answers: int = 0
    values: int = 0
    bytes: int = 0


def check_document_size(size: int, limits: AnswerLimits) -> None:
    """Refuse an answer-set document larger than the limit, before anything reads it."""
    if size > limits.document_bytes:
        raise AnswerSetTooLarge(
            f"the answer set is {size} bytes; at most {limits.document_bytes} are accepted "
            f"({_SETTING['document_bytes']})",
            "body",
            limit=_SETTING["document_bytes"],
        )


def check_answer_count(count: int, most: int, location: str = "body") -> None:
    """Refuse a set of more than `most` answers (`max_answers`), before each is read."""
    if count > most:
        raise AnswerLimitExceeded(
            f"the answer set holds {count} answers; at most {most} are accepted "
            f"({_SETTING['answers']})",
            location,
            limit=_SETTING["answers"],
        )


def check_answers(answers: AnswerSet, limits: AnswerLimits) -> Totals:
    """Check every limit on `answers`; its totals when they are all kept."""
    check_answer_count(len(answers), limits.answers)
    return _check_totals(_measure_all(answers.answers, limits), limits, "the answer set")


def check_overlay(
    base: AnswerSet, base_totals: Totals, incoming: AnswerSet, limits: AnswerLimits
) -> Totals:
    """The totals of `base.overlay(incoming)`, refused when they are over a limit.

    `incoming` must have passed `check_answers` (each answer within the per-answer limits);
    only the answers it replaces are measured again, so overlaying a few answers onto a
    large interview costs little.
    """
    added = _measure_all(incoming.answers, limits)
    replaced = _measure_all((base[name] for name in incoming if name in base), limits)
    merged = Totals(
        answers=base_totals.answers + added.answers - replaced.answers,
        values=base_totals.values + added.values - replaced.values,
        bytes=base_totals.bytes + added.bytes - replaced.bytes,
    )
    if merged.answers > limits.answers:
        raise AnswerLimitExceeded(
            f"with these answers the interview would hold {merged.answers} answers; at most "
            f"{limits.answers} are accepted ({_SETTING['answers']})",
            "body",
            limit=_SETTING["answers"],
        )
    return _check_totals(merged, limits, "the interview's answers with these")


def measure(answers: AnswerSet) -> Totals:
    """The totals of `answers`, without checking them (for answers already stored)."""
    return _measure_all(answers.answers, None)


def _check_totals(totals: Totals, limits: AnswerLimits, what: str) -> Totals:
    if totals.values > limits.values:
        raise AnswerLimitExceeded(
            f"{what} would hold {totals.values} values (counting every repeat iteration); at "
            f"most {limits.values} are accepted ({_SETTING['values']})",
            "body",
            limit=_SETTING["values"],
        )
    if totals.bytes > limits.document_bytes:
        raise AnswerSetTooLarge(
            f"{what} would be {totals.bytes} bytes of names and values; at most "
            f"{limits.document_bytes} are accepted ({_SETTING['document_bytes']})",
            "body",
            limit=_SETTING["document_bytes"],
        )
    return totals


def _measure_all(answers: Iterable[Answer], limits: AnswerLimits | None) -> Totals:
    count = values = size = 0
    for answer in answers:
        answer_values, answer_bytes = _measure(answer, limits)
        count += 1
        values += answer_values
        size += answer_bytes
    return Totals(count, values, size)


def _measure(answer: Answer, limits: AnswerLimits | None) -> tuple[int, int]:
    """(values, bytes) of one answer, checked against the per-answer limits when given."""
    value = answer.value
    if not isinstance(value, tuple):
        # Most answers are one value: measured without building anything.
        one = _value_size(value)
        if limits is not None and one > limits.value_bytes:
            raise _value_too_large(one, f'answer "{answer.name}"', limits)
        return 1, _utf8_size(answer.name) + one
    stack: list[Value] = [value]
    values = 0
    size = _utf8_size(answer.name)
    while stack:
        value = stack.pop()
        if isinstance(value, tuple):
            stack.extend(value)
            continue
        values += 1
        one = _value_size(value)
        size += one
        if limits is None:
            continue
        if one > limits.value_bytes:
            raise _value_too_large(one, f'answer "{answer.name}"', limits)
        if values > limits.values_per_answer:
            raise too_many_values_in_answer(f'answer "{answer.name}"', limits)
    return values, size


def too_many_values_in_answer(where: str, limits: AnswerLimits) -> AnswerLimitExceeded:
    return AnswerLimitExceeded(
        f"the answer holds more than {limits.values_per_answer} values (counting every "
        f"repeat iteration) ({_SETTING['values_per_answer']})",
        where,
        limit=_SETTING["values_per_answer"],
    )


def too_many_values(limits: AnswerLimits) -> AnswerLimitExceeded:
    return AnswerLimitExceeded(
        f"the answer set holds more than {limits.values} values (counting every repeat "
        f"iteration) ({_SETTING['values']})",
        "body",
        limit=_SETTING["values"],
    )


class ValueCounter:
    """Counts values while an answer set is read, so that a document of a million tiny
    values is refused after `limits.values` of them, not after all were built."""

    __slots__ = ("_in_answer", "_limits", "_total")

    def __init__(self, limits: AnswerLimits) -> None:
        self._limits = limits
        self._total = 0
        self._in_answer = 0

    def next_answer(self) -> None:
        self._in_answer = 0

    def add(self, where: str, count: int = 1) -> None:
        self._in_answer += count
        self._total += count
        if self._in_answer > self._limits.values_per_answer:
            raise too_many_values_in_answer(where, self._limits)
        if self._total > self._limits.values:
            raise too_many_values(self._limits)


def check_raw_json(entries: Iterable[tuple[str, bool, Any]], limits: AnswerLimits) -> None:
    """Count the values of decoded answer JSON before any is converted: `entries` are
    (name, is multiple choice, raw value). A list of strings of a multiple-choice answer is
    one selection; its options are measured against `value_bytes` as they are counted.
    Touches at most about `limits.values` items, however long the lists are."""
    counter = ValueCounter(limits)
    for name, choice, raw in entries:
        where = f'answer "{name}"'
        counter.next_answer()
        # Every item is at least one value, so each is counted when its list is opened
        # (before the list is walked), and a list that is a repeat adds its items less
        # itself. An empty list is one value: unanswered, as the model reads it.
        counter.add(where)
        stack = [raw]
        while stack:
            value = stack.pop()
            if isinstance(value, list):
                if choice and _selection_size(value, where, limits) is not None:
                    continue
                counter.add(where, max(0, len(value) - 1))
                stack.extend(value)
            elif isinstance(value, str) and _utf8_size(value) > limits.value_bytes:
                raise _value_too_large(_utf8_size(value), where, limits)


def _selection_size(items: list[Any], where: str, limits: AnswerLimits) -> int | None:
    """The size of a list of option strings, or None if it is not one (a repeat)."""
    size = 0
    for item in items:
        if not isinstance(item, str):
            return None
        size += _utf8_size(item) + 1
        if size > limits.value_bytes:
            raise _value_too_large(size, where, limits)
    return size


def _value_too_large(size: int, where: str, limits: AnswerLimits) -> AnswerSetTooLarge:
    return AnswerSetTooLarge(
        f"a value is {size} bytes; at most {limits.value_bytes} are accepted "
        f"({_SETTING['value_bytes']})",
        where,
        limit=_SETTING["value_bytes"],
    )


def _value_size(value: Value) -> int:
    if isinstance(value, str):
        return _utf8_size(value)
    if isinstance(value, Selection):
        # Each option, and a separator between them, as a list of strings needs.
        return sum(_utf8_size(option) + 1 for option in value.options)
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, date):
        return 10
    if isinstance(value, int) and abs(value) >= 10**18:
        # Its decimal digits, from its bits: converting a huge number to text is not cheap.
        return int(abs(value).bit_length() * 0.30103) + 2
    return 20


def _utf8_size(text: str) -> int:
    # isascii() is constant-time: only text outside ASCII is encoded to be measured.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
