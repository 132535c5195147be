"""The interview form ↔ answers: one field per template variable, by type, and a submitted
form read back into shorthand answer JSON for `platform.interviews.update_answers`, so the
answers go through the same reading, fitting and limits as the API's.

Form names are by the variable's position, never its name (names may hold any character):
`f3` is the fourth variable, `f3.25`, `f3.26` … the rows of a repeated one (by their place
in the answer), `start.3` the first row the form showed, `rows.3` how many, `total.3` of
how many the answer had and `digest.3` what those rows held (`window_digest`), and `fields`
lists the variables the form could change. A page shows some of the fields, and some rows
of a repeated one (`interview_layout`): the rows it did not show are kept as they are
saved, and so are the fields. A window is saved only over the rows it showed, as it showed
them (or rows that already hold what it posts, which it does not change): one whose answer
has had rows added or removed since, whose rows were changed since (another tab removed a
row and added one: the rows shifted), or that names rows the answer does not have, is not
saved. A save adds no row: *Add a row* (`add_row`) adds one, at the end.
A variable repeated more than one level deep is shown, not edited, and one too large for any
page is named: neither is listed, so each keeps its answer. What the browser cannot check (a
number with letters, an impossible date) is caught here, shown at its field, and that answer
is left as it was.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from starlette.datastructures import FormData

from docuhooks.answers import VariableDef
from docuhooks.ui.interview_layout import (
    ROWS_SHOWN,
    SHOWN_CHARS,
    SOURCE_CHARS,
    TYPED_CHARS,
    Layout,
    Window,
    clip,
    whole,
)

#: The most characters of what was typed that a problem quotes.
_QUOTED_CHARS = 60
#: Bytes of the digest of each row of a window (its text is twice as many hexadecimal
#: digits a row): enough that rows changed since are never taken for the ones shown.
_ROW_DIGEST_BYTES = 8
_ROW_DIGEST_CHARS = 2 * _ROW_DIGEST_BYTES
_DIGEST = re.compile(rf"(?:[0-9a-f]{{{_ROW_DIGEST_CHARS}}}){{0,{ROWS_SHOWN}}}")

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass
class Field:
    """One variable as the page shows it."""

    index: int
    variable: VariableDef
    #: The value as the inputs hold it: a string ("" unanswered) or, for multiple choice,
    #: the chosen options; for a repeated variable, one of those per row shown.
    value: Any
    errors: dict[str, str] = field(default_factory=dict)
    #: The webhook that supplied the answer in the step just taken, if one did.
    source: str = ""
    #: The answer of a variable repeated deeper than the form edits, as text.
    shown: str = ""
    #: The rows of a repeated variable the page shows (`value` holds them).
    window: Window = field(default_factory=lambda: Window(0, ROWS_SHOWN, 0))
    #: Why the field is too large for a page (it is then shown, not edited), or "".
    too_large: str = ""
    #: What the saved rows of the window held (`window_digest`): a save is refused over
    #: rows that no longer match it.
    digest: str = ""

    @property
    def id(self) -> str:
        return f"f{self.index}"

    @property
    def type(self) -> str:
        return str(self.variable.type)

    @property
    def editable(self) -> bool:
        return self.variable.repeat_depth <= 1 and not self.too_large

    @property
    def mark(self) -> str:
        """The webhook's name as the field's mark shows it."""
        return clip(self.source, SOURCE_CHARS)

    @property
    def rows(self) -> list[tuple[int, Any]]:
        """The rows shown, each with its place in the answer."""
        return list(enumerate(self.value, start=self.window.start))

    @property
    def repeated(self) -> bool:
        return self.variable.repeat_depth == 1

    @property
    def multiline(self) -> bool:
        values = self.value if self.repeated else [self.value]
        return any(isinstance(v, str) and "\n" in v for v in values)

    @property
    def error(self) -> str:
        return clip("; ".join(self.errors.values()))

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
    again (and, for a window of rows, the digest of the rows it was typed over)."""

    answers: dict[str, Any]
    errors: dict[str, str]
    typed: dict[int, Any]
    #: The digest each window kept as typed was posted with (`window_digest`), by
    #: variable position: the page shows it again with those rows.
    typed_digests: dict[int, str] = field(default_factory=dict)
    #: The windows of rows read and matched to the saved rows (first row, how many), by
    #: variable position: what of each repeated answer the form replaced.
    windows: dict[int, tuple[int, int]] = field(default_factory=dict)


def leaf_to_form(value: Any) -> Any:
    """One canonical JSON value as an input holds it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [str(option) for option in value]
    return str(value)


def values_by_name(answers_json: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical answer JSON's values, by name."""
    return {entry["name"]: entry["value"] for entry in answers_json.get("answers", [])}


def window_digest(start: int, rows: Sequence[Any]) -> str:
    """What a window of a repeated answer held: for each of its rows in order, a digest
    of its place in the answer and its saved value (canonical answer JSON, as read from
    the store). The form carries it (`digest.3`, 16 characters a row however large the
    rows) and a save compares each row saved there then with it (`_window_problem`): rows
    that shifted under the window (another tab removed one and added one, the count
    unchanged) or were changed are not saved over. It costs one encoding and hash of each
    of the window's rows (at most `ROWS_SHOWN`), never of the whole answer. Not a secret:
    anyone shown the rows can make it; it tells the rows a page showed from rows saved
    since."""
    return "".join(_row_digest(place, row) for place, row in enumerate(rows, start=start))


def _row_digest(place: int, row: Any) -> str:
    encoded = orjson.dumps([place, row])
    return hashlib.blake2b(encoded, digest_size=_ROW_DIGEST_BYTES).hexdigest()


def window_rows(value: Any, start: int, count: int) -> list[Any]:
    """The rows `start` to `start + count` (not included) of a saved repeated answer
    (none when it is not a list)."""
    return value[start : start + count] if isinstance(value, list) else []


def window_digests(
    variables: Sequence[VariableDef],
    by_name: Mapping[str, Any],
    windows: Mapping[int, tuple[int, int]],
) -> dict[int, str]:
    """The digest of each of `windows` (first row, how many, by variable position) over
    the answers `by_name`: a tab whose window a save wrote holds these rows now."""
    return {
        index: window_digest(start, window_rows(by_name.get(variables[index].name), start, count))
        for index, (start, count) in windows.items()
    }


def fields_of(
    variables: Sequence[VariableDef], answers_json: Mapping[str, Any], layout: Layout
) -> list[Field]:
    """The fields of the page `layout` lays out, from the template's variables and
    canonical answer JSON: a repeated one's rows of its window."""
    by_name = values_by_name(answers_json)
    fields = []
    for index in range(layout.first, layout.end):
        variable = variables[index]
        raw = by_name.get(variable.name)
        reason = layout.too_large.get(index, "")
        if reason:
            count = len(raw) if isinstance(raw, list) and variable.repeat_depth else 0
            fields.append(Field(index, variable, "", too_large=_too_large(reason, count)))
        elif variable.repeat_depth == 0:
            fields.append(Field(index, variable, leaf_to_form(raw)))
        elif variable.repeat_depth == 1:
            window = layout.windows[index]
            rows = window_rows(raw, window.start, window.end - window.start)
            fields.append(
                Field(
                    index,
                    variable,
                    [leaf_to_form(row) for row in rows],
                    window=window,
                    digest=window_digest(window.start, rows),
                )
            )
        else:
            fields.append(Field(index, variable, [], shown=shown(raw)))
    return fields


def _too_large(reason: str, rows: int) -> str:
    if rows:
        return f"{rows:,} row{'s' if rows != 1 else ''}; {reason}"
    return reason


def shown(value: Any, most: int = SHOWN_CHARS) -> str:
    """An answer as text, cut to `most` characters: a variable repeated deeper than the
    form edits may hold a large part of an answer set, and only its start is shown."""
    parts: list[str] = []
    room = most + 1

    def put(text: str) -> None:
        nonlocal room
        parts.append(text)
        room -= len(text)

    def walk(item: Any) -> None:
        if item is None:
            put("Not answered")
        elif isinstance(item, list):
            put("[")
            for position, entry in enumerate(item):
                if room <= 0:
                    return
                if position:
                    put(", ")
                walk(entry)
            put("]")
        else:
            put(str(leaf_to_form(item)))

    walk(value)
    return clip("".join(parts), most)


def _leaf(variable: VariableDef, raw: Any) -> tuple[Any, str]:
    """A typed value from one input's text (None: unanswered), or the problem with it."""
    kind = str(variable.type)
    if kind == "multiplechoice":
        chosen = [option for option in raw if option] if isinstance(raw, list) else []
        offered = frozenset(variable.options)
        unknown = [option for option in chosen if option not in offered]
        if unknown:
            return None, f"{clip(unknown[0], _QUOTED_CHARS)!r} is not one of the choices"
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
            return (
                None,
                f"“{clip(text, _QUOTED_CHARS)}” is not a number: use digits, such as 1500 or 12.5",
            )
        number = float(text)
        if not math.isfinite(number):
            return None, f"“{clip(text, _QUOTED_CHARS)}” is too large a number"
        return (int(number) if number.is_integer() and abs(number) < 2**53 else number), ""
    if kind == "date":
        try:
            if not _ISO_DATE.fullmatch(text):
                raise ValueError(text)
            return date.fromisoformat(text).isoformat(), ""
        except ValueError:
            return (
                None,
                f"“{clip(text, _QUOTED_CHARS)}” is not a date: pick one, or type it as YYYY-MM-DD",
            )
    if kind == "truefalse":
        if text in ("true", "false"):
            return text == "true", ""
        return None, "choose Yes, No or Not answered"
    return None, f"unknown variable type {kind}"  # pragma: no cover (types are fixed)


def _input(form: FormData, name: str, variable: VariableDef) -> Any:
    if str(variable.type) == "multiplechoice":
        # Each option once, and of what is not an option only the first (the one its problem
        # names): a forged form may carry a hundred thousand values, which the field would
        # otherwise keep to be drawn again, each tested against every option.
        offered = frozenset(variable.options)
        chosen: list[str] = []
        stranger: list[str] = []
        posted = [v for v in form.getlist(name) if isinstance(v, str)]
        for option in dict.fromkeys(posted):
            if option in offered:
                chosen.append(option)
            elif option and not stranger:
                stranger.append(option)
        return chosen + stranger
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _typed(raw: Any) -> Any:
    """What was typed, as the page shows it again at its problem: cut to what a number or
    a date could be (`TYPED_CHARS`); a multiple choice's options are its checkboxes."""
    return clip(raw, TYPED_CHARS) if isinstance(raw, str) else raw


def read_form(
    form: FormData, variables: Sequence[VariableDef], saved: Mapping[str, Any]
) -> Submitted:
    """The answers of every variable the form could change, as shorthand answer JSON.

    A repeated variable's answer is its `saved` rows (canonical answer JSON's values, by
    name) with those the form showed replaced by what it holds: the rows a page did not
    show are kept as they are, whatever their number. A window that no longer matches the
    saved rows (`_window_problem`) is not read into the answers: the field says why."""
    submitted = Submitted({}, {}, {})
    answers, errors, typed = submitted.answers, submitted.errors, submitted.typed
    listed = {whole(v, -1) for v in form.getlist("fields")}
    for index in sorted(i for i in listed if 0 <= i < len(variables)):
        variable = variables[index]
        if variable.repeat_depth > 1:
            continue
        key = f"f{index}"
        if variable.repeat_depth == 0:
            raw = _input(form, key, variable)
            value, problem = _leaf(variable, raw)
            if problem:
                errors[key] = problem
                typed[index] = _typed(raw)
            else:
                answers[variable.name] = value
            continue
        # A page shows at most `ROWS_SHOWN` rows: what one form may ask for.
        start = max(whole(form.get(f"start.{index}")), 0)
        count = min(max(whole(form.get(f"rows.{index}")), 0), ROWS_SHOWN)
        raws = [_input(form, f"{key}.{row}", variable) for row in range(start, start + count)]
        values = []
        readable = True
        for row, raw in enumerate(raws, start=start):
            value, problem = _leaf(variable, raw)
            if problem:
                errors[f"{key}-{row}"] = f"Row {row + 1}: {problem}"
                readable = False
            values.append(value)
        digest = form.get(f"digest.{index}")
        digest = digest if isinstance(digest, str) else ""
        if not readable:
            typed[index] = [_typed(raw) for raw in raws]
            # Shown again as typed, over the rows it was typed over: a digest is all the
            # page keeps of what it posted (a forged one, of any length, is not kept).
            submitted.typed_digests[index] = digest if _DIGEST.fullmatch(digest) else ""
            continue
        rows = saved.get(variable.name)
        rows = list(rows) if isinstance(rows, list) else []
        problem = _window_problem(form, index, variable, rows, start, values, digest)
        if problem:
            errors[key] = problem
            continue
        rows[start : start + count] = values
        answers[variable.name] = rows or None
        submitted.windows[index] = (start, count)
    return submitted


def _window_problem(
    form: FormData,
    index: int,
    variable: VariableDef,
    rows: list[Any],
    start: int,
    values: list[Any],
    digest: str,
) -> str:
    """Why the window of rows from `start` that the form holds (`values`) cannot be saved
    over the saved `rows`, or "" when it can: each of those places holds the row it
    showed, or already the value it posts (a save of this tab's own that the tab has not
    heard back from: the typing sent as the page goes away, `interview.js`, carries the
    digest from before it)."""
    total, name, count = len(rows), variable.name, len(values)
    shown_total = whole(form.get(f"total.{index}"), -1)
    if start > total or (shown_total >= 0 and shown_total != total):
        # Rows were added or removed since the form was shown (another tab, another
        # person), or it names a window past the answer's rows: it would land on other
        # rows, or pad the answer out to where it says it starts.
        return (
            f"these rows were not saved: {name} has {total:,} row{'s' if total != 1 else ''} "
            "now, changed since this page was shown. Reload the page, then type them again."
        )
    if start + count > total:
        # More rows than the answer has after `start`: no page shows those (its window
        # ends at the last row), so the form is not one a page made. A save would add
        # them, empty; rows are added one at a time, by *Add a row*.
        return (
            f"these rows were not saved: the form names rows up to {start + count:,}, and "
            f"{name} has {total:,}. Add rows with “Add a row”."
        )
    # The digest is not a secret (`window_digest`): comparing it says whether these are
    # the rows the page showed, and a missing or forged one never matches them. A row that
    # holds what the form posts is not changed by the save, whatever the page showed.
    shown = digest if _DIGEST.fullmatch(digest) else ""
    if len(shown) != count * _ROW_DIGEST_CHARS or any(
        row != value and _row_digest(place, row) != shown[offset : offset + _ROW_DIGEST_CHARS]
        for place, offset, row, value in zip(
            range(start, start + count),
            range(0, len(shown), _ROW_DIGEST_CHARS),
            rows[start : start + count],
            values,
            strict=True,
        )
    ):
        return (
            f"these rows were not saved: rows of {name} shown here were changed since this "
            "page was shown (in another tab, or by another person). Reload the page, then "
            "type them again."
        )
    return ""


def changed(submitted: Submitted, saved: Mapping[str, Any]) -> dict[str, Any]:
    """The answers of `submitted` that differ from the `saved` ones: what a step saves (a
    repeated variable of thousands of rows is not saved again for a change elsewhere)."""
    return {name: value for name, value in submitted.answers.items() if saved.get(name) != value}


def add_row(submitted: Submitted, variable: VariableDef) -> bool:
    """One more (unanswered) row for a repeated variable whose rows were all readable."""
    if variable.name not in submitted.answers:
        return False
    rows = submitted.answers[variable.name]
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
                if f.repeated:
                    # The rows as typed stand on the rows they were typed over, not on
                    # those saved now: the next save is checked against those.
                    f.digest = submitted.typed_digests.get(f.index, "")
    for warning in warnings:
        if warning.get("source") == "webhook":
            continue  # said with the webhook's other warnings, naming the answer
        target = by_name.get(str(warning.get("variable") or ""))
        if target is not None:
            target.errors.setdefault(target.id, str(warning.get("message", "")))
    for name, source in sources.items():
        if name in by_name:
            by_name[name].source = str(source.get("webhookName", ""))
